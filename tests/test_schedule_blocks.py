"""Block Kit for prompts, digests and schedule lists: valid, escaped, and saying what the issue asks."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from bot import blocks, ids
from core.schedules import ScheduledItem
from core.stopping import StoppingAdvice, WeakLabel
from core.types import AnnotatorStats, LabelDef, ModelRunInfo, ProjectInfo, ProjectStatus
from tests.test_bot import texts_of

EVIL = "<!channel> & <https://evil.example|x>"
NOW = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def project(name: str = "demo") -> ProjectInfo:
    return ProjectInfo(id=7, name=name, labels=(LabelDef("spam"), LabelDef("ham")), answers_per_record=1,
                       strategy="margin-kmeans", created_at=NOW)


def status(name: str = "demo") -> ProjectStatus:
    return ProjectStatus(project=name, total=100, labeled=40, annotations=45,
                         label_counts={"spam": 10, "ham": 30},
                         annotators=(AnnotatorStats("UALICE", 30), AnnotatorStats(EVIL, 15)), latest_run=None,
                         remaining=60)


def run(i: int, n: int, acc: float, f1: float, days_ago: float) -> ModelRunInfo:
    return ModelRunInfo(id=i, project="demo", created_at=NOW - timedelta(days=days_ago), n_labels=n,
                        strategy="margin-kmeans", metrics={"cv_accuracy": acc, "cv_macro_f1": f1},
                        label_counts={}, duration_seconds=0.5)


def test_prompt_message_says_how_many_wait_and_carries_the_label_n_button() -> None:
    message = blocks.prompt_message(project(), waiting=12, accuracy=0.81, n=5, minutes=5)
    assert blocks.message_problems(message) == []
    shown = texts_of(message)
    assert "12 records are waiting; the model is at 81% — 5 minutes helps" in shown
    [button] = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["text"]["text"] == "Label 5 now" and button["action_id"] == ids.ACTION_LABEL_N_NOW
    ref = ids.parse_label_n_value(button["value"])
    assert (ref.project_id, ref.n) == (7, 5) and ref.matches("demo")
    one = texts_of(blocks.prompt_message(project(), waiting=1, accuracy=None, n=1, minutes=1))
    assert "1 record is waiting; the model is still learning — a minute helps" in one


def test_prompt_escapes_the_project_name() -> None:
    message = blocks.prompt_message(project(EVIL), waiting=3, accuracy=0.5, n=3, minutes=1)
    assert "<!channel>" not in str(message) and "&lt;!channel&gt;" in texts_of(message)
    assert blocks.message_problems(message) == []


def test_digest_has_week_trend_and_advice() -> None:
    runs = [run(1, 50, 0.60, 0.50, 10), run(2, 80, 0.70, 0.62, 5), run(3, 120, 0.81, 0.75, 1)]
    advice = StoppingAdvice(project="demo", n_labels=120, stop=True,
                            message="More labels are unlikely to help much.",
                            weak_labels=(WeakLabel("spam", 0.41, 12),))
    message = blocks.digest_message(status(), week={"UALICE": 12, EVIL: 3}, runs=runs, advice=advice,
                                    since=NOW - timedelta(days=7))
    assert blocks.message_problems(message) == []
    shown = texts_of(message)
    assert "Weekly digest: demo" in shown and "40 of 100 records labeled" in shown
    assert "*Last 7 days:* 15 answers" in shown and "<@UALICE> — 12 answers" in shown
    assert "<!channel>" not in str(message)
    # The trend starts at the last run before the week (10 days ago, 50 labels) and ends at the latest.
    assert "accuracy 60.0% → 81.0% (+21.0 points)" in shown and "from 50 labels to 120" in shown
    assert "macro-F1 0.500 → 0.750 (+0.250)" in shown
    assert "unlikely to help much" in shown and "spam (F1 0.41, 12 examples)" in shown


def test_digest_without_answers_or_models() -> None:
    message = blocks.digest_message(status(), week={}, runs=[], advice=None)
    shown = texts_of(message)
    assert "no answers" in shown and "no cross-validated model yet" in shown
    assert blocks.message_problems(message) == []


def test_schedule_list_and_added_messages() -> None:
    items = [
        ScheduledItem(id="prompt-abc123", kind="prompt", project_id=7, project="demo", target="CGENERAL",
                      when="weekdays at 10:00 (Europe/Berlin)", n=5, next_run=NOW),
        ScheduledItem(id="sub-7-UALICE", kind="subscription", project_id=7, project="demo", target="UALICE",
                      when="daily at 09:00 (UTC)", n=2, next_run=None),
    ]
    message = blocks.schedule_list_message("demo", items)
    assert blocks.message_problems(message) == []
    shown = texts_of(message)
    assert "`prompt-abc123` Prompt <#CGENERAL> — weekdays at 10:00 (Europe/Berlin) · 5 cards · next" in shown
    assert "`sub-7-UALICE` Subscription <@UALICE>" in shown and "paused" in shown
    assert "Nothing scheduled" in texts_of(blocks.schedule_list_message("demo", []))
    added = blocks.schedule_added_message("Scheduled a prompt.", items[0])
    assert "prompt-abc123" in texts_of(added) and blocks.message_problems(added) == []


def test_help_lists_the_new_subcommands() -> None:
    shown = texts_of(blocks.help_message(True))
    for name in ("/label subscribe", "/label unsubscribe", "/label schedule", "/label digest"):
        assert name in shown
    assert "/label schedule" not in texts_of(blocks.help_message(False))


def test_a_multi_label_prompt_names_its_score() -> None:
    multi = dataclasses.replace(project(), multi_label=True)
    shown = texts_of(blocks.prompt_message(multi, waiting=12, accuracy=0.46, n=5, minutes=5))
    assert "the model is at 46% micro-F1" in shown
