"""A setting that cannot be read, as one line naming the environment variable (issue 12).

pydantic's report is several lines and names the field (``queue_size``), not what the user set
(``LABELBOT_QUEUE_SIZE``); the CLI prints this line instead of a traceback.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from core.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)

#: Values of these settings are never repeated back (they end up in logs and terminals).
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")


def invalid_settings(exc: ValidationError, settings_class: type[BaseSettings]) -> ConfigError:
    """One ``ConfigError`` naming each setting ``exc`` refused, its value and why."""
    prefix = str(settings_class.model_config.get("env_prefix") or "")
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        # A field with an alias is reported under it (LABELBOT_PORT); else prefix + field name.
        name = field if field.isupper() else f"{prefix}{field}".upper()
        value = error.get("input")
        shown = "" if any(word in name for word in _SECRET_WORDS) or not isinstance(value, str) else (
            f"={value[:60]!r}"
        )
        problems.append(f"{name}{shown}: {' '.join(str(error['msg']).split())}")
    return ConfigError(
        f"Invalid setting {'; '.join(problems)}. Fix it in the environment or in .env."
    )


def read_settings(settings_class: type[S], **overrides: object) -> S:
    """``settings_class(**overrides)`` from the environment and ``.env``; a bad value raises one
    :class:`ConfigError` line instead of pydantic's report."""
    try:
        return settings_class(**overrides)
    except ValidationError as exc:
        raise invalid_settings(exc, settings_class) from None
