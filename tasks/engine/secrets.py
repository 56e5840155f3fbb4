"""API keys from environment variables or Prefect Secret blocks, never printed."""
from __future__ import annotations

import os

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
