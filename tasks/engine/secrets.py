"""API keys from environment variables or Prefect Secret blocks, and object storage credentials from a
Prefect credentials block (BATCHFLOWS_STORAGE_BLOCK), never printed."""
from __future__ import annotations

import importlib
import os
import threading
from typing import Any

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


class StorageCredentials:
    """fsspec options (keys included) for the URLs of one store, from a Prefect credentials block;
    shown by the block's name only. Loaded in each process that opens a URL (flow and Dask workers)."""

    __slots__ = ("block", "schemes", "_options")

    def __init__(self, block: str, schemes: frozenset[str], options: dict[str, Any]):
        self.block, self.schemes, self._options = block, schemes, options

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
    client.pop("config", None)
    client_kwargs = {**client, **({"region_name": block.region_name} if block.region_name else {})}
    options = {"key": block.aws_access_key_id,
               "secret": block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None,
               "token": block.aws_session_token, "profile": block.profile_name,
               "client_kwargs": client_kwargs, "config_kwargs": block.aws_client_parameters.config}
    return {name: value for name, value in options.items() if value}


def _gcp_options(block: Any) -> dict[str, Any]:
    """gcsfs options from prefect-gcp's GcpCredentials: its service account's credentials and project."""
    return {"token": block.get_credentials_from_service_account(), "project": block.project}


_BLOCK_KINDS = {  # block type slug -> (module, class, extra, the schemes it serves, its fsspec options)
    "aws-credentials": ("prefect_aws", "AwsCredentials", "s3", frozenset({"s3", "s3a"}), _aws_options),
    "gcp-credentials": ("prefect_gcp", "GcpCredentials", "gcs", frozenset({"gs", "gcs"}), _gcp_options),
}
_LOADED: dict[str, tuple[StorageCredentials, ...]] = {}
_LOADING = threading.Lock()


def storage_options(scheme: str) -> dict[str, Any]:
    """fsspec options for a URL of `scheme` from the blocks named by BATCHFLOWS_STORAGE_BLOCK
    (`aws-credentials/<name>`, `gcp-credentials/<name>`, comma-separated); {} when unset or none serves
    the scheme (the fsspec way then: env, profile, role). Raises FatalError with one line."""
    setting = os.environ.get(STORAGE_BLOCK_ENV, "").strip()
    if not setting:
        return {}
    with _LOADING:
        if setting not in _LOADED:
            _LOADED[setting] = tuple(_load_storage_block(name.strip()) for name in setting.split(",") if name.strip())
    found = [credentials for credentials in _LOADED[setting] if scheme in credentials.schemes]
    return found[0].options() if found else {}


def _load_storage_block(name: str) -> StorageCredentials:
    """The block `<type slug>/<name>` from the Prefect API, as fsspec options."""
    kind, _, document = name.partition("/")
    if kind not in _BLOCK_KINDS or not document:
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: name a Prefect block as aws-credentials/<name> (s3://) or "
                         "gcp-credentials/<name> (gs://)")
    module, cls, extra, schemes, options = _BLOCK_KINDS[kind]
    try:
        block_class = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: needs {module.replace('_', '-')}: "
                         f"pip install 'batchflows[{extra}]'") from None
    try:
        block = block_class.load(document, _sync=True)
    except ValueError as error:  # no such block document (or one that does not validate)
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: {_first_line(error)}") from None
    except Exception as error:  # the Prefect API cannot be reached
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: the block cannot be loaded from the Prefect API "
                         f"({type(error).__name__}: {_first_line(error)})") from None
    try:
        return StorageCredentials(name, schemes, options(block))
    except FatalError as error:
        raise FatalError(f"{STORAGE_BLOCK_ENV}={name}: {error}") from None


def _first_line(error: BaseException) -> str:
    """An error's first line (a validation error's later lines may quote the block's values)."""
    return (str(error).strip() or type(error).__name__).splitlines()[0][:200]
