"""Bot settings from the environment and ``.env`` (the ``SLACK_*`` names Slack's docs use)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError
from core.settings_errors import invalid_settings

Transport = Literal["socket", "http"]


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    # Base URL of the Web API, e.g. http://127.0.0.1:PORT/api/ for a local stand-in.
    slack_api_url: str | None = None
    admins: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), validation_alias=AliasChoices("LABELBOT_ADMINS", "admins")
    )
    http_host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("LABELBOT_HOST", "http_host"))
    http_port: int = Field(default=3000, validation_alias=AliasChoices("LABELBOT_PORT", "http_port"))
    # Threads for the work after an ack (card updates, next cards). Few on purpose: they share the
    # GIL with the requests Slack waits on (docs/benchmarks.md); each 429 back-off holds one.
    after_ack_workers: int = Field(
        default=4, ge=1, validation_alias=AliasChoices("LABELBOT_AFTER_ACK_WORKERS", "after_ack_workers")
    )

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def has_slack_credentials(self) -> bool:
        return bool(self.slack_bot_token)

    def transport(self, *, force_http: bool = False) -> Transport:
        return "http" if force_http or not self.slack_app_token else "socket"

    def check(self, transport: Transport) -> None:
        """Raise one ConfigError naming every missing or contradictory setting for ``transport``."""
        problems = []
        if not self.slack_bot_token:
            problems.append("SLACK_BOT_TOKEN (the Bot User OAuth Token, xoxb-...) is not set")
        elif not self.slack_bot_token.startswith("xoxb-"):
            problems.append("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
        if transport == "socket":
            if not (self.slack_app_token or "").startswith("xapp-"):
                problems.append(
                    "SLACK_APP_TOKEN must be an app-level token starting with xapp- for Socket Mode"
                )
        elif not self.slack_signing_secret:
            problems.append("SLACK_SIGNING_SECRET is not set (needed to verify requests over HTTP)")
        if self.slack_api_url and not self.slack_api_url.startswith(("http://", "https://")):
            problems.append("SLACK_API_URL must be an http(s) URL ending in /api/")
        if problems:
            raise ConfigError(
                "Cannot start the Slack bot: " + "; ".join(problems) + ". Set them in the environment "
                "or in .env (see README, 'Create the Slack app')."
            )


def load_bot_settings(**overrides: object) -> BotSettings:
    try:
        return BotSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise invalid_settings(exc, BotSettings) from None
