"""A local Slack-like playground: the real bot against the Slack stand-in, used from a web page.

See ``workspace.Playground`` (the engine), ``routes`` (the page's HTTP API) and ``demo`` (the bundled
demo project and the ``labelbot demo`` runner).
"""

from bot.playground.demo import DEMO_PROJECT, DemoSetup, demo_settings, ensure_demo_project, serve_playground
from bot.playground.workspace import (
    ADMIN_USER_ID,
    CHANNEL_ID,
    DEFAULT_USERS,
    Playground,
    PlaygroundError,
    PlaygroundUser,
    build_state_values,
)

__all__ = [
    "ADMIN_USER_ID",
    "CHANNEL_ID",
    "DEFAULT_USERS",
    "DEMO_PROJECT",
    "DemoSetup",
    "Playground",
    "PlaygroundError",
    "PlaygroundUser",
    "build_state_values",
    "demo_settings",
    "ensure_demo_project",
    "serve_playground",
]
