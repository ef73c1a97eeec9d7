"""The last listeners: a click or a form from an old or foreign card that no other listener knows.

Bolt answers such a request with 404 (Slack shows the user an error icon) and logs a many-line warning
with a code suggestion; these ack it and log one line. Registered after every other listener, so they
only see what nothing else matched.
"""

from __future__ import annotations

import logging
import re

from slack_bolt import Ack, App

log = logging.getLogger(__name__)

ANYTHING = re.compile(r".*", re.DOTALL)


def on_unknown_action(ack: Ack, body: dict, action: dict) -> None:
    ack()
    log.info("Ignored a click on an unknown control %r from %s", str(action.get("action_id"))[:80],
             (body.get("user") or {}).get("id"))


def on_unknown_view(ack: Ack, body: dict, view: dict) -> None:
    ack()
    log.info("Ignored a form with an unknown callback id %r from %s", str(view.get("callback_id"))[:80],
             (body.get("user") or {}).get("id"))


def register(app: App) -> None:
    app.action(ANYTHING)(on_unknown_action)
    app.view(ANYTHING)(on_unknown_view)
