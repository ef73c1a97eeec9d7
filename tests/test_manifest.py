"""manifest.yml: valid against the Slack app manifest schema, and in step with the code.

Commands and events come from the listeners a real ``create_app`` App registers; the Web API methods
from a scan of ``bot/`` for WebClient calls (mapped to API method names by reading slack_sdk's own
source), cross-checked against what the running bot calls on the Slack stand-in. Methods and events
map to the bot scopes Slack's reference pages list for bot tokens (tables below): the manifest must
declare each scope the code needs, and no scope nothing needs.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from slack_sdk import WebClient

import bot
from bot.listeners import commands as command_listeners

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifest.yml"
SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "slack" / "slack-app-manifest.schema.json"
BOT_DIR = Path(bot.__file__).resolve().parent
# The stand-in and the playground play Slack's part (serving the Web API, applying a modal's
# response_action); the calls they make are Slack's, not the bot's.
NOT_SCANNED = ("standin", "playground")

# Bot-token scopes per Web API method (api.slack.com/methods/<method>, "Required scopes"). A tuple of
# several scopes lists alternatives, any one of which is enough; () means no scope is needed. A method
# the code calls that is missing here fails the test: look its scopes up and add a row.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "api.test": (),
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.scheduleMessage": ("chat:write",),
    "chat.deleteScheduledMessage": ("chat:write",),
    "chat.getPermalink": (),
    "chat.meMessage": ("chat:write",),
    # Opening a DM with one user; mpim:write would only be for group DMs.
    "conversations.open": ("im:write",),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.list": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.members": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.history": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.replies": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.join": ("channels:join",),
    "users.info": ("users:read",),
    "users.list": ("users:read",),
    "users.lookupByEmail": ("users:read.email",),
    "users.profile.get": ("users.profile:read",),
    "team.info": ("team:read",),
    "views.open": (),
    "views.push": (),
    "views.update": (),
    "views.publish": (),
    "reactions.add": ("reactions:write",),
    "reactions.remove": ("reactions:write",),
    "pins.add": ("pins:write",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
    "files.upload": ("files:write",),
    "files.info": ("files:read",),
    "files.delete": ("files:write",),
}

# Bot scopes an Events API subscription needs (api.slack.com/events/<event>).
EVENT_SCOPES: dict[str, tuple[str, ...]] = {
    "app_home_opened": (),
    "app_uninstalled": (),
    "tokens_revoked": (),
    "app_mention": ("app_mentions:read",),
    "message.im": ("im:history",),
    "message.channels": ("channels:history",),
    "message.groups": ("groups:history",),
    "message.mpim": ("mpim:history",),
    "member_joined_channel": ("channels:read", "groups:read"),
    "team_join": ("users:read",),
    "user_change": ("users:read",),
    "reaction_added": ("reactions:read",),
}

# Web API calls bolt itself makes: auth.test when the App starts (token verification).
BOLT_METHODS = frozenset({"auth.test"})

# The kinds of listener bolt registers (slack_bolt.listener_matcher.builtins) and what they need.
EVENT_KINDS = frozenset({"event", "message_event"})
INTERACTIVE_KINDS = frozenset({
    "action", "block_action", "attachment_action", "dialog_submission", "dialog_cancellation",
    "view", "view_submission", "view_closed", "shortcut", "global_shortcut", "message_shortcut",
    "options", "block_suggestion", "dialog_suggestion",
})
LISTENER_KINDS = EVENT_KINDS | INTERACTIVE_KINDS | {"command", "function_executed"}


# ---------------------------------------------------------------------------------------- the manifest


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest()


def bot_scopes(manifest: dict[str, Any]) -> set[str]:
    return set(manifest.get("oauth_config", {}).get("scopes", {}).get("bot") or [])


def bot_events(manifest: dict[str, Any]) -> set[str]:
    return set(manifest.get("settings", {}).get("event_subscriptions", {}).get("bot_events") or [])


def declared_commands(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["command"]: c for c in manifest.get("features", {}).get("slash_commands") or []}


# ------------------------------------------------------------------ Web API methods the code calls


def webclient_api_methods() -> dict[str, frozenset[str]]:
    """WebClient method name → the Web API methods it calls, read from slack_sdk's source.

    ``chat_postMessage`` → {chat.postMessage}; ``files_upload_v2`` → {files.getUploadURLExternal,
    files.completeUploadExternal} (it calls other WebClient methods: followed transitively).
    """
    import slack_sdk.web.client as client_module

    tree = ast.parse(inspect.getsource(client_module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == WebClient.__name__)
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for fn in cls.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        direct[fn.name], calls[fn.name] = set(), set()
        for node in ast.walk(fn):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self"
            ):
                continue
            if node.func.attr == "api_call":
                name = _api_method_argument(node)
                if name:
                    direct[fn.name].add(name)
            else:
                calls[fn.name].add(node.func.attr)

    def resolve(name: str, seen: frozenset[str]) -> set[str]:
        found = set(direct.get(name, ()))
        for inner in calls.get(name, ()):
            if inner in direct and inner not in seen:
                found |= resolve(inner, seen | {inner})
        return found

    mapping = {name: frozenset(resolve(name, frozenset({name}))) for name in direct}
    return {name: methods for name, methods in mapping.items() if methods}


def _api_method_argument(call: ast.Call) -> str | None:
    keywords = (k.value for k in call.keywords if k.arg == "api_method")
    node = call.args[0] if call.args else next(keywords, None)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


@pytest.fixture(scope="module")
def client_methods() -> dict[str, frozenset[str]]:
    return webclient_api_methods()


def scan_source(source: str, client_methods: dict[str, frozenset[str]], where: str = "<source>"
                ) -> dict[str, list[str]]:
    """Web API method → ``file:line`` of each call in ``source``.

    Counts ``<anything>.chat_postMessage(...)``-style calls (any receiver: ``client``, ``call.client``,
    ``app.client``...), ``<anything>.api_call("x.y")`` and bolt's ``say(...)`` (chat.postMessage).
    """
    found: dict[str, list[str]] = defaultdict(list)
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        at = f"{where}:{node.lineno}"
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in client_methods:
            for method in client_methods[func.attr]:
                found[method].append(at)
        elif isinstance(func, ast.Attribute) and func.attr == "api_call":
            name = _api_method_argument(node)
            if name:
                found[name].append(at)
        elif isinstance(func, ast.Name) and func.id == "say":
            found["chat.postMessage"].append(at)
    return dict(found)


def scan_bot(client_methods: dict[str, frozenset[str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(BOT_DIR.rglob("*.py")):
        relative = path.relative_to(BOT_DIR)
        if relative.parts[0] in NOT_SCANNED:
            continue
        where = f"bot/{relative.as_posix()}"
        for method, places in scan_source(path.read_text(encoding="utf-8"), client_methods, where).items():
            found[method].extend(places)
    return dict(found)


@pytest.fixture(scope="module")
def called_methods(client_methods: dict[str, frozenset[str]]) -> dict[str, list[str]]:
    return scan_bot(client_methods)


# ------------------------------------------------------------------------------- scope arithmetic


def requirements(methods: dict[str, Any], events: set[str], *, has_commands: bool
                 ) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """What needs a scope → the scopes that satisfy it (alternatives); plus names missing from the tables."""
    needs: dict[str, tuple[str, ...]] = {}
    unknown = []
    for method in methods:
        if method not in METHOD_SCOPES:
            unknown.append(f"Web API method {method}")
        elif METHOD_SCOPES[method]:
            needs[f"method {method}"] = METHOD_SCOPES[method]
    for event in events:
        if event not in EVENT_SCOPES:
            unknown.append(f"event {event}")
        elif EVENT_SCOPES[event]:
            needs[f"event {event}"] = EVENT_SCOPES[event]
    if has_commands:
        needs["slash commands"] = ("commands",)
    return needs, sorted(unknown)


def missing_scopes(needs: dict[str, tuple[str, ...]], declared: set[str]) -> dict[str, tuple[str, ...]]:
    """Each need that no declared scope satisfies."""
    return {what: scopes for what, scopes in needs.items() if not declared.intersection(scopes)}


def unused_scopes(needs: dict[str, tuple[str, ...]], declared: set[str]) -> set[str]:
    """Declared scopes that satisfy no need (a minimal manifest has none)."""
    useful = {scope for scopes in needs.values() for scope in scopes}
    return declared - useful


# --------------------------------------------------------------------- listeners of the real App


@dataclass(frozen=True)
class Registration:
    kind: str  # the bolt builtin matcher: event, message_event, command, action, view, ...
    constraint: Any  # what it was registered for: a string, a compiled pattern or a dict


def registered_listeners(tmp_path: Path) -> list[Registration]:
    """Every listener of a real ``create_app`` App, with what it listens for.

    Bolt builds each listener's primary matcher with a function of
    ``slack_bolt.listener_matcher.builtins`` (``event``, ``command``, ``action``...); wrapping those
    while the App is created tells which matcher stands for what. A listener whose matcher was not
    built by a known builtin fails the test instead of being ignored.
    """
    import slack_bolt.listener_matcher.builtins as builtin_matchers

    from bot.app import create_app
    from bot.settings import BotSettings
    from core.config import Settings
    from core.embeddings import HashingEmbedder
    from core.service import LabelingService
    from tests.conftest import database_url

    made: dict[int, tuple[Any, Registration]] = {}

    def recording(kind: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            matcher = original(*args, **kwargs)
            constraint = kwargs.get("constraints", args[0] if args else None)
            if kind == "message_event":
                constraint = dict(kwargs.get("constraints") or args[0])
            made[id(matcher)] = (matcher, Registration(kind, constraint))  # the matcher object keeps its id
            return matcher

        return wrapper

    service = LabelingService(
        Settings(_env_file=None, database_url=database_url(tmp_path, "manifest", with_tables=True),  # type: ignore[call-arg]
                 embedding_model="hashing-64", retrain_every=0),
        embedder=HashingEmbedder(64),
    )
    settings = BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token="xoxb-manifest-test",
        slack_signing_secret="manifest-test-secret",
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            for kind in sorted(LISTENER_KINDS):
                patch.setattr(builtin_matchers, kind, recording(kind, getattr(builtin_matchers, kind)))
            # Nothing is sent: the client points at a closed port and token verification is off.
            app = create_app(settings, service, client=WebClient(token="xoxb-manifest-test",
                             base_url="http://127.0.0.1:9/api/"), token_verification=False)
        registrations = []
        for listener in app._listeners:
            primary = listener.matchers[0]
            assert id(primary) in made, (
                f"listener {getattr(listener.ack_function, '__qualname__', listener)} was registered "
                "through a bolt method this test does not know; add its builtin matcher to LISTENER_KINDS"
            )
            registrations.append(made[id(primary)][1])
        return registrations
    finally:
        service.close()


@pytest.fixture(scope="module")
def listeners(tmp_path_factory: pytest.TempPathFactory) -> list[Registration]:
    found = registered_listeners(tmp_path_factory.mktemp("manifest"))
    assert found, "create_app registered no listener at all"
    return found


def _matches(constraint: Any, name: str) -> bool:
    if isinstance(constraint, re.Pattern):
        return constraint.search(name) is not None
    return constraint == name


def listened_event_types(listeners: list[Registration]) -> list[Any]:
    """The event ``type`` each event listener matches (a string or a pattern)."""
    types = []
    for reg in listeners:
        if reg.kind in EVENT_KINDS:
            types.append(reg.constraint["type"] if isinstance(reg.constraint, dict) else reg.constraint)
    return types


def subscription_type(bot_event: str) -> str:
    """The event ``type`` a subscription delivers: ``message.im`` delivers ``message`` events."""
    return "message" if bot_event.startswith("message.") else bot_event


# ====================================================================================== the tests


def test_manifest_validates_against_the_slack_app_manifest_schema(manifest: dict[str, Any]) -> None:
    if not SCHEMA.exists():
        pytest.skip(f"the shared schema is not here: {SCHEMA}")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # The schema is strict and dated (see shared/slack/SOURCE.md); the manifest validates against it
    # unchanged so far, so no project copy with relaxations is needed.
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(manifest)]
    assert problems == []


def test_schema_check_catches_a_broken_manifest(manifest: dict[str, Any]) -> None:
    # The validation above can fail: an unknown key and a bad command name are rejected.
    if not SCHEMA.exists():
        pytest.skip(f"the shared schema is not here: {SCHEMA}")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    broken = json.loads(json.dumps(manifest))
    broken["features"]["slash_commands"][0]["command"] = "label"
    broken["settings"]["socket_mode"] = True
    assert len(list(validator.iter_errors(broken))) == 2


def test_display_information_bot_user_and_socket_mode(manifest: dict[str, Any]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    assert manifest["display_information"]["name"] == project
    assert manifest["display_information"]["description"].strip()
    assert manifest["features"]["bot_user"]["display_name"] == project
    # Socket Mode: `labelbot serve` connects out with SLACK_APP_TOKEN, no public URL needed.
    assert manifest["settings"]["socket_mode_enabled"] is True


def test_every_registered_slash_command_is_declared_and_vice_versa(
    manifest: dict[str, Any], listeners: list[Registration]
) -> None:
    registered = [reg.constraint for reg in listeners if reg.kind == "command"]
    declared = declared_commands(manifest)
    assert command_listeners.COMMAND in registered
    for constraint in registered:
        assert any(_matches(constraint, name) for name in declared), f"{constraint!r} is not in the manifest"
    for name in declared:
        assert any(_matches(c, name) for c in registered), f"manifest declares {name}; nothing handles it"


def test_usage_hint_lists_every_user_subcommand(manifest: dict[str, Any]) -> None:
    # The hint is what Slack shows while typing `/label`: it names each subcommand everyone may use
    # (admin ones are left to `/label help`).
    hint = declared_commands(manifest)[command_listeners.COMMAND].get("usage_hint", "")
    missing = [
        name for name in command_listeners.SUBCOMMANDS if not re.search(rf"\b{re.escape(name)}\b", hint)
    ]
    assert missing == [], f"add {missing} to the usage_hint of {command_listeners.COMMAND} in manifest.yml"


def test_every_event_listened_to_is_subscribed_and_vice_versa(
    manifest: dict[str, Any], listeners: list[Registration]
) -> None:
    subscribed = bot_events(manifest)
    delivered = {subscription_type(e) for e in subscribed}
    listened = listened_event_types(listeners)
    assert "app_home_opened" in listened
    for event_type in listened:
        assert any(_matches(event_type, d) for d in delivered), (
            f"the App listens to {event_type!r} events; subscribe to them in settings.event_subscriptions"
            + (" (message.im, message.channels, ...)" if event_type == "message" else "")
        )
    for event in subscribed:
        assert any(_matches(t, subscription_type(event)) for t in listened), (
            f"manifest subscribes to {event} but no listener handles it"
        )


def test_home_and_messages_tabs_match_the_code(
    manifest: dict[str, Any], listeners: list[Registration], called_methods: dict[str, list[str]]
) -> None:
    app_home = manifest["features"]["app_home"]
    # The Home tab shows the dashboard that app_home_opened publishes, and only that event fills it.
    assert "views.publish" in called_methods
    assert app_home["home_tab_enabled"] is True
    assert "app_home_opened" in bot_events(manifest)
    # Cards arrive in the DM with the bot: the Messages tab must be on to see them.
    assert "conversations.open" in called_methods
    assert app_home["messages_tab_enabled"] is True


def test_interactivity_is_enabled_exactly_when_there_are_interactive_listeners(
    manifest: dict[str, Any], listeners: list[Registration]
) -> None:
    interactive = [reg for reg in listeners if reg.kind in INTERACTIVE_KINDS]
    assert any(reg.kind == "action" for reg in interactive) and any(reg.kind == "view" for reg in interactive)
    assert manifest["settings"]["interactivity"]["is_enabled"] is bool(interactive)


def test_every_shortcut_listener_is_declared(manifest: dict[str, Any], listeners: list[Registration]) -> None:
    declared = {s["callback_id"] for s in manifest.get("features", {}).get("shortcuts") or []}
    for reg in listeners:
        if reg.kind in ("shortcut", "global_shortcut", "message_shortcut"):
            constraint = reg.constraint
            callback = constraint.get("callback_id") if isinstance(constraint, dict) else constraint
            assert any(_matches(callback, d) for d in declared), f"shortcut {callback!r} is not declared"


def test_the_scan_maps_webclient_calls_to_api_methods(client_methods: dict[str, frozenset[str]]) -> None:
    # The mapping comes from slack_sdk's source; check it on calls whose API names we know.
    source = (
        "client.chat_postMessage(channel='C', text='x')\n"
        "call.client.files_upload_v2(channel='C', file='f.csv')\n"
        "self._client.users_info(user='U1')\n"
        "app.client.api_call('team.info')\n"
        "say('hi')\n"
        "service.export('demo', 'x.csv')\n"  # not a WebClient method: ignored
    )
    found = scan_source(source, client_methods)
    assert set(found) == {
        "chat.postMessage", "files.getUploadURLExternal", "files.completeUploadExternal", "users.info",
        "team.info",
    }
    assert found["chat.postMessage"] == ["<source>:1", "<source>:5"]


def test_scope_check_flags_a_missing_and_an_unused_scope() -> None:
    needs, unknown = requirements(
        {"chat.postMessage": [], "reactions.add": [], "views.open": []}, {"app_home_opened"},
        has_commands=True,
    )
    assert unknown == []
    declared = {"chat:write", "commands", "users:read"}
    assert missing_scopes(needs, declared) == {"method reactions.add": ("reactions:write",)}
    assert unused_scopes(needs, declared) == {"users:read"}
    _, unknown = requirements({"admin.users.invite": []}, {"pin_added"}, has_commands=False)
    assert unknown == ["Web API method admin.users.invite", "event pin_added"]


def test_bot_scopes_cover_every_web_api_method_the_code_calls(
    manifest: dict[str, Any], called_methods: dict[str, list[str]]
) -> None:
    # Sanity: the scan sees the calls the cards and exports are made of.
    assert {"chat.postMessage", "chat.update", "conversations.open", "views.open"} <= set(called_methods)
    needs, unknown = requirements(called_methods, bot_events(manifest),
                                  has_commands=bool(declared_commands(manifest)))
    assert unknown == [], f"add these to METHOD_SCOPES / EVENT_SCOPES in {Path(__file__).name}: {unknown}"
    missing = missing_scopes(needs, bot_scopes(manifest))
    where = {what: called_methods.get(what.removeprefix("method "), []) for what in missing}
    assert missing == {}, f"manifest.yml lacks scopes for {missing}; called at {where}"


def test_bot_scopes_are_minimal(manifest: dict[str, Any], called_methods: dict[str, list[str]]) -> None:
    needs, _ = requirements(
        called_methods, bot_events(manifest), has_commands=bool(declared_commands(manifest))
    )
    unused = unused_scopes(needs, bot_scopes(manifest))
    assert unused == set(), (
        f"manifest.yml declares {sorted(unused)} but no call or event in bot/ needs it; "
        f"methods called: {sorted(called_methods)}"
    )


# -------------------------------------------------------- cross-check with what the bot really calls


def _button(message: dict, action_id: str) -> dict:
    from bot.standin.signing import action_from_blocks

    return action_from_blocks(message, action_id)


def _exercise_the_bot(tmp_path: Path) -> Iterator[str]:
    """Drive every listener once through the real App; yield the Web API methods the stand-in answered."""
    from bot import ids
    from tests.slack_harness import ADMIN, ALICE, start_harness

    texts = [f"free prize number {i}" if i % 2 else f"lunch tomorrow at {i}" for i in range(12)]
    h = start_harness(tmp_path, texts=texts)
    try:
        # Status first: its extras (charts, advice) finish in the background while the rest runs.
        h.command("status")
        h.command("leaderboard")
        h.command("next 2")
        first, second = h.wait_for_cards(ALICE, 2)[:2]
        h.click_label(ALICE, first, "spam")
        h.standin.wait_for("chat.update")
        h.click(ALICE, h.standin.message(h.dm(ALICE), first["ts"]), ids.ACTION_UNDO)
        h.standin.wait_for("chat.update", count=2)
        h.click(ALICE, second, ids.ACTION_SKIP)
        h.standin.wait_for("chat.update", count=3)
        h.click(ALICE, second, ids.ACTION_SHOW_SIMILAR)
        [opened] = h.standin.wait_for("views.open")
        view = opened.response["view"]
        inputs = {(b.get("element") or {}).get("type"): b for b in view["blocks"]}
        checkbox_block, label_block = inputs["checkboxes"], inputs["static_select"]
        label_options = label_block["element"].get("options") or [
            o for g in label_block["element"]["option_groups"] for o in g["options"]
        ]
        state = {
            checkbox_block["block_id"]: {checkbox_block["element"]["action_id"]: {
                "type": "checkboxes", "selected_options": checkbox_block["element"]["options"][:1]}},
            label_block["block_id"]: {label_block["element"]["action_id"]: {
                "type": "static_select", "selected_option": label_options[0]}},
        }
        h.sender.view_submission(ALICE, view, state)
        h.standin.wait_until(lambda: any("Labeled" in m.get("text", "") for m in h.dm_messages(ALICE)))
        h.command("search free prize")
        h.standin.wait_for("views.open", count=2)
        for sub, user in (("help", ALICE), ("retrain", ADMIN), ("project demo", ADMIN), ("export", ADMIN)):
            h.command(sub, user=user)
        h.standin.wait_for("files.completeUploadExternal")
        h.standin.wait_for("response_url", count=6)
        h.sender.app_home_opened(ALICE)
        [published] = h.standin.wait_for("views.publish")
        before = len(h.standin.calls_to("chat.postMessage"))
        h.sender.block_actions(ALICE, [_button(published.response["view"], ids.ACTION_START_LABELING)],
                               view=published.response["view"])
        h.standin.wait_for("chat.postMessage", count=before + 1)
        h.service.wait_for_retrains(timeout=30)
        assert h.standin.errors() == [], [(c.method, c.response) for c in h.standin.errors()]
        yield from sorted({c.method for c in h.standin.calls if "." in c.method})  # no upload/response_url
    finally:
        h.close()


def test_the_running_bot_calls_only_methods_the_scan_found_and_the_scopes_cover(
    tmp_path: Path, manifest: dict[str, Any], called_methods: dict[str, list[str]]
) -> None:
    seen = set(_exercise_the_bot(tmp_path))
    assert {"chat.postMessage", "chat.update", "views.open", "views.publish"} <= seen
    assert "files.completeUploadExternal" in seen
    assert seen - set(called_methods) - BOLT_METHODS == set(), "the static scan missed calls the bot made"
    needs, unknown = requirements(dict.fromkeys(seen), set(), has_commands=False)
    assert unknown == []
    assert missing_scopes(needs, bot_scopes(manifest)) == {}
