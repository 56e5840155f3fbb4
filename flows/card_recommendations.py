"""Card recommendations: one JSON API call per user, for files of 200 K - 2 M users.

Each row's profile (its columns, numbers as numbers) is POSTed to `{base_url}/v1/recommendations`;
the top card, its issuer and savings, and all recommendations as JSON are added to the row.
"""
from __future__ import annotations

import json
import os
from typing import Annotated, Any

from prefect import flow
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from tasks.apis.http import ApiClient, ApiSpec, RetryPolicy
from tasks.engine.job import Job, RunOptions
from tasks.engine.outcomes import RowError
from tasks.engine.params import (
    ApiUrl,
    ChunkSize,
    Cli,
    Concurrency,
    Emulate,
    Encoding,
    FailedFraction,
    Help,
    InputFile,
    KeyBlock,
    KeyEnv,
    Limit,
    OutputFile,
    PerMinute,
    Positive,
    Rate,
    Runner,
    Workers,
)
from tasks.engine.params_cli import ParameterError, problems, read_settings
from tasks.engine.preflight import check_paths
from tasks.engine.run import default_work_dir, run_job
from tasks.engine.secrets import resolve_secret
from tasks.engine.tables import as_text
from tasks.samples.emulated import run_emulated

RESULT_COLUMNS = ("recommended_card", "issuer", "annual_savings", "recommendations_json")
NUMBER_COLUMNS = {"monthly_spend": float, "credit_score": int}


class CardApi(BaseModel):
    """The config's `api` section."""

    model_config = ConfigDict(extra="forbid")

    base_url: ApiUrl = "http://127.0.0.1:8000"
    api_key_env: KeyEnv = "CARD_API_KEY"
    api_key_block: KeyBlock = None
    timeout: Annotated[Rate, Help("seconds per request")] = 30.0


class CardProcessing(BaseModel):
    """The config's `processing` section (`max_workers`, the old runner's name, is read as `concurrency`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    concurrency: Concurrency = Field(50, validation_alias=AliasChoices("concurrency", "max_workers"))
    rate_limit_per_minute: PerMinute = 3000
    chunk_size: ChunkSize = 200
    workers: Workers = None
    max_attempts: Annotated[Positive, Help("attempts per row")] = 6
    work_dir: Annotated[str | None, Help("journals and caches (default $BATCHFLOWS_WORK_DIR)")] = None
    encoding: Encoding = "utf-8-sig"


class CardConfig(BaseModel):
    """The config file (JSON or YAML), same keys as the old real_config.json."""

    model_config = ConfigDict(extra="forbid")

    api: CardApi = CardApi()
    processing: CardProcessing = CardProcessing()

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> "CardConfig":
        """The file's config; a bad file or value is one line naming the file, the key and the value."""
        if path is None:
            return cls()
        try:
            return cls.model_validate(read_settings(path))
        except ValidationError as error:
            raise ParameterError(f"{path}: {problems(error)}") from None


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
        raise RowError(f"unexpected answer from the API (HTTP {response.status_code}): {response.text[:200]!r}") from None
    top = cards[0] if cards else {}
    return {"recommended_card": top.get("card_name"), "issuer": top.get("issuer"),
            "annual_savings": top.get("annual_savings"), "recommendations_json": json.dumps(cards)}


ConfigFile = Annotated[str | None, Help("JSON or YAML config: api.base_url, api.api_key_env, processing.* "
                                         "(see the README)")]
FromConfig = " (default: the config's processing.{})"


@flow(name="card-recommendations")
def card_recommendations(
    input_path: Annotated[InputFile, Help("users with a user_id column: .csv, .xlsx, .parquet or .jsonl")],
    output_path: OutputFile,
    config_path: Annotated[ConfigFile, Cli(("--config",))] = None,
    limit: Limit = None,
    runner: Runner = "thread",
    concurrency: Annotated[Concurrency | None, Help("requests in flight" + FromConfig.format("concurrency"))] = None,
    chunk_size: Annotated[ChunkSize | None, Help("rows per Prefect task" + FromConfig.format("chunk_size"))] = None,
    workers: Workers = None,
    encoding: Annotated[Encoding | None, Help("text encoding of a CSV input" + FromConfig.format("encoding"))] = None,
    max_failed_fraction: FailedFraction = 0.5,
    emulate: Emulate = False,
) -> dict[str, Any]:
    """Recommend cards for every user in the input; output = input columns + results, in order."""
    if emulate:
        return run_emulated(card_recommendations, locals())
    config = CardConfig.load(config_path)
    api, processing = config.api, config.processing
    check_paths(inputs=(input_path,), outputs=(output_path,))
    key = resolve_secret(api.api_key_env, api.api_key_block, "card API key")
    rate = processing.rate_limit_per_minute / 60 if processing.rate_limit_per_minute else None
    spec = ApiSpec("cards", api.base_url, timeout=api.timeout, rate_per_second=rate,
                   secret_headers={"X-API-Key": key}, retry=RetryPolicy(max_attempts=processing.max_attempts))
    job = Job("card-recommendations", recommend_cards, RESULT_COLUMNS, (spec,),
              work_dir=processing.work_dir or default_work_dir(), key_column="user_id")
    return run_job(job, input_path, output_path, RunOptions(
        chunk_size=chunk_size or processing.chunk_size, runner=runner, workers=workers or processing.workers,
        limit=limit, total_concurrency=concurrency or processing.concurrency,
        encoding=encoding or processing.encoding, max_failed_fraction=max_failed_fraction))
