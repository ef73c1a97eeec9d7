"""Slack listeners, one module per kind, each with ``register(app)``."""

from __future__ import annotations

from slack_bolt import App

from bot.listeners import actions, commands, events, labelset, multilabel, review, unmatched, views


def register(app: App) -> None:
    commands.register(app)
    actions.register(app)
    views.register(app)
    events.register(app)
    review.register(app)
    labelset.register(app)
    multilabel.register(app)
    unmatched.register(app)  # last: what nothing above matched
