"""Listener unit tests in the bolt samples' style: each handler called directly with a mock ``Ack``, a
``Mock(WebClient)``, a ``BoltContext`` and a payload dict.

``ack`` and ``respond`` are autospecced on ``Ack().__call__`` and ``Respond(...).__call__`` rather than the
samples' ``Mock(Ack)``: a ``Mock`` specced on the class checks calls against the constructor, so
``ack(response_action=...)`` would fail; these check them against what bolt's objects accept.

The service is real (SQLite in tmp_path, the deterministic hashing embedder) wrapped in ``Labeling`` the
way ``create_app`` injects it; a ``Mock(LabelingService)`` where the point is that nothing is called.
These complement the end-to-end tests in tests/test_bot.py, tests/test_crowd_bot.py and
tests/test_scheduler.py (real App, signed HTTP, the Slack stand-in).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest.mock import Mock, create_autospec

import pytest
from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from sqlalchemy import select

from bot import blocks, ids
from bot import scheduler as sched
from bot.labeling import Labeling
from bot.listeners import actions, commands, events, review, views
from bot.scheduler import LabelScheduler, SchedulerSettings
from bot.standin import action_from_blocks
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.models import Annotation, Skip
from core.service import LabelingService
from core.store import read_session
from core.types import LabelDef, RecordView
from tests.conftest import make_settings
from tests.test_bot import TEXTS as SPAM_HAM_TEXTS

ADMIN, ALICE, BOB = "UADMIN", "UALICE", "UBOB"
CHANNEL = "CGENERAL"
DM = {ADMIN: "DADMIN", ALICE: "DALICE", BOB: "DBOB"}
TEXTS = SPAM_HAM_TEXTS


# ------------------------------------------------------------------------------------------ fixtures


def make_service(tmp_path: Path, **settings: object) -> LabelingService:
    service = LabelingService(make_settings(tmp_path, **settings), embedder=HashingEmbedder(64))
    service.create_project("demo", ["spam", "ham"])
    service.import_rows(
        "demo", [ImportRow(line=i + 2, external_id=str(i), text=t) for i, t in enumerate(TEXTS)]
    )
    return service


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LabelingService]:
    service = make_service(tmp_path)
    yield service
    service.close()


@pytest.fixture
def client() -> Mock:
    client = Mock(WebClient)
    client.conversations_open.side_effect = lambda users: {"ok": True, "channel": {"id": DM[users]}}
    client.users_info.return_value = {"ok": True, "user": {"id": ALICE, "tz": "Europe/Berlin"}}
    return client


class InlineExecutor(Executor):
    """Runs the work a listener leaves for after its ack at once, so a test sees it when the call returns."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def make_labeling(service: Any, client: Any = None) -> Labeling:
    """``Labeling`` as create_app builds it, with its after-ack pool run inline; ``client`` delivers the
    outbox (bot.deliveries), as create_app's delivery client does."""
    return Labeling(service, admins=frozenset({ADMIN}), executor=InlineExecutor(), client=client)


@pytest.fixture
def context(svc: LabelingService, client: Mock) -> BoltContext:
    """What create_app's middleware puts into bolt's context (no scheduler: see the schedule tests)."""
    return BoltContext({"labeling": make_labeling(svc, client)})


def slash(
    context: BoltContext, client: Mock, text: str, *, user: str = ALICE, channel: str = CHANNEL
) -> Mock:
    """``/label <text>`` through the listener; returns the ``respond`` mock after checking the ack."""
    ack, respond = fake_ack(), create_autospec(Respond(response_url=None).__call__)
    command = {"command": "/label", "text": text, "user_id": user, "channel_id": channel, "trigger_id": "T1"}
    commands.handle_label(ack=ack, command=command, client=client, respond=respond, context=context)
    ack.assert_called_once_with()  # at once, with no body: the answer goes through respond
    return respond


def fake_ack() -> Mock:
    return create_autospec(Ack().__call__)


def text_of(mock: Mock, index: int = -1) -> str:
    """The ``text`` (the notification fallback) of a call to ``respond`` or a client method."""
    return mock.call_args_list[index].kwargs["text"]


def texts_of(obj: Any) -> str:
    """Every text string in a message or view (what a person would read)."""
    if isinstance(obj, dict):
        return " ".join(texts_of(v) for k, v in obj.items() if k not in ("action_id", "block_id", "value"))
    if isinstance(obj, list | tuple):
        return " ".join(texts_of(v) for v in obj)
    return obj if isinstance(obj, str) else ""


def said(mock: Mock, index: int = -1) -> str:
    return texts_of(mock.call_args_list[index].kwargs)


def answer(service: LabelingService, *answers: tuple[str, str]) -> list[int]:
    """Each (user, label) answers that user's next card; returns the record ids."""
    done = []
    for user, label in answers:
        record = service.next_records("demo", user, 1)[0]
        service.record_answer("demo", record.record_id, user, label)
        done.append(record.record_id)
    return done


# ------------------------------------------------------------------------------------------ /label


def test_help_lists_what_the_caller_may_use(context: BoltContext, client: Mock) -> None:
    respond = slash(context, client, "help")
    respond.assert_called_once()
    assert respond.call_args.kwargs["response_type"] == "ephemeral"
    shown = said(respond)
    assert "/label next" in shown and "/label subscribe" in shown and "/label review" not in shown
    assert "/label review" in said(slash(context, client, "help", user=ADMIN))
    assert said(slash(context, client, "frobnicate")) == shown  # unknown subcommands get the same help
    assert client.method_calls == []


