"""A local Slack stand-in: the Web API (``SlackStandIn``) and signed requests to a bolt app
(``SlackRequestSender``). Stdlib only; used by the tests and the local playground. Socket Mode
(``SocketModeStandIn``) needs the ``websockets`` package (the dev extra), imported when it starts."""

from bot.standin.signing import (
    SenderResponse,
    SlackRequestSender,
    action_from_blocks,
    card_message,
    compute_signature,
    make_trigger_id,
)
from bot.standin.socket_mode import Ack, SocketModeSender, SocketModeStandIn
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
    "Ack",
    "RecordedCall",
    "SenderResponse",
    "SlackRequestSender",
    "SlackStandIn",
    "SocketModeSender",
    "SocketModeStandIn",
    "StandInError",
    "action_from_blocks",
    "card_message",
    "compute_signature",
    "make_trigger_id",
    "validate_blocks",
]
