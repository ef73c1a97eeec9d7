"""A local Slack stand-in: the Web API (``SlackStandIn``) and signed requests to a bolt app
(``SlackRequestSender``). Stdlib only; used by the tests and the local playground."""

from bot.standin.signing import (
    SenderResponse,
    SlackRequestSender,
    action_from_blocks,
    card_message,
    compute_signature,
    make_trigger_id,
)
from bot.standin.webapi import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    RecordedCall,
    SlackStandIn,
    StandInError,
    validate_blocks,
)

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "RecordedCall",
    "SenderResponse",
    "SlackRequestSender",
    "SlackStandIn",
    "StandInError",
    "action_from_blocks",
    "card_message",
    "compute_signature",
    "make_trigger_id",
    "validate_blocks",
]
