"""The playground's HTTP routes on the bot's own ``SlackHTTPServer``: the page, its static files,
uploaded files and a small JSON API the page calls.

``GET  /playground``                        the page (``static/index.html``)
``GET  /playground/static/NAME``            its script and style sheet
``GET  /playground/files/FILE_ID``          a file the bot uploaded (``files_upload_v2``)
``GET  /playground/api/state?user=U&since=N`` what U sees, after waiting for a change past version N
``POST /playground/api/command|message|action|submit|close|home``   what a person does (JSON bodies)

POSTs must be JSON: a cross-site form cannot send that without a CORS preflight, which is never
granted, so other web pages cannot drive the playground. On a loopback address only loopback host names
are answered (no DNS rebinding). Pages carry a strict Content-Security-Policy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bot.playground.workspace import LONG_POLL_SECONDS, PlaygroundError
from bot.standin import StandInError

if TYPE_CHECKING:
    from bot.playground.workspace import Playground

log = logging.getLogger(__name__)

PREFIX = "/playground"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# No inline scripts or styles, no plugins, no framing; images may also be external (image_url blocks).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Cache-Control": "no-store"}
_INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

Response = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any) -> Response:
    headers = {"Content-Type": "application/json; charset=utf-8", **_SAFE_HEADERS}
    return status, headers, json.dumps(body).encode()


def _error(status: int, message: str) -> Response:
    return _json(status, {"ok": False, "error": message})


def static_file(name: str) -> bytes | None:
    """A file of ``bot/playground/static`` by plain name (no paths), or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    resource = resources.files("bot.playground").joinpath("static", name)
    return resource.read_bytes() if resource.is_file() else None


class PlaygroundRoutes:
    """A ``bot.server.Route``: answers the playground's paths, None for everything else."""

    def __init__(self, playground: Playground, *, loopback_only: bool = True) -> None:
        self.playground = playground
        self.loopback_only = loopback_only
        self._posts: dict[str, Callable[[dict], dict]] = {
            "command": lambda b: playground.command(b["user"], b["channel"], str(b["text"])),
            "message": lambda b: playground.message(b["user"], b["channel"], str(b["text"])),
            "action": lambda b: playground.action(
                b["user"], block_id=b["block_id"], action_id=b["action_id"], channel_id=b.get("channel"),
                ts=b.get("ts"), view_id=b.get("view_id"), value=b.get("value"),
                selected_value=b.get("selected_value"), values=b.get("values"),
            ),
            "submit": lambda b: playground.submit(b["user"], b["view_id"], b.get("values") or {}),
            "close": lambda b: playground.close(b["user"], b["view_id"]),
            "home": lambda b: playground.open_home(b["user"]),
        }

    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response | None:
        url = urlsplit(path)
        route = url.path
        if route in ("/", ""):
            return 302, {"Location": PREFIX}, b""
        if route != PREFIX and not route.startswith(PREFIX + "/"):
            return None
        if self.loopback_only and urlsplit("//" + headers.get("host", "")).hostname not in _LOOPBACK_NAMES:
            # A page on another domain that resolves to 127.0.0.1 (DNS rebinding) gets nothing.
            return _error(403, "use http://127.0.0.1 or http://localhost")
        try:
            return self._dispatch(method, route, url.query, headers, body)
        except PlaygroundError as exc:
            return _error(exc.status, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"bad request: {exc}")
        except Exception:  # a bug answers 500 rather than leaving the page waiting
            log.exception("playground route %s %s failed", method, path)
            return _error(500, "internal error in the playground")

    def _dispatch(
        self, method: str, route: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response:
        if method in ("GET", "HEAD"):
            if route in (PREFIX, PREFIX + "/"):
                return self._static("index.html")
            if route.startswith(PREFIX + "/static/"):
                return self._static(route[len(PREFIX + "/static/"):])
            if route.startswith(PREFIX + "/files/"):
                return self._file(route[len(PREFIX + "/files/"):].split("/")[0])
            if route == PREFIX + "/api/state":
                params = parse_qs(query)
                # No user yet (the page's first request): the first team member.
                user = params.get("user", [""])[0] or self.playground.users[0].id
                since = int(params["since"][0]) if params.get("since") else None
                return _json(200, self.playground.state(user, since=since, timeout=LONG_POLL_SECONDS))
            return _error(404, "not found")
        if method != "POST" or not route.startswith(PREFIX + "/api/"):
            return _error(405, "method not allowed")
        handler = self._posts.get(route[len(PREFIX + "/api/"):])
        if handler is None:
            return _error(404, "not found")
        if not headers.get("content-type", "").startswith("application/json"):
            return _error(415, "send JSON (Content-Type: application/json)")
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc != headers.get("host"):
            return _error(403, "cross-origin requests are not allowed")
        payload = json.loads(body.decode("utf-8") or "{}")
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        return _json(200, handler(payload))

    @staticmethod
    def _static(name: str) -> Response:
        content = static_file(name)
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if content is None or suffix not in STATIC_TYPES:
            return _error(404, "not found")
        headers = {"Content-Type": STATIC_TYPES[suffix], **_SAFE_HEADERS}
        if suffix == ".html":
            headers["Content-Security-Policy"] = CSP
        return 200, headers, content

    def _file(self, file_id: str) -> Response:
        files = {f["id"]: f for f in self.playground.standin.files()}
        if file_id not in files:
            return _error(404, "no such file")
        try:
            content = self.playground.standin.file_content(file_id)
        except StandInError:
            return _error(404, "the file has no content")
        mimetype = files[file_id].get("mimetype") or "application/octet-stream"
        headers = {"Content-Type": mimetype, **_SAFE_HEADERS,
                   "Content-Security-Policy": "default-src 'none'; sandbox"}
        if mimetype not in _INLINE_TYPES:
            # Anything but a plain image is downloaded, never rendered on the playground's origin.
            name = (files[file_id].get("name") or file_id).replace('"', "")
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return 200, headers, content
