"""Typed flow parameters: one definition serves the flow's signature, Prefect's validation, the
Prefect UI's form and the `batchflows` command line (which builds its options from them)."""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Annotated

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tasks.engine.secrets import Secret, resolve_secret
from tasks.engine.tables import FORMATS


@dataclass(frozen=True)
class Help:
    """A parameter's description, shown in the Prefect UI's form and in `batchflows ... --help`."""

    text: str

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["description"] = self.text
        return schema


@dataclass(frozen=True)
class Cli:
    """How a parameter appears on the command line when not as `--its-name`: other flags, or positional."""

    flags: tuple[str, ...] = ()
    positional: bool = False
    metavar: str | None = None


def _known_format(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix not in FORMATS:
        raise ValueError(f"the file type must be one of {', '.join(sorted(FORMATS))}")
    return path


def _base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("a base URL needs http:// or https:// and a host, e.g. https://api.example.com")
    return url.rstrip("/")


def _encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError("not a known text encoding (e.g. utf-8, cp1252, latin-1)") from None
    return name


def _runner(value: str) -> str:
    if value in ("thread", "dask"):
        return value
    if value.startswith("tcp://"):
        url = httpx.URL(value)
        if url.host and url.port:
            return value
    raise ValueError("thread, dask, or tcp://host:port of a Dask scheduler")


Positive = Annotated[int, Field(ge=1)]
Rate = Annotated[float, Field(gt=0)]
BaseUrl = Annotated[str, AfterValidator(_base_url), Field(json_schema_extra={"format": "uri"})]
TablePath = Annotated[str, Field(min_length=1), AfterValidator(_known_format)]

InputFile = Annotated[TablePath, Help("input table: .csv, .xlsx, .parquet or .jsonl"),
                      Cli(positional=True, metavar="input")]
OutputFile = Annotated[TablePath, Help("output file: .csv, .xlsx, .parquet or .jsonl (by suffix)"),
                       Cli(("-o", "--output"))]
Runner = Annotated[str, AfterValidator(_runner),
                   Help("thread, dask (a local cluster), or tcp://host:port of a Dask scheduler")]
Workers = Annotated[Positive | None, Help("chunks run at once (default: the runner's threads)")]
Concurrency = Annotated[Positive, Help("requests in flight for the whole run")]
ChunkSize = Annotated[Positive, Help("rows per Prefect task")]
Limit = Annotated[Positive | None, Help("process only the first N rows (a test-size run)")]
Encoding = Annotated[str, AfterValidator(_encoding),
                     Help("text encoding of a CSV input (e.g. cp1252 for files saved by Excel)")]
FailedFraction = Annotated[float | None, Field(ge=0, le=1), Help(
    "the run ends Failed (exit 1, after its whole output) when more than this share of its rows failed; "
    "empty: never")]
Emulate = Annotated[bool, Help("a sample run: every API is a local emulator started for it")]


ApiUrl = Annotated[BaseUrl, Help("the API's base URL (an emulator's for a local run)")]
DefaultedUrl = Annotated[BaseUrl | None, Help("the API's base URL (empty: the provider's own)")]
KeyEnv = Annotated[str | None, Help("environment variable holding the API key")]
KeyBlock = Annotated[str | None, Help("Prefect Secret block holding the API key (used when the env var is unset)")]
PerMinute = Annotated[Rate | None, Help("requests per minute for the whole run, wherever it runs (empty: no limit)")]


class Endpoint(BaseModel):
    """An API: where it is, where its key comes from, how fast it may be called. Each API subclasses
    it with its own defaults, so a partial value (`{requests_per_minute: 600}`) keeps the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: ApiUrl
    key_env: KeyEnv
    key_block: KeyBlock = None
    requests_per_minute: PerMinute

    def key(self, what: str) -> Secret:
        """The key, from the env var or the Secret block; a FatalError naming both when neither has it."""
        return resolve_secret(self.key_env, self.key_block, what)

    @property
    def per_second(self) -> float | None:
        return self.requests_per_minute / 60 if self.requests_per_minute else None
