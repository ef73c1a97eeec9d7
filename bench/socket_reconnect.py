"""How fast slack_sdk's Socket Mode clients get back after Slack asks for a refresh and after a drop.

Against the stand-in's WebSocket server (bot/standin/socket_mode.py): connect, then (1) send
``disconnect``/``refresh_requested``, (2) cut the TCP connection without a close frame. For each, the
seconds until the new connection is open and until an envelope sent then is acked, and the CPU seconds the
client's process used meanwhile. ``builtin`` is what ``labelbot serve`` uses (bolt's default handler);
``websocket_client`` needs the websocket-client package and is skipped without it.

    .venv/bin/python bench/socket_reconnect.py [--ping-interval 10]

A run (2 cores shared with other jobs, load average 2.6; websocket-client 1.9.2 installed aside):
    builtin          refresh_requested new connection   0.10 s, ack   3.14 s, CPU   0.04 s
    builtin          dropped           new connection  56.95 s, ack  57.17 s, CPU  43.81 s
    websocket_client refresh_requested new connection   0.51 s, ack   0.51 s, CPU   0.01 s
    websocket_client dropped           new connection   0.51 s, ack   0.51 s, CPU   0.01 s
The builtin client reads the end of the stream (recv() == b"") as "no data yet" and loops on it without
sleeping until five pings in a row have failed: about five ping intervals of one busy core, deaf meanwhile.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import time

from slack_sdk import WebClient
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.standin import SlackStandIn, SocketModeStandIn

CLIENTS = {
    "builtin": "slack_sdk.socket_mode.builtin",
    "websocket_client": "slack_sdk.socket_mode.websocket_client",
}


def measure(kind: str, ping_interval: float) -> list[str]:
    try:
        module = importlib.import_module(CLIENTS[kind])
    except ImportError as exc:
        return [f"{kind}: skipped ({exc})"]
    standin = SlackStandIn().start()
    socket_mode = SocketModeStandIn(standin).start()
    client = module.SocketModeClient(
        app_token=socket_mode.app_token, ping_interval=ping_interval,
        web_client=WebClient(token="xoxb-test", base_url=standin.base_url),
    )
    client.socket_mode_request_listeners.append(
        lambda c, req: c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
    )
    lines = []
    try:
        client.connect()
        socket_mode.wait_for_connections(1)
        for number, (what, act) in enumerate(
            (("refresh_requested", socket_mode.request_refresh), ("dropped", socket_mode.drop)), start=2
        ):
            start, cpu = time.monotonic(), time.process_time()
            act()
            socket_mode.wait_for_connections(number, timeout=300)
            connected = time.monotonic() - start
            envelope = socket_mode.deliver("events_api", {"type": "event_callback", "event": {"type": what}})
            socket_mode.wait_for_ack(envelope, timeout=300)
            acked = time.monotonic() - start
            lines.append(
                f"{kind:16} {what:17} new connection {connected:6.2f} s, ack {acked:6.2f} s,"
                f" CPU {time.process_time() - cpu:6.2f} s"
            )
    finally:
        client.close()
        socket_mode.stop()
        standin.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ping-interval", type=float, default=10.0, help="seconds (bolt's handler: 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    print(f"ping interval {args.ping_interval} s; load average {os.getloadavg()[0]:.2f}")
    for kind in CLIENTS:
        print("\n".join(measure(kind, args.ping_interval)), flush=True)


if __name__ == "__main__":
    main()
