"""API keys from environment variables or Prefect Secret blocks, and object storage credentials from a
Prefect credentials block (BATCHFLOWS_STORAGE_BLOCK), never printed."""
from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from tasks.engine.outcomes import FatalError


class Secret:
    """A value that does not show itself in repr, logs, artifacts or Prefect parameters."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def bearer(self) -> "Secret":
        """The value as an `Authorization` header value."""
        return Secret(f"Bearer {self._value}")

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self):  # travels to Dask workers by value, still hidden there
        return (Secret, (self._value,))


def resolve_secret(env_name: str | None, block_name: str | None = None, what: str = "API key") -> Secret:
    """The env var wins; else the Prefect Secret block; else a FatalError saying what to set."""
    if env_name and os.environ.get(env_name):
        return Secret(os.environ[env_name])
    if block_name:
        from prefect.blocks.system import Secret as SecretBlock

        try:
            return Secret(SecretBlock.load(block_name).get())
        except ValueError as error:
            raise FatalError(f"{what}: Prefect Secret block {block_name!r} could not be loaded: {error}") from None
    where = f"environment variable {env_name}" if env_name else "no environment variable configured"
    block = f" or Prefect Secret block {block_name!r}" if block_name else ""
    raise FatalError(f"{what} missing: set the {where}{block}; nothing was sent")


STORAGE_BLOCK_ENV = "BATCHFLOWS_STORAGE_BLOCK"


@dataclass(frozen=True)
class BlockKind:
    """A Prefect credentials block type that can serve object storage: the integration that defines it,
    the store it serves (also the batchflows extra that installs both) and its fsspec options."""

    module: str
    cls: str
    store: str
    options: Callable[[Any], dict[str, Any]]


class StorageCredentials:
    """fsspec options (keys included) for the URLs of one store, from a Prefect credentials block;
    shown by the block's name only. Loaded in each process that opens a URL (flow and Dask workers)."""

    __slots__ = ("block", "store", "_options")

    def __init__(self, block: str, store: str, options: dict[str, Any]):
        self.block, self.store, self._options = block, store, options

    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def __repr__(self) -> str:
        return f"StorageCredentials({self.block!r}, ********)"

    __str__ = __repr__


def _aws_options(block: Any) -> dict[str, Any]:
    """s3fs options from prefect-aws's AwsCredentials: keys or profile, region, endpoint, TLS, botocore config."""
    if block.assume_role_arn:
        raise FatalError("its assume_role_arn is not supported for object storage (the role's session would expire "
                         "mid-run): give the block the role's keys or a profile, or give the machines the role")
    client = block.aws_client_parameters.get_params_override()
    client.pop("config", None)  # a botocore Config: s3fs builds its own from config_kwargs
    client_kwargs = {**client, **({"region_name": block.region_name} if block.region_name else {})}
    options = {"key": block.aws_access_key_id,
               "secret": block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None,
               "token": block.aws_session_token, "profile": block.profile_name,
               "client_kwargs": client_kwargs, "config_kwargs": block.aws_client_parameters.config}
    return {name: value for name, value in options.items() if value}


def _gcp_options(block: Any) -> dict[str, Any]:
    """gcsfs options from prefect-gcp's GcpCredentials: its service account's credentials and project."""
    options = {"token": block.get_credentials_from_service_account(), "project": block.project}
    return {name: value for name, value in options.items() if value}


BLOCK_KINDS = {  # by block type slug
    "aws-credentials": BlockKind("prefect_aws", "AwsCredentials", "s3", _aws_options),
    "gcp-credentials": BlockKind("prefect_gcp", "GcpCredentials", "gcs", _gcp_options),
}
_LOADED: dict[str, tuple[StorageCredentials, ...]] = {}
_LOADING = threading.Lock()


def storage_options(store: str) -> dict[str, Any]:
    """fsspec options for a URL of `store` ("s3", "gcs") from the blocks named by BATCHFLOWS_STORAGE_BLOCK
    (`aws-credentials/<name>`, `gcp-credentials/<name>`, comma-separated); {} when unset or none serves
    the store (the fsspec way then: env, profile, role). Raises FatalError with one line."""
    setting = os.environ.get(STORAGE_BLOCK_ENV, "").strip()
    if not setting:
        return {}
    with _LOADING:
        if setting not in _LOADED:
            _LOADED[setting] = tuple(_load_storage_block(name.strip()) for name in setting.split(",") if name.strip())
    found = [credentials for credentials in _LOADED[setting] if credentials.store == store]
    return found[0].options() if found else {}


def _load_storage_block(name: str) -> StorageCredentials:
    """The block `<type slug>/<name>` from the Prefect API, as fsspec options."""
    slug, _, document = name.partition("/")
    kind = BLOCK_KINDS.get(slug)
    if kind is None or not document:
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: name a Prefect block as aws-credentials/<name> (s3://) or "
                         "gcp-credentials/<name> (gs://)")
    try:
        block_class = getattr(importlib.import_module(kind.module), kind.cls)
    except ImportError:
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: needs {kind.module.replace('_', '-')}: "
                         f"pip install 'batchflows[{kind.store}]'") from None
    try:
        block = block_class.load(document, _sync=True)  # sync even when called under a running event loop
    except ValueError as error:  # no such block document (or one that does not validate)
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: {first_line(error)}") from None
    except Exception as error:  # the Prefect API cannot be reached
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: the block cannot be loaded from the Prefect API "
                         f"({type(error).__name__}: {first_line(error)})") from None
    try:
        return StorageCredentials(name, kind.store, kind.options(block))
    except FatalError as error:
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: {error}") from None


def first_line(error: BaseException) -> str:
    """An error's first line, at most 200 characters (a validation error's later lines may quote values)."""
    return (str(error).strip() or type(error).__name__).splitlines()[0][:200]
