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
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect import get_run_logger
from pydantic import BaseModel

from tasks.engine.run import default_work_dir

KEY_ENV = "BATCHFLOWS_EMULATOR_KEY"  # the emulators accept any key: this one is not a secret
WHERE = ("base_url", "credentials", "key_env", "key_block")  # what an emulated endpoint replaces


def run_emulated(flow, params: dict[str, Any]) -> Any:
    """Run `flow`'s body in this flow run against emulators started for it (`emulate` off)."""
    from emulators import Emulator

    settings, prepare = SAMPLES[flow.name]
    defaults = inspect.signature(flow.fn).parameters
    given = [f"{name}.{field}" for name, value in params.items() if isinstance(value, BaseModel)
             for field in WHERE if getattr(value, field, None) != getattr(defaults[name].default, field, None)]
    if given:
        raise ValueError(f"emulate=true points the APIs at local emulators; do not also give {', '.join(given)}")
    work_dir = str(Path(default_work_dir()) / "emulated")
    with _environment({"BATCHFLOWS_WORK_DIR": work_dir, KEY_ENV: "emulator"}), \
            tempfile.TemporaryDirectory(prefix="batchflows-sample-") as scratch, Emulator(settings(params)) as emulator:
        get_run_logger().warning(f"emulate=true: a sample run, every API call goes to the local emulators at "
                                 f"{emulator.url}; work dir {work_dir}")
        return flow.fn(**{**params, **prepare(emulator.url, params, scratch), "emulate": False})


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
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


def _card_config(params: dict):
    from flows.card_recommendations import CardConfig

    return CardConfig.load(params["config_path"])


def _cards(url: str, params: dict, scratch: str) -> dict:
    """Sample users; the config file (its processing part) with the API part pointing at the emulator."""
    from tasks.samples.tables import write_users

    if _missing(params["input_path"]):
        write_users(params["input_path"], 1000)
    values = _card_config(params).model_dump(mode="json")
    values["api"].update(base_url=url, api_key_env=KEY_ENV, api_key_block=None)
    values["processing"]["work_dir"] = default_work_dir()
    config = Path(scratch) / "card-config.json"
    config.write_text(json.dumps(values, indent=2))
    return {"config_path": str(config)}


def _emails(url: str, params: dict, scratch: str) -> dict:
    from tasks.samples.tables import write_leads

    if _missing(params["input_path"]):
        write_leads(params["input_path"], 60, 20)
    llm_url = url if params["provider"] == "anthropic" else f"{url}/openai/v1"
    return {"llm": _emulated(params["llm"], llm_url), "search": _emulated(params["search"], url)}


def _books(url: str, params: dict, scratch: str) -> dict:
    from tasks.samples.book_requests import history_frame, new_requests_frame

    if _missing(params["input_path"], params["history_path"]):
        history, people = history_frame(2000, seed=3)
        requests = new_requests_frame(200, history, people, seed=4)
        history.drop(columns=["entity", "phone_e164"]).to_csv(params["history_path"], index=False)
        requests.drop(columns=["entity", "phone_e164"]).to_csv(params["input_path"], index=False)
    return {"geocoding": _emulated(params["geocoding"], url),
            "messaging": _emulated(params["messaging"], f"{url}/messaging")}


def _prescriptions(url: str, params: dict, scratch: str) -> dict:
    """`folder_id` is a local folder (sample PDFs written when it has none) served as a Drive folder."""
    from emulators.drive import drive_id

    drive = params["drive"].model_copy(update={"base_url": f"{url}/drive/v3", "credentials": "anonymous"})
    return {"folder_id": drive_id(str(Path(params["folder_id"]).resolve())), "drive": drive,
            "anthropic": _emulated(params["anthropic"], url)}


def _sample_pdfs(params: dict) -> str:
    """The Drive emulator's root: the `folder_id` folder, with 12 sample prescriptions if it has no PDF."""
    from emulators.prescriptions import write_prescription_pdf

    folder = Path(params["folder_id"])
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob("*.pdf")):
        for n in range(12):
            write_prescription_pdf(folder / f"prescription-{n:03d}.pdf", n)
    return str(folder.resolve())


def _latency(seconds: float) -> dict:
    return {"latency": seconds, "latency_dist": "uniform", "latency_spread": seconds * 0.8}


SAMPLES: dict[str, tuple[Callable[[dict], dict], Callable[[str, dict, str], dict]]] = {
    # flow name: (emulator settings from the parameters, parameter overrides once it runs)
    "card-recommendations": (lambda p: {"cards": {**_latency(0.05), "error_rate": 0.02, "rate_limit": (
        _card_config(p).processing.rate_limit_per_minute or 6000) / 60}}, _cards),
    "personalised-emails": (lambda p: {"anthropic": _latency(0.2), "chat": _latency(0.2), "serper": _latency(0.1)},
                            _emails),
    "book-requests": (lambda p: {"geocoding": _latency(0.02), "messaging": _latency(0.02)}, _books),
    "prescription-extraction": (lambda p: {"drive": {"drive_root": _sample_pdfs(p)}, "anthropic": _latency(0.3)},
                                _prescriptions),
}
