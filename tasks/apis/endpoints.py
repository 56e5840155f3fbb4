"""Each API's endpoint parameter with its defaults (where it is, its key, its limits)."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict

from tasks.apis.drive import DRIVE_URL, DriveSpec
from tasks.engine.params import (
    ApiUrl,
    BaseUrl,
    DefaultedUrl,
    Endpoint,
    Help,
    KeyEnv,
    PerMinute,
    Rate,
)

# Drive API usage limits (developers.google.com/workspace/drive/api/guides/limits): 12,000 queries per
# 60 s per user, the quota of projects that used the API before May 2026 (newer ones count quota units)
DRIVE_REQUESTS_PER_MINUTE = 12_000


class SerperEndpoint(Endpoint):
    """Serper's Google search API (company research)."""

    base_url: ApiUrl = "https://google.serper.dev"
    key_env: KeyEnv = "SERPER_API_KEY"
    requests_per_minute: PerMinute = 300


class LlmEndpoint(Endpoint):
    """An LLM API: Anthropic's, or OpenAI-compatible (Groq, OpenAI, vLLM); the provider picks the defaults."""

    base_url: DefaultedUrl = None
    key_env: Annotated[str | None, Help("environment variable holding the API key (empty: ANTHROPIC_API_KEY "
                                        "or OPENAI_API_KEY, by provider)")] = None
    requests_per_minute: PerMinute = 50
    tokens_per_minute: Annotated[Rate | None, Help("input + output tokens per minute (empty: no limit)")] = None
    limit_window: Annotated[Rate, Help("seconds the provider counts its limits over")] = 60


class AnthropicEndpoint(LlmEndpoint):
    """Anthropic's Messages API."""

    base_url: Annotated[BaseUrl | None, Help("the API's base URL (empty: https://api.anthropic.com)")] = None
    key_env: KeyEnv = "ANTHROPIC_API_KEY"


class GeocodingEndpoint(Endpoint):
    """Google's Geocoding API."""

    base_url: ApiUrl = "https://maps.googleapis.com"
    key_env: KeyEnv = "GOOGLE_MAPS_API_KEY"
    requests_per_minute: PerMinute = 3000


class MessagingEndpoint(Endpoint):
    """The SMS/email provider of the confirmation messages."""

    base_url: ApiUrl = "https://api.messaging.example"
    key_env: KeyEnv = "MESSAGING_API_KEY"
    requests_per_minute: PerMinute = 1200


class DriveEndpoint(BaseModel):
    """Google Drive: where it is, how to sign in, its request limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: Annotated[BaseUrl | None, Help(f"the Drive API (empty: {DRIVE_URL}; an emulator's .../drive/v3)")] = None
    credentials: Annotated[str | None, Help("service-account JSON file, 'default' (application-default credentials) "
                                            "or 'anonymous' (empty: anonymous with a base URL, else default)")] = None
    requests_per_minute: PerMinute = DRIVE_REQUESTS_PER_MINUTE

    def spec(self) -> DriveSpec:
        """The engine's Drive resource: anonymous against an emulator, default credentials against Google."""
        endpoint = f"{self.base_url}/" if self.base_url else DRIVE_URL
        credentials = self.credentials or ("anonymous" if self.base_url else "default")
        return DriveSpec(endpoint, credentials, self.requests_per_minute)


PricesFile = Annotated[str | None, Help("JSON/YAML price table {model: {input, output}} in USD per million tokens "
                                        "(default: the built-in one)")]
