"""Sample runs (`emulate=True` on a flow): every API of the run is a local emulator started for it.

Missing inputs are generated where the input parameters point; the API URLs and keys are replaced
(giving a real URL too is an error, never silently ignored); caches, journals and the message outbox
go to `$BATCHFLOWS_WORK_DIR/emulated`, so emulator answers never mix with real ones.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect import get_run_logger
from pydantic import BaseModel

from tasks.engine.params_cli import read_settings
from tasks.engine.run import default_work_dir
from tasks.engine.storage import join

KEY_ENV = "BATCHFLOWS_EMULATOR_KEY"  # the emulators accept any key: this one is not a secret
WHERE = ("base_url", "credentials", "key_env", "key_block")  # what an emulated endpoint replaces
CARD_RATE_PER_MINUTE = 6000  # the card emulator's limit when the config sets none


@dataclass(frozen=True)
class Sample:
    """How a flow's sample run is set up: the emulators' settings from the flow's parameters, and the
    parameters replaced once they run (given their base URL, the parameters and a scratch folder)."""

    emulators: Callable[[dict], dict[str, dict]]
    prepare: Callable[[str, dict, str], dict]


def run_emulated(flow, params: dict[str, Any]) -> Any:
    """Run `flow`'s body in this flow run against emulators started for it (`emulate` off). The
    figures it returns also hold `emulator_traffic`: what each emulator received."""
    from emulators import Emulator

    sample = SAMPLES[flow.name]
    defaults = inspect.signature(flow.fn).parameters
    given = [f"{name}.{field}" for name, value in params.items() if isinstance(value, BaseModel)
             for field in WHERE if getattr(value, field, None) != getattr(defaults[name].default, field, None)]
    if given:
        raise ValueError(f"emulate=true points the APIs at local emulators; do not also give {', '.join(given)}")
    work_dir = join(default_work_dir(), "emulated")
    settings = sample.emulators(params)
    logger = get_run_logger()
    with set_environment({"BATCHFLOWS_WORK_DIR": work_dir, KEY_ENV: "emulator"}), \
            tempfile.TemporaryDirectory(prefix="batchflows-sample-") as scratch, Emulator(settings) as emulator:
        logger.warning(f"emulate=true: a sample run, every API call goes to the local emulators at "
                       f"{emulator.url}; work dir {work_dir}")
        figures = flow.fn(**{**params, **sample.prepare(emulator.url, params, scratch), "emulate": False})
        traffic = {api: emulator.stats(api) for api in settings}
    figures["emulator_traffic"] = {api: {"requests": seen["total"], "max_per_second": seen["max_1s"],
                                         "rate_limit": seen["settings"]["rate_limit"]} for api, seen in traffic.items()}
    logger.info(f"emulators received: {describe_traffic(figures['emulator_traffic'])}")
    return figures


def describe_traffic(traffic: dict[str, dict[str, Any]]) -> str:
    """'cards 3,003 requests (at most 100 in any second, limit 100)' for each emulated API that had any."""
    def limit(seen: dict[str, Any]) -> str:
        return "" if seen["rate_limit"] is None else f", limit {seen['rate_limit']:,g}"

    return "; ".join(f"{api} {seen['requests']:,} requests (at most {seen['max_per_second']:,} in any second"
                     f"{limit(seen)})" for api, seen in traffic.items() if seen["requests"]) or "no requests"


@contextlib.contextmanager
def set_environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for the duration; what was there before is put back."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _emulated(endpoint: BaseModel, url: str, **more: Any) -> BaseModel:
    """The endpoint pointing at the emulator (its limits kept)."""
    return endpoint.model_copy(update={"base_url": url, "key_env": KEY_ENV, "key_block": None, **more})


def _missing(*paths: str) -> bool:
    """True when one of the input files is missing (their folders are made)."""
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return not all(Path(path).exists() for path in paths)


def write_sample_leads(path: str | Path, leads: int = 60) -> Path:
    """Leads at a third as many companies (each company researched once for three leads)."""
    from tasks.samples.tables import write_leads

    return write_leads(path, leads, max(1, leads // 3))


def write_sample_books(requests_path: str | Path, history_path: str | Path, requests: int = 200,
                       history: int = 2000) -> None:
    """A history of past requests and a batch of new ones, some repeating history (the columns a user gives)."""
    from tasks.samples.book_requests import history_frame, new_requests_frame

    past, people = history_frame(history, seed=3)
    batch = new_requests_frame(requests, past, people, seed=4)
    past.drop(columns=["entity", "phone_e164"]).to_csv(history_path, index=False)
    batch.drop(columns=["entity", "phone_e164"]).to_csv(requests_path, index=False)


def write_sample_pdfs(folder: str | Path, count: int = 12) -> Path:
    """`count` one-page prescriptions with a text layer, prescription-000.pdf ... in `folder`."""
    from emulators.prescriptions import write_prescription_pdf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        write_prescription_pdf(folder / f"prescription-{n:03d}.pdf", n)
    return folder


def _card_config_sections(config_path: str | None) -> dict[str, dict]:
    """The card config file's sections as written (the flow checks their keys when it loads the file
    the sample run writes from them)."""
    if config_path is None:
        return {}
    raw = read_settings(config_path)
    if not isinstance(raw, dict) or not all(isinstance(section, dict) for section in raw.values()):
        raise ValueError(f"{config_path}: expected sections (api, processing) of keys and values")
    return raw


def _card_rate(params: dict) -> float:
    """Requests per second the card emulator admits: the config's rate limit (the sample's default when
    it sets none, or one the flow will refuse)."""
    rate = _card_config_sections(params["config_path"]).get("processing", {}).get("rate_limit_per_minute")
    usable = isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0
    return (rate if usable else CARD_RATE_PER_MINUTE) / 60


def _cards(url: str, params: dict, scratch: str) -> dict:
    """Sample users; the config file (its processing part) with the API part pointing at the emulator."""
    from tasks.samples.tables import write_users

    if _missing(params["input_path"]):
        write_users(params["input_path"], 1000)
    sections = _card_config_sections(params["config_path"])
    api = {"base_url": url, "api_key_env": KEY_ENV, "api_key_block": None,
           **{key: value for key, value in sections.get("api", {}).items() if key == "timeout"}}
    processing = {**sections.get("processing", {}), "work_dir": default_work_dir()}
    config = Path(scratch) / "card-config.json"
    config.write_text(json.dumps({**sections, "api": api, "processing": processing}, indent=2))
    return {"config_path": str(config)}


def _emails(url: str, params: dict, scratch: str) -> dict:
    if _missing(params["input_path"]):
        write_sample_leads(params["input_path"])
    llm_url = url if params["provider"] == "anthropic" else f"{url}/openai/v1"
    return {"llm": _emulated(params["llm"], llm_url), "search": _emulated(params["search"], url)}


def _books(url: str, params: dict, scratch: str) -> dict:
    if _missing(params["input_path"], params["history_path"]):
        write_sample_books(params["input_path"], params["history_path"])
    return {"geocoding": _emulated(params["geocoding"], url),
            "messaging": _emulated(params["messaging"], f"{url}/messaging")}


def _prescriptions(url: str, params: dict, scratch: str) -> dict:
    """`folder_id` is a local folder (sample PDFs written when it has none) served as a Drive folder."""
    from emulators.drive import drive_id

    drive = params["drive"].model_copy(update={"base_url": f"{url}/drive/v3", "credentials": "anonymous"})
    return {"folder_id": drive_id(str(Path(params["folder_id"]).resolve())), "drive": drive,
            "anthropic": _emulated(params["anthropic"], url)}


def _sample_pdfs(params: dict) -> str:
    """The Drive emulator's root: the `folder_id` folder, with sample prescriptions if it has no PDF."""
    folder = Path(params["folder_id"])
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob("*.pdf")):
        write_sample_pdfs(folder)
    return str(folder.resolve())


def _latency(seconds: float) -> dict:
    return {"latency": seconds, "latency_dist": "uniform", "latency_spread": seconds * 0.8}


SAMPLES: dict[str, Sample] = {  # by flow name
    "card-recommendations": Sample(
        lambda p: {"cards": {**_latency(0.05), "error_rate": 0.02, "rate_limit": _card_rate(p)}}, _cards),
    "personalised-emails": Sample(
        lambda p: {"anthropic": _latency(0.2), "chat": _latency(0.2), "serper": _latency(0.1)}, _emails),
    "book-requests": Sample(lambda p: {"geocoding": _latency(0.02), "messaging": _latency(0.02)}, _books),
    "prescription-extraction": Sample(
        lambda p: {"drive": {"drive_root": _sample_pdfs(p)}, "anthropic": _latency(0.3)}, _prescriptions),
}