def test_status_shows_progress_then_trend_and_uploads_the_chart(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    answer(svc, (ALICE, "spam"), (ALICE, "ham"), (BOB, "spam"))
    respond = slash(context, client, "status")
    assert respond.call_count == 2
    first, second = (c.kwargs for c in respond.call_args_list)
    assert first["response_type"] == second["response_type"] == "ephemeral"
    status = texts_of(first)
    assert "*Progress:* 3 of 8 records labeled (37.5%) · 5 still need answers · 3 answers in all" in status
    assert "• spam — 2" in status and "• ham — 1" in status
    assert f"1. <@{ALICE}> — 2 answers" in status and f"2. <@{BOB}> — 1 answer" in status
    assert "Trend and advice: demo" in texts_of(second)
    client.files_upload_v2.assert_called_once()
    upload = client.files_upload_v2.call_args.kwargs
    assert upload["channel"] == CHANNEL and upload["filename"].endswith(".png")
    assert upload["file"][:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_ranks_by_answers(svc: LabelingService, context: BoltContext, client: Mock) -> None:
    answer(svc, (BOB, "spam"), (ALICE, "ham"), (BOB, "ham"))
    respond = slash(context, client, "leaderboard")
    respond.assert_called_once()
    assert respond.call_args.kwargs["response_type"] == "ephemeral"
    board = said(respond)
    first, second = f"1. <@{BOB}> — 2 answers", f"2. <@{ALICE}> — 1 answer"
    assert first in board and second in board and board.index(first) < board.index(second)
    assert client.method_calls == []


def test_next_dms_cards_and_says_how_many(svc: LabelingService, context: BoltContext, client: Mock) -> None:
    respond = slash(context, client, "next 2")
    client.conversations_open.assert_called_once_with(users=ALICE)
    assert client.chat_postMessage.call_count == 2
    posted = [c.kwargs for c in client.chat_postMessage.call_args_list]
    assert {p["channel"] for p in posted} == {DM[ALICE]}
    shown = [next(t for t in TEXTS if t in texts_of(p["blocks"])) for p in posted]
    assert len(set(shown)) == 2
    assert all(blocks.message_problems(p) == [] for p in posted)
    assert text_of(respond) == "Sent you 2 cards from demo in a direct message."
    assert respond.call_args.kwargs["response_type"] == "ephemeral"


def test_next_when_nothing_is_left_and_with_a_bad_count(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    assert "takes a number of cards" in said(slash(context, client, "next lots"))
    assert "between 1 and 20" in said(slash(context, client, "next 21"))
    answer(svc, *[(BOB, "spam")] * len(TEXTS))
    assert (
        text_of(slash(context, client, "next"))
        == "Nothing left to label in demo for you right now. Thank you!"
    )
    client.chat_postMessage.assert_not_called()


def test_project_binds_the_channel(svc: LabelingService, context: BoltContext, client: Mock) -> None:
    svc.create_project("other", ["a", "b"])
    assert "several projects (demo, other)" in said(slash(context, client, "next"))
    assert "projects: demo, other" in said(slash(context, client, "project", user=ADMIN))
    respond = slash(context, client, "project other", user=ADMIN)
    assert respond.call_args.kwargs["response_type"] == "in_channel"
    assert text_of(respond) == "This channel now labels other. Try `/label next`."
    assert svc.default_project(CHANNEL) == "other"
    assert svc.default_project("COTHER") is None  # only this channel
    assert "No project named 'nope'" in said(slash(context, client, "project nope", user=ADMIN))
    assert svc.default_project(CHANNEL) == "other"


@pytest.mark.parametrize(
    "text", ["retrain", "export", "project demo", "review 3", "schedule list", "digest now"]
)
def test_admin_commands_are_refused_to_others_before_anything_is_touched(text: str, client: Mock) -> None:
    service = Mock(LabelingService)
    context = BoltContext({"labeling": make_labeling(service), "scheduler": Mock(LabelScheduler)})
    assert text.split()[0] in commands.ADMIN_SUBCOMMANDS
    respond = slash(context, client, text, user=BOB)
    respond.assert_called_once()
    assert respond.call_args.kwargs["response_type"] == "ephemeral"
    assert f"Sorry, `/label {text.split()[0]}` is for labelbot admins" in said(respond)
    assert (
        service.method_calls == [] and client.method_calls == [] and context["scheduler"].method_calls == []
    )


# ------------------------------------------------------------------------------------------ card clicks

CARD_TS = "1700000000.000200"


def click_body(user: str = ALICE) -> dict:
    """The ``block_actions`` body of a click on the card at ``CARD_TS`` in ``user``'s DM."""
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "T1",
        "container": {"type": "message", "channel_id": DM[user], "message_ts": CARD_TS},
    }


def buttons_of(message: dict) -> dict[str, str]:
    """Text → value of every button in a message's actions blocks."""
    return {
        e["text"]["text"]: e["value"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button"
    }


def button(message: dict, text: str) -> dict:
    """The ``actions[0]`` Slack sends when the button labeled ``text`` is clicked."""
    element = next(
        e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button" and e["text"]["text"] == text
    )
    return action_from_blocks(message, element["action_id"], value=element["value"])


def click(
    listener: Callable[..., None],
    context: BoltContext,
    client: Mock,
    action: dict,
    *,
    user: str = ALICE,
    ack: Mock | None = None,
) -> Mock:
    """A click through a storing listener (called as bolt calls it); returns the ack mock."""
    ack = ack or fake_ack()
    listener(ack=ack, body=click_body(user), action=action, client=client, context=context)
    return ack


def watching_ack(client: Mock, look: Callable[[], object]) -> tuple[Mock, list[tuple[object, list]]]:
    """An ack that records, each time it is called, what ``look()`` returns and the client calls so far."""
    seen: list[tuple[object, list]] = []
    ack = fake_ack()
    ack.side_effect = lambda *args, **kwargs: seen.append((look(), list(client.method_calls)))
    return ack, seen


def stored(service: LabelingService) -> set[tuple]:
    """Every answer in the database: (record id, annotator, label, source)."""
    with read_session(service.engine) as session:
        return {
            tuple(row)
            for row in session.execute(
                select(Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source)
            )
        }


def skipped(service: LabelingService) -> set[tuple]:
    """Every skip in the database: (record id, annotator)."""
    with read_session(service.engine) as session:
        return {tuple(row) for row in session.execute(select(Skip.record_id, Skip.annotator))}


def card_for(service: LabelingService, user: str = ALICE, project: str = "demo") -> tuple[RecordView, dict]:
    """``user``'s next record and the label card the bot would DM them for it."""
    [record] = service.next_records(project, user, 1)
    return record, blocks.label_card(service.get_project(project), record, nonce="n1")


def demo_ref(service: LabelingService) -> dict:
    """The demo project as values name it (``project_id``, ``project_name`` keywords of ``ids.encode_*``)."""
    project = service.get_project("demo")
    return {"project_id": project.id, "project_name": project.name}


def card_update(client: Mock) -> dict:
    """The one ``chat.update`` call, checked to be on the clicked card."""
    client.chat_update.assert_called_once()
    update = client.chat_update.call_args.kwargs
    assert (update["channel"], update["ts"]) == (DM[ALICE], CARD_TS)
    assert blocks.message_problems(update) == []
    return update


def next_card(client: Mock, service: LabelingService, index: int = -1) -> RecordView:
    """The record of a label card the bot DMed to alice, checked against what its buttons carry."""
    posted = client.chat_postMessage.call_args_list[index].kwargs
    assert posted["channel"] == DM[ALICE]
    assert blocks.message_problems(posted) == []
    values = buttons_of(posted)
    assert set(values) == {"spam", "ham", "Skip", "Show similar"}
    record = service.get_record("demo", ids.parse_label_value(values["spam"]).record_id)
    assert record.text in texts_of(posted["blocks"])
    return record


def test_a_label_click_is_stored_before_the_ack_then_answers_the_card_and_sends_the_next(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record, card = card_for(svc)
    ack, seen = watching_ack(client, lambda: stored(svc))
    click(actions.on_label, context, client, button(card, "spam"), ack=ack)
    ack.assert_called_once_with()
    # When Slack got its 200 the answer was committed, and nothing had been sent to Slack yet.
    assert seen == [({(record.record_id, ALICE, "spam", "slack")}, [])]
    update = card_update(client)
    shown = texts_of(update)
    assert record.text in shown
    assert f"Labeled *spam* by <@{ALICE}> · this record is complete" in shown
    assert buttons_of(update) == {
        "Undo": ids.encode_record_value(record_id=record.record_id, **demo_ref(svc))
    }
    client.conversations_open.assert_called_once_with(users=ALICE)
    client.chat_postMessage.assert_called_once()
    following = next_card(client, svc)
    assert following.record_id != record.record_id and following.text in TEXTS


def test_a_pick_from_the_label_menu_is_stored(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    names = [f"topic{i}" for i in range(blocks.BUTTON_LIMIT + 2)]
    svc.create_project("many", names)
    svc.import_rows("many", [ImportRow(line=2, external_id="a", text="alpha beta gamma")])
    record, card = card_for(svc, project="many")
    [menu] = [
        e
        for b in card["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "static_select"
    ]
    assert menu["action_id"] == ids.ACTION_LABEL_SELECT
    value = next(o["value"] for o in menu["options"] if o["text"]["text"] == "topic5")
    ack, seen = watching_ack(client, lambda: stored(svc))
    click(
        actions.on_label,
        context,
        client,
        action_from_blocks(card, menu["action_id"], selected_value=value),
        ack=ack,
    )
    assert seen == [({(record.record_id, ALICE, "topic5", "slack")}, [])]
    update = card_update(client)
    assert "alpha beta gamma" in texts_of(update) and f"Labeled *topic5* by <@{ALICE}>" in texts_of(update)
    assert "Nothing left to label in many" in said(client.chat_postMessage)


def test_the_same_click_twice_stores_one_answer_and_a_different_label_changes_it(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record, card = card_for(svc)
    spam, ham = button(card, "spam"), button(card, "ham")
    click(actions.on_label, context, client, spam)
    ack, seen = watching_ack(client, lambda: stored(svc))
    click(actions.on_label, context, client, spam, ack=ack)
    ack.assert_called_once_with()
    assert seen[0][0] == stored(svc) == {(record.record_id, ALICE, "spam", "slack")}
    assert svc.status("demo").annotations == 1
    assert client.chat_update.call_count == 2  # the card is re-rendered, still answered
    assert f"Labeled *spam* by <@{ALICE}>" in said(client.chat_update)
    client.chat_postMessage.assert_called_once()  # no second next card
    ack, seen = watching_ack(client, lambda: stored(svc))
    click(actions.on_label, context, client, ham, ack=ack)
    assert seen[0][0] == stored(svc) == {(record.record_id, ALICE, "ham", "slack")}
    assert client.chat_update.call_count == 3
    assert f"Labeled *ham* by <@{ALICE}>" in said(client.chat_update)
    assert svc.status("demo").label_counts == {"spam": 0, "ham": 1}


def _deleted_project(svc: LabelingService, record: RecordView, card: dict) -> dict:
    svc.delete_project("demo")
    return button(card, "spam")


def _other_project_name(svc: LabelingService, record: RecordView, card: dict) -> dict:
    value = ids.encode_label_value(demo_ref(svc)["project_id"], "gone", record.record_id, 0, "spam")
    return {**button(card, "spam"), "value": value}


def _labels_reordered(svc: LabelingService, record: RecordView, card: dict) -> dict:
    old = replace(svc.get_project("demo"), labels=(LabelDef("ham"), LabelDef("spam")))
    return button(blocks.label_card(old, record, nonce="n0"), "ham")


def _label_removed(svc: LabelingService, record: RecordView, card: dict) -> dict:
    project = svc.get_project("demo")
    old = replace(project, labels=(*project.labels, LabelDef("maybe")))
    return button(blocks.label_card(old, record, nonce="n0"), "maybe")


def _forged(svc: LabelingService, record: RecordView, card: dict) -> dict:
    return {**button(card, "spam"), "value": "l1:1:deadbeef:1:0"}


def _unknown_record(svc: LabelingService, record: RecordView, card: dict) -> dict:
    return {
        **button(card, "spam"),
        "value": ids.encode_label_value(**demo_ref(svc), record_id=999_999, label_index=0, label="spam"),
    }


def _complete_record(svc: LabelingService, record: RecordView, card: dict) -> dict:
    svc.record_answer("demo", record.record_id, BOB, "ham")  # one answer per record: bob's completes it
    return button(card, "spam")


@pytest.mark.parametrize(
    ("make_click", "reason"),
    [
        (_deleted_project, "This project no longer exists."),
        (_other_project_name, "This project no longer exists."),
        (_labels_reordered, "The label set changed since this card was sent."),
        (_label_removed, "The label set changed since this card was sent."),
        (_forged, "This card is out of date."),
        (_unknown_record, "Record 999999 is not in project 'demo' (was it deleted?)."),
        (_complete_record, "already has all the answers it needs."),
    ],
    ids=[
        "deleted project",
        "other project",
        "labels reordered",
        "label removed",
        "forged",
        "no such record",
        "record complete",
    ],
)
def test_a_stale_label_click_is_acked_stores_nothing_and_says_why(
    make_click: Callable[[LabelingService, RecordView, dict], dict],
    reason: str,
    svc: LabelingService,
    context: BoltContext,
    client: Mock,
) -> None:
    record, card = card_for(svc)
    action = make_click(svc, record, card)
    before = stored(svc)
    ack, seen = watching_ack(client, lambda: stored(svc))
    click(actions.on_label, context, client, action, ack=ack)
    ack.assert_called_once_with()
    assert seen == [(before, [])]
    assert stored(svc) == before and (record.record_id, ALICE) not in {a[:2] for a in before}
    update = card_update(client)
    assert reason in texts_of(update)
    assert buttons_of(update) == {}  # a stale card takes no more clicks
    client.chat_postMessage.assert_not_called()


def test_skip_is_stored_before_the_ack_then_marks_the_card_and_sends_the_next(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record, card = card_for(svc)
    ack, seen = watching_ack(client, lambda: skipped(svc))
    click(actions.on_skip, context, client, button(card, "Skip"), ack=ack)
    ack.assert_called_once_with()
    assert seen == [({(record.record_id, ALICE)}, [])]
    update = card_update(client)
    assert "Skipped: you won't be asked about this record again." in texts_of(update)
    assert record.text in texts_of(update) and buttons_of(update) == {}
    client.chat_postMessage.assert_called_once()
    assert next_card(client, svc).record_id != record.record_id
    assert stored(svc) == set()


def test_undo_removes_the_answer_before_the_ack_and_restores_the_card_once(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record, card = card_for(svc)
    click(actions.on_label, context, client, button(card, "spam"))
    undo = button(client.chat_update.call_args.kwargs, "Undo")
    client.reset_mock()
    ack, seen = watching_ack(client, lambda: stored(svc))
    click(actions.on_undo, context, client, undo, ack=ack)
    ack.assert_called_once_with()
    assert seen == [(set(), [])]
    update = card_update(client)
    assert record.text in texts_of(update) and "Labeled" not in texts_of(update)
    values = buttons_of(update)
    assert set(values) == {"spam", "ham", "Skip", "Show similar"}
    assert ids.parse_label_value(values["spam"]).record_id == record.record_id
    client.chat_postMessage.assert_not_called()
    # A second click on the same Undo: acked, and alice's other answer is left alone.
    [other] = answer(svc, (ALICE, "ham"))
    client.reset_mock()
    ack = click(actions.on_undo, context, client, undo)
    ack.assert_called_once_with()
    assert stored(svc) == {(other, ALICE, "ham", "slack")}
    assert client.method_calls == []


@pytest.mark.parametrize("control", ["Skip", "Undo"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [("deleted", "This project no longer exists."), ("r1:1:deadbeef:x", "This card is out of date.")],
    ids=["deleted project", "forged"],
)
def test_a_stale_skip_or_undo_is_acked_and_says_why(
    control: str, value: str, reason: str, svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record, card = card_for(svc)
    svc.record_answer("demo", record.record_id, ALICE, "spam")
    project = svc.get_project("demo")
    if control == "Undo":
        card = blocks.answered_card(project, record, label="spam", user_id=ALICE, nonce="n2", complete=True)
    action = button(card, control)
    if value == "deleted":
        svc.delete_project("demo")
    else:
        action["value"] = value
    before = (stored(svc), skipped(svc))
    listener = actions.on_skip if control == "Skip" else actions.on_undo
    ack, seen = watching_ack(client, lambda: (stored(svc), skipped(svc)))
    click(listener, context, client, action, ack=ack)
    ack.assert_called_once_with()
    assert seen == [(before, [])]
    assert (stored(svc), skipped(svc)) == before
    assert reason in texts_of(card_update(client))
    client.chat_postMessage.assert_not_called()


@pytest.mark.parametrize("listener", ["on_label", "on_skip", "on_undo"])
def test_a_failed_write_is_not_acked(
    listener: str, svc: LabelingService, context: BoltContext, client: Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database write raises something unexpected: no ack, so Slack shows an error instead of the bot
    having acked an answer it did not store."""
    record, card = card_for(svc)
    if listener == "on_undo":
        svc.record_answer("demo", record.record_id, ALICE, "spam")
        card = blocks.answered_card(
            svc.get_project("demo"), record, label="spam", user_id=ALICE, nonce="n2", complete=True
        )
    method, control = {
        "on_label": ("record_answer", "ham"),
        "on_skip": ("skip", "Skip"),
        "on_undo": ("undo", "Undo"),
    }[listener]
    failing = Mock(side_effect=RuntimeError("disk I/O error"))
    monkeypatch.setattr(svc, method, failing)
    before = (stored(svc), skipped(svc))
    ack = fake_ack()
    with pytest.raises(RuntimeError, match="disk I/O error"):
        click(getattr(actions, listener), context, client, button(card, control), ack=ack)
    failing.assert_called_once()
    assert ack.call_count == 0
    assert client.method_calls == []
    assert (stored(svc), skipped(svc)) == before


# ------------------------------------------------------------------------------------------ ack-first clicks


def registered_actions() -> dict[object, Callable[..., None]]:
    """What ``actions.register`` hands bolt: action id (or pattern) → listener."""
    app = Mock(App)
    actions.register(app)
    keys = [c.args[0] for c in app.action.call_args_list]
    listeners = [c.args[0] for c in app.action.return_value.call_args_list]
    assert len(keys) == len(listeners)
    return dict(zip(keys, listeners, strict=True))


def test_storing_clicks_are_registered_bare_and_the_rest_ack_first() -> None:
    listeners = registered_actions()
    assert listeners[ids.LABEL_CHOICE_RE] is actions.on_label
    assert listeners[ids.ACTION_LABEL_SELECT] is actions.on_label
    assert listeners[ids.ACTION_SKIP] is actions.on_skip
    assert listeners[ids.ACTION_UNDO] is actions.on_undo
    for action_id, bare in (
        (ids.ACTION_SHOW_SIMILAR, actions.on_show_similar),
        (ids.ACTION_START_LABELING, actions.on_start_labeling),
        (ids.ACTION_LABEL_N_NOW, actions.on_label_n_now),
    ):
        wrapped = listeners[action_id]
        assert wrapped is not bare and wrapped.__name__ == bare.__name__
        assert "ack" in inspect.signature(wrapped).parameters  # bolt passes ack to the wrapper


def ack_first_click(action_id: str, context: BoltContext, client: Mock, action: dict) -> tuple[Mock, list]:
    """A click through the listener ``register`` wraps with ack_first, with every argument bolt passes."""
    ack, seen = watching_ack(client, lambda: None)
    registered_actions()[action_id](
        ack=ack,
        body=click_body(),
        client=client,
        context=context,
        action=action,
        command=None,
        event=None,
        view=None,
        respond=None,
        say=None,
    )
    ack.assert_called_once_with()
    return ack, seen


def test_show_similar_acks_first_then_opens_the_modal(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record, card = card_for(svc)
    _, seen = ack_first_click(ids.ACTION_SHOW_SIMILAR, context, client, button(card, "Show similar"))
    assert seen == [(None, [])]
    client.views_open.assert_called_once()
    opened = client.views_open.call_args.kwargs
    assert opened["trigger_id"] == "T1"
    view = opened["view"]
    assert view["callback_id"] == ids.CALLBACK_SIMILAR_MODAL and record.text in texts_of(view)
    meta = ids.parse_modal_metadata(view["private_metadata"])
    assert (meta.record_id, meta.channel, meta.message_ts) == (record.record_id, DM[ALICE], CARD_TS)
    client.chat_update.assert_not_called()


def test_show_similar_on_a_deleted_project_marks_the_card_stale(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    _, card = card_for(svc)
    svc.delete_project("demo")
    _, seen = ack_first_click(ids.ACTION_SHOW_SIMILAR, context, client, button(card, "Show similar"))
    assert seen == [(None, [])]
    assert "This project no longer exists." in texts_of(card_update(client))
    client.views_open.assert_not_called()


def test_start_labeling_acks_first_then_dms_a_card(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    home = blocks.home_view([(svc.get_project("demo"), svc.status("demo"))], ALICE)
    action = action_from_blocks(home, ids.ACTION_START_LABELING)
    _, seen = ack_first_click(ids.ACTION_START_LABELING, context, client, action)
    assert seen == [(None, [])]
    client.chat_postMessage.assert_called_once()
    assert next_card(client, svc).text in TEXTS
    svc.delete_project("demo")
    client.reset_mock()
    ack_first_click(ids.ACTION_START_LABELING, context, client, action)  # acked; a stale button does nothing
    assert client.method_calls == []


def test_label_n_now_acks_first_then_dms_that_many_cards(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    prompt = blocks.prompt_message(svc.get_project("demo"), waiting=8, accuracy=None, n=3, minutes=2)
    _, seen = ack_first_click(ids.ACTION_LABEL_N_NOW, context, client, button(prompt, "Label 3 now"))
    assert seen == [(None, [])]
    assert client.chat_postMessage.call_count == 3
    assert len({next_card(client, svc, i).record_id for i in range(3)}) == 3


def test_label_n_now_caps_a_forged_count(svc: LabelingService, client: Mock) -> None:
    service = Mock(LabelingService)
    service.get_project.return_value = svc.get_project("demo")
    service.request_cards.return_value = 7
    service.claim_deliveries.return_value = []
    context = BoltContext({"labeling": make_labeling(service, client)})
    value = ids.encode_label_n_value(**demo_ref(svc), n=5000)
    ack_first_click(
        ids.ACTION_LABEL_N_NOW, context, client, {"action_id": ids.ACTION_LABEL_N_NOW, "value": value}
    )
    service.request_cards.assert_called_once_with(
        demo_ref(svc)["project_id"], ALICE, actions.MAX_CARDS_PER_CLICK, notify_empty=True, reply_to=None
    )
    service.claim_deliveries.assert_called_once_with(ids=(7,), limit=1)


# ------------------------------------------------------------------------------------------ views


def submission(view: dict, record_ids: list[int], label: str | None) -> dict:
    """``view`` as Slack sends it back on submit, with ``record_ids`` ticked and ``label`` chosen."""
    values: dict[str, dict] = {}
    for block in view["blocks"]:
        element = block.get("element") or {}
        if element.get("type") == "checkboxes":
            chosen = [o for o in element["options"] if ids.parse_record_option(o["value"]) in record_ids]
            values[block["block_id"]] = {
                element["action_id"]: {"type": "checkboxes", "selected_options": chosen}
            }
        elif element.get("type") == "static_select":
            options = element.get("options") or [o for g in element["option_groups"] for o in g["options"]]
            picked = next((o for o in options if o["text"]["text"] == label), None)
            values[block["block_id"]] = {
                element["action_id"]: {"type": "static_select", "selected_option": picked}
            }
    return {**view, "id": "V1", "state": {"values": values}}


def search_view(svc: LabelingService, query: str = "free prize") -> tuple[dict, list[int]]:
    project = svc.get_project("demo")
    view = blocks.search_results_modal(project, query, svc.similar("demo", text=query, k=10))
    listed = [
        ids.parse_record_option(o["value"])
        for b in view["blocks"]
        if (b.get("element") or {}).get("type") == "checkboxes"
        for o in b["element"]["options"]
    ]
    return view, listed


def submit(
    context: BoltContext, client: Mock, view: dict, user: str = ALICE, ack: Mock | None = None
) -> Mock:
    ack = ack or fake_ack()
    views.on_bulk_label(
        ack=ack,
        body={"type": "view_submission", "user": {"id": user}, "view": view},
        view=view,
        client=client,
        context=context,
    )
    ack.assert_called_once()
    return ack


def test_bulk_label_without_a_label_acks_with_errors_and_writes_nothing(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    view, listed = search_view(svc)
    ack = submit(context, client, submission(view, listed[:2], None))
    ack.assert_called_once_with(response_action="errors", errors={ids.BLOCK_SIMILAR_LABEL: "Choose a label"})
    ack = submit(context, client, submission(view, [], "spam"))
    assert ack.call_args.kwargs["response_action"] == "errors"
    assert list(ack.call_args.kwargs["errors"]) == [ids.similar_records_block_id(0)]
    assert svc.status("demo").annotations == 0
    assert client.method_calls == []


def test_bulk_label_on_an_out_of_date_form_acks_with_errors(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    view, listed = search_view(svc)
    ack = submit(context, client, submission({**view, "private_metadata": "garbage"}, listed[:1], "spam"))
    assert ack.call_args.kwargs["response_action"] == "errors"
    assert "out of date" in ack.call_args.kwargs["errors"][ids.BLOCK_SIMILAR_LABEL]
    svc.delete_project("demo")
    ack = submit(context, client, submission(view, listed[:1], "spam"))
    assert ack.call_args.kwargs["response_action"] == "errors"
    assert client.method_calls == []


def test_bulk_label_stores_the_answers_and_dms_a_summary(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    view, listed = search_view(svc)
    ack = submit(context, client, submission(view, listed[:2], "spam"))
    ack.assert_called_once_with()
    ticked = {svc.get_record("demo", rid).external_id for rid in listed[:2]}
    assert svc.final_labels("demo") == dict.fromkeys(ticked, "spam")
    client.chat_postMessage.assert_called_once()
    assert client.chat_postMessage.call_args.kwargs["channel"] == DM[ALICE]
    assert text_of(client.chat_postMessage) == "Labeled 2 records in demo as spam."


def test_bulk_label_commits_before_the_ack(svc: LabelingService, context: BoltContext, client: Mock) -> None:
    view, listed = search_view(svc)
    ack, seen = watching_ack(client, lambda: stored(svc))
    submit(context, client, submission(view, listed[:2], "ham"), ack=ack)
    ack.assert_called_once_with()
    assert seen == [({(rid, ALICE, "ham", "slack") for rid in listed[:2]}, [])]  # stored; no DM yet
    client.chat_postMessage.assert_called_once()


def test_bulk_label_of_a_project_deleted_after_the_form_check_acks_with_the_reason(
    svc: LabelingService, context: BoltContext, client: Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    view, listed = search_view(svc)
    real_bulk_label = svc.bulk_label

    def deleted_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        svc.delete_project("demo")  # between the listener's project check and the write
        return real_bulk_label(*args, **kwargs)

    monkeypatch.setattr(svc, "bulk_label", deleted_meanwhile)
    ack = submit(context, client, submission(view, listed[:2], "spam"))
    ack.assert_called_once()
    assert ack.call_args.kwargs["response_action"] == "errors"
    assert ack.call_args.kwargs["errors"] == {ids.BLOCK_SIMILAR_LABEL: "This project no longer exists."}
    assert client.method_calls == []


def test_bulk_label_that_fails_to_write_is_not_acked(
    svc: LabelingService, context: BoltContext, client: Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    view, listed = search_view(svc)
    failing = Mock(side_effect=RuntimeError("disk I/O error"))
    monkeypatch.setattr(svc, "bulk_label", failing)
    ack = fake_ack()
    with pytest.raises(RuntimeError, match="disk I/O error"):
        submit(context, client, submission(view, listed[:2], "spam"), ack=ack)
    failing.assert_called_once()
    assert ack.call_count == 0 and client.method_calls == [] and stored(svc) == set()


# ------------------------------------------------------------------------------------------ review


@pytest.fixture
def crowd(tmp_path: Path) -> Iterator[LabelingService]:
    """Two answers per record; record "0" split between alice (spam) and bob (ham)."""
    service = make_service(tmp_path, answers_per_record=2)
    target = service.find_record("demo", "0").record_id
    service.record_answer("demo", target, ALICE, "spam")
    service.record_answer("demo", target, BOB, "ham")
    yield service
    service.close()


def review_click(
    crowd: LabelingService, client: Mock, user: str, label: str, ack: Mock | None = None
) -> Mock:
    [item] = crowd.review_queue("demo", 5)
    card = blocks.review_card(crowd.get_project("demo"), item, nonce="n1")
    button = next(
        e
        for b in card["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button" and e["text"]["text"] == label
    )
    ack = ack or fake_ack()
    body = {
        "type": "block_actions",
        "user": {"id": user},
        "container": {"type": "message", "channel_id": DM[user], "message_ts": "1700000000.000100"},
    }
    context = BoltContext({"labeling": make_labeling(crowd)})
    review.on_review_choice(
        ack=ack,
        body=body,
        action={"action_id": button["action_id"], "value": button["value"]},
        client=client,
        context=context,
    )
    ack.assert_called_once_with()
    return ack


def test_an_admins_review_pick_is_stored_as_gold_and_the_card_updated(
    crowd: LabelingService, client: Mock
) -> None:
    tied = crowd.final_labels("demo")["0"]  # a tie keeps the aggregate's pick until an admin decides
    other = "ham" if tied == "spam" else "spam"
    review_click(crowd, client, ADMIN, other)
    assert crowd.final_labels("demo") == {"0": other}
    client.chat_update.assert_called_once()
    update = client.chat_update.call_args.kwargs
    assert (update["channel"], update["ts"]) == (DM[ADMIN], "1700000000.000100")
    assert f"Gold label *{other}*" in texts_of(update)
    client.chat_postEphemeral.assert_not_called()


def test_a_review_pick_is_committed_before_the_ack(crowd: LabelingService, client: Mock) -> None:
    record_id = crowd.find_record("demo", "0").record_id
    ack, seen = watching_ack(client, lambda: (crowd.final_labels("demo"), stored(crowd)))
    review_click(crowd, client, ADMIN, "ham", ack=ack)
    answers = {(record_id, ALICE, "spam", "slack"), (record_id, BOB, "ham", "slack")}
    gold = (record_id, ADMIN, "ham", "review")
    assert seen == [(({"0": "ham"}, answers | {gold}), [])]  # committed; the card not yet updated
    assert "Gold label *ham*" in said(client.chat_update)


def test_a_review_pick_that_fails_to_write_is_not_acked(
    crowd: LabelingService, client: Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = Mock(side_effect=RuntimeError("disk I/O error"))
    monkeypatch.setattr(crowd, "record_answer", failing)
    ack = fake_ack()
    before = stored(crowd)
    with pytest.raises(RuntimeError, match="disk I/O error"):
        review_click(crowd, client, ADMIN, "spam", ack=ack)
    failing.assert_called_once()
    assert ack.call_count == 0 and client.method_calls == []
    assert stored(crowd) == before and not any(source == "review" for *_, source in before)


def test_a_forged_review_click_by_a_non_admin_writes_nothing(crowd: LabelingService, client: Mock) -> None:
    before = stored(crowd)
    review_click(crowd, client, BOB, "spam")
    assert stored(crowd) == before and not any(source == "review" for *_, source in before)
    client.chat_postEphemeral.assert_called_once()
    refusal = client.chat_postEphemeral.call_args.kwargs
    assert (refusal["channel"], refusal["user"]) == (DM[BOB], BOB)
    assert "Only labelbot admins can set gold labels." in texts_of(refusal)
    client.chat_update.assert_not_called()


# ------------------------------------------------------------------------------------------ events


def test_app_home_publishes_the_dashboard(svc: LabelingService, context: BoltContext, client: Mock) -> None:
    answer(svc, (ALICE, "spam"))
    events.on_app_home_opened(
        event={"type": "app_home_opened", "user": ALICE, "tab": "messages"}, client=client, context=context
    )
    client.views_publish.assert_not_called()
    events.on_app_home_opened(
        event={"type": "app_home_opened", "user": ALICE, "tab": "home"}, client=client, context=context
    )
    client.views_publish.assert_called_once()
    published = client.views_publish.call_args.kwargs
    assert published["user_id"] == ALICE and published["view"]["type"] == "home"
    assert "1 of 8" in texts_of(published["view"])


# ------------------------------------------------------------------------------------------ schedules


def quiet_settings() -> SchedulerSettings:
    return SchedulerSettings(
        _env_file=None,
        retrain_interval_minutes=0,  # type: ignore[call-arg]
        schedule_poll_seconds=0,
        timezone=None,
    )


@pytest.fixture
def scheduler(svc: LabelingService, client: Mock) -> Iterator[LabelScheduler]:
    """A paused scheduler (what the CLI opens): it stores jobs and never runs them."""
    running = LabelScheduler(svc, client, settings=quiet_settings()).start(paused=True)
    yield running
    running.shutdown()


def test_schedule_needs_the_scheduler_in_the_context_not_a_global(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    running = LabelScheduler(svc, client, settings=quiet_settings()).start()  # registers the job runtime
    try:
        assert sched.current_runtime() is not None
        for text, user in (("schedule weekdays 10:00", ADMIN), ("subscribe", ALICE), ("unsubscribe", ALICE)):
            assert "Schedules need the bot's scheduler" in said(slash(context, client, text, user=user))
        assert running.items() == []
    finally:
        running.shutdown()


def test_schedule_adds_lists_and_removes_a_prompt(
    context: BoltContext, client: Mock, scheduler: LabelScheduler, svc: LabelingService
) -> None:
    context["scheduler"] = scheduler
    respond = slash(context, client, "schedule weekdays 10:00 3", user=ADMIN)
    [item] = scheduler.items()
    assert (item.kind, item.target, item.n, item.created_by) == ("prompt", CHANNEL, 3, ADMIN)
    assert item.project_id == svc.get_project("demo").id
    # No zone named and none configured: the admin's Slack zone (users.info).
    client.users_info.assert_called_once_with(user=ADMIN)
    assert item.when == "weekdays at 10:00 (Europe/Berlin)"
    assert respond.call_args.kwargs["response_type"] == "ephemeral"
    assert item.id in said(respond) and "Scheduled a labeling prompt for demo in this channel." in said(
        respond
    )
    assert item.id in said(slash(context, client, "schedule list", user=ADMIN))
    assert text_of(slash(context, client, f"schedule remove {item.id}", user=ADMIN)) == (
        f"Removed {item.id} ({item.when})."
    )
    assert scheduler.items() == []
    assert "hour must be 0–23" in said(slash(context, client, "schedule weekdays 25:00", user=ADMIN))
    assert scheduler.items() == []


def test_subscribe_and_unsubscribe(
    context: BoltContext, client: Mock, scheduler: LabelScheduler, svc: LabelingService
) -> None:
    context["scheduler"] = scheduler
    respond = slash(context, client, "subscribe 2 daily 09:30 UTC")
    [item] = scheduler.items()
    assert item.id == f"sub-{svc.get_project('demo').id}-{ALICE}"
    assert (item.kind, item.target, item.n, item.when) == ("subscription", ALICE, 2, "daily at 09:30 (UTC)")
    client.users_info.assert_not_called()  # the zone was named
    assert "You will get 2 cards from demo by DM" in said(respond)
    assert text_of(slash(context, client, "unsubscribe")) == "Done: no more scheduled cards from demo."
    assert scheduler.items() == []
    assert text_of(slash(context, client, "unsubscribe")) == "You have no scheduled cards from demo."


def test_digest_schedules_a_job_or_posts_now(
    context: BoltContext, client: Mock, scheduler: LabelScheduler, svc: LabelingService
) -> None:
    context["scheduler"] = scheduler
    answer(svc, (ALICE, "spam"), (BOB, "ham"))
    slash(context, client, "digest weekly fri 16:00 UTC", user=ADMIN)
    [item] = scheduler.items()
    assert (item.kind, item.target, item.when) == ("digest", CHANNEL, "every Fri at 16:00 (UTC)")
    client.chat_postMessage.assert_not_called()
    respond = slash(context, client, "digest now", user=ADMIN)
    respond.assert_not_called()
    client.chat_postMessage.assert_called_once()
    posted = client.chat_postMessage.call_args.kwargs
    assert posted["channel"] == CHANNEL and "Weekly digest: demo" in texts_of(posted)
    assert "2 of 8 records labeled" in texts_of(posted)
    client.files_upload_v2.assert_called_once()
    assert client.files_upload_v2.call_args.kwargs["channel"] == CHANNEL
    assert len(scheduler.items()) == 1  # "now" adds no job


def test_a_labeler_without_cards_hears_that_records_wait_for_their_vectors(
    svc: LabelingService, client: Mock
) -> None:
    info = svc.create_project("later", ["a", "b"])
    svc.import_rows("later", [ImportRow(line=i, external_id=str(i), text=f"text {i}") for i in range(3)],
                    embed=False)
    labeling = make_labeling(svc)
    assert "3 records are still being embedded" in labeling.nothing_left(info)
    svc.embed("later")
    assert labeling.nothing_left(info) == "Nothing left to label in later for you right now. Thank you!"
