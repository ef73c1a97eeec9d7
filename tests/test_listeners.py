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

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any
from unittest.mock import Mock, create_autospec

import pytest
from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot import blocks, ids
from bot import scheduler as sched
from bot.labeling import Labeling
from bot.listeners import commands, events, review, views
from bot.scheduler import LabelScheduler, SchedulerSettings
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings

ADMIN, ALICE, BOB = "UADMIN", "UALICE", "UBOB"
CHANNEL = "CGENERAL"
DM = {ADMIN: "DADMIN", ALICE: "DALICE", BOB: "DBOB"}
TEXTS = [
    "win a free prize now, click the link",
    "are we still meeting for lunch tomorrow",
    "urgent: your account won a cash prize",
    "can you send me the report tonight",
    "free entry in a weekly competition",
    "see you at the station at six",
    "claim your free ringtone now",
    "thanks for dinner yesterday",
]


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


def make_labeling(service: Any) -> Labeling:
    """``Labeling`` as create_app builds it, with its after-ack pool run inline."""
    return Labeling(service, admins=frozenset({ADMIN}), executor=InlineExecutor())


@pytest.fixture
def context(svc: LabelingService) -> BoltContext:
    """What create_app's middleware puts into bolt's context (no scheduler: see the schedule tests)."""
    return BoltContext({"labeling": make_labeling(svc)})


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


def submit(context: BoltContext, client: Mock, view: dict, user: str = ALICE) -> Mock:
    ack = fake_ack()
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


def review_click(crowd: LabelingService, client: Mock, user: str, label: str) -> Mock:
    [item] = crowd.review_queue("demo", 5)
    card = blocks.review_card(crowd.get_project("demo"), item, nonce="n1")
    button = next(
        e
        for b in card["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button" and e["text"]["text"] == label
    )
    ack = fake_ack()
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
    assert crowd.final_labels("demo") == {}
    review_click(crowd, client, ADMIN, "spam")
    assert crowd.final_labels("demo") == {"0": "spam"}
    client.chat_update.assert_called_once()
    update = client.chat_update.call_args.kwargs
    assert (update["channel"], update["ts"]) == (DM[ADMIN], "1700000000.000100")
    assert "Gold label *spam*" in texts_of(update)
    client.chat_postEphemeral.assert_not_called()


def test_a_forged_review_click_by_a_non_admin_writes_nothing(crowd: LabelingService, client: Mock) -> None:
    review_click(crowd, client, BOB, "spam")
    assert crowd.final_labels("demo") == {}
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
