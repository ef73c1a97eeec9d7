"""Events API: the App Home dashboard."""

from __future__ import annotations

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot import blocks
from bot.labeling import Labeling, ack_first


def on_app_home_opened(event: dict, client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home":
        return
    labeling: Labeling = context["labeling"]
    service = labeling.service
    projects = [(info, service.status(info.name)) for info in service.list_projects()]
    client.views_publish(user_id=event["user"], view=blocks.home_view(projects, event["user"]))


def register(app: App) -> None:
    app.event("app_home_opened")(ack_first(on_app_home_opened))
