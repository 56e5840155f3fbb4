"""Card recommendations: one JSON API call per user, for files of 200 K - 2 M users.

Each row's profile (its columns, numbers as numbers) is POSTed to `{base_url}/v1/recommendations`;
the top card, its issuer and savings, and all recommendations as JSON are added to the row.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from tasks.apis.http import ApiClient, ApiSpec, RetryPolicy
from tasks.engine.job import Job, RunOptions
from tasks.engine.outcomes import RowError
from tasks.engine.run import default_work_dir, run_job
from tasks.engine.secrets import resolve_secret
from tasks.engine.tables import as_text
from tasks.samples.emulated import run_emulated

RESULT_COLUMNS = ("recommended_card", "issuer", "annual_savings", "recommendations_json")
NUMBER_COLUMNS = {"monthly_spend": float, "credit_score": int}


@dataclass(frozen=True)
class CardConfig:
    """The config file (JSON or YAML), same keys as the old real_config.json."""

    base_url: str = "http://127.0.0.1:8000"
    api_key_env: str = "CARD_API_KEY"
    api_key_block: str | None = None  # a Prefect Secret block, used when the env var is unset
    timeout: float = 30.0
    concurrency: int = 50
    rate_limit_per_minute: float | None = 3000
    chunk_size: int = 200
    workers: int | None = None
    max_attempts: int = 6
    work_dir: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> "CardConfig":
        if path is None:
            return cls()
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            try:
                raw = json.loads(text)
            except ValueError as error:
                raise ValueError(f"{path}: not valid JSON: {error}") from None
        sections = {"api": {"base_url", "api_key_env", "api_key_block", "timeout"},
                    "processing": {"concurrency", "rate_limit_per_minute", "chunk_size", "workers",
                                   "max_attempts", "work_dir", "max_workers"}}
        values: dict[str, Any] = {}
        for section, keys in sections.items():
            given = raw.get(section) or {}
            unknown = set(given) - keys
            if unknown:
                raise ValueError(f"{path}: unknown key(s) in {section!r}: {sorted(unknown)}; known: {sorted(keys)}")
            values.update(given)
        if "max_workers" in values:  # the old runner's name for the number of parallel calls
            values.setdefault("concurrency", values.pop("max_workers"))
        unknown_sections = set(raw) - set(sections)
        if unknown_sections:
            raise ValueError(f"{path}: unknown section(s) {sorted(unknown_sections)}; known: {sorted(sections)}")
        return cls(**values)


def user_profile(row: dict[str, Any]) -> dict[str, Any]:
    """The request body: every non-empty column, numbers as numbers (a bad number fails the row);
    the engine's own fields (`_retry`) are not sent."""
    body = {}
    for name, value in row.items():
        if name.startswith("_") or as_text(value) == "":
            continue
        if name in NUMBER_COLUMNS and not isinstance(value, (int, float)):
            try:
                value = NUMBER_COLUMNS[name](float(str(value).replace(",", "").strip()))
            except ValueError:
                raise RowError(f"column {name}: {str(value)[:50]!r} is not a number", bad_input=True) from None
        body[name] = value
    return body


async def recommend_cards(row: dict[str, Any], clients: dict[str, ApiClient]) -> dict[str, Any]:
    response = await clients["cards"].request("POST", "/v1/recommendations", json=user_profile(row))
    try:
        cards = response.json()["recommendations"]
    except (ValueError, KeyError, TypeError):
        raise RowError(f"unexpected answer from the API: {response.text[:200]!r}") from None
    top = cards[0] if cards else {}
    return {"recommended_card": top.get("card_name"), "issuer": top.get("issuer"),
            "annual_savings": top.get("annual_savings"), "recommendations_json": json.dumps(cards)}


@flow(name="card-recommendations")
def card_recommendations(input_path: str, output_path: str, config_path: str | None = None,
                         limit: int | None = None, runner: str = "thread", concurrency: int | None = None,
                         chunk_size: int | None = None, workers: int | None = None,
                         emulate: bool = False) -> dict[str, Any]:
    """Recommend cards for every user in the input; output = input columns + results, in order.
    `emulate`: a sample run against local emulators (tasks/samples/emulated.py)."""
    if emulate:
        return run_emulated(card_recommendations, locals())
    config = CardConfig.load(config_path)
    key = resolve_secret(config.api_key_env, config.api_key_block, "card API key")
    rate = config.rate_limit_per_minute / 60 if config.rate_limit_per_minute else None
    api = ApiSpec("cards", config.base_url.rstrip("/"), timeout=config.timeout, rate_per_second=rate,
                  secret_headers={"X-API-Key": key}, retry=RetryPolicy(max_attempts=config.max_attempts))
    job = Job("card-recommendations", recommend_cards, RESULT_COLUMNS, (api,),
              work_dir=config.work_dir or default_work_dir(), key_column="user_id")
    return run_job(job, input_path, output_path, RunOptions(
        chunk_size=chunk_size or config.chunk_size, runner=runner, workers=workers or config.workers, limit=limit,
        total_concurrency=concurrency or config.concurrency))
