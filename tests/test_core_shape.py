"""The shape of the core: reads never write, a click is one transaction, caches follow other processes,
and the rules of core.policy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from core import policy
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings

TEXTS = [f"message {i} about {'money' if i % 2 else 'weather'} number {i}" for i in range(12)]


@contextmanager
def recorded(service: LabelingService) -> Iterator[dict[str, list[str]]]:
    """SQL statements and transactions this thread runs on the service's engine meanwhile."""
    seen: dict[str, list[str]] = {"statements": [], "transactions": []}
    me = threading.get_ident()

    def on_statement(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        verb = statement.strip().split()[0].upper()
        if threading.get_ident() == me and verb not in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen["statements"].append(verb)

    def on_begin(conn):  # type: ignore[no-untyped-def]
        if threading.get_ident() == me:
            seen["transactions"].append("begin")

    event.listen(service.engine, "before_cursor_execute", on_statement)
    event.listen(service.engine, "begin", on_begin)
    try:
        yield seen
    finally:
        event.remove(service.engine, "before_cursor_execute", on_statement)
        event.remove(service.engine, "begin", on_begin)


def writes(seen: dict[str, list[str]]) -> list[str]:
    return [s for s in seen["statements"] if s in ("INSERT", "UPDATE", "DELETE", "REPLACE")]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LabelingService]:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    svc.create_project("p", ["money", "weather"])
    svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
    yield svc
    svc.close()


def answer_all(service: LabelingService) -> None:
    while records := service.next_records("p", "alice", 5):
        for record in records:
            label = "money" if "money" in record.text else "weather"
            service.record_answer("p", record.record_id, "alice", label)


def test_next_records_on_a_finished_project_creates_no_run_and_writes_nothing(tmp_path: Path) -> None:
    svc = LabelingService(
        make_settings(tmp_path, retrain_every=5), embedder=HashingEmbedder(64), background=True
    )
    try:
        svc.create_project("p", ["money", "weather"])
        svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        svc.wait_for_retrains(timeout=60)
        answer_all(svc)
        svc.wait_for_retrains(timeout=60)
        runs = len(svc.run_history("p"))
        assert runs >= 1  # the answers did train a model
        with recorded(svc) as seen:
            for _ in range(3):
                assert svc.next_records("p", "bob", 1) == []
        svc.wait_for_retrains(timeout=60)
        assert len(svc.run_history("p")) == runs
        assert writes(seen) == []
    finally:
        svc.close()


def test_reads_never_write(service: LabelingService, tmp_path: Path) -> None:
    answer_all(service)
    service.retrain("p")
    record = service.find_record("p", "3")
    with recorded(service) as seen:
        service.get_project("p")
        service.list_projects()
        service.default_project("C1")
        service.get_record("p", record.record_id)
        service.similar("p", record_id=record.record_id, k=3)
        service.status("p")
        service.run_history("p")
        service.final_labels("p")
        service.pending_count("p")
        service.review_queue("p")
        service.stopping_advice("p")
        service.labels_changed_since_retrain("p")
        service.latest_classifier("p")
        service.export("p", tmp_path / "out.csv")
    assert seen["statements"]  # the recorder sees this thread's queries
    assert writes(seen) == []


def test_an_answer_is_one_transaction_and_the_card_update_another(service: LabelingService) -> None:
    [first, second] = service.next_records("p", "alice", 2)
    service.record_answer("p", first.record_id, "alice", "money")  # warms the project cache
    with recorded(service) as answer:
        result = service.record_answer("p", second.record_id, "alice", "weather")
    with recorded(service) as update:
        card = service.card_update("p", second.record_id, "alice", next_cards=1)
    assert result.changed and card.record.record_id == second.record_id and len(card.next) == 1
    assert len(answer["transactions"]) == 1 and len(update["transactions"]) == 1
    # The answer: project row, record with this user's answer/lease/skip, insert, record update, lease.
    assert answer["statements"][:2] == ["SELECT", "SELECT"] and len(answer["statements"]) <= 6
    # The update's only write is the new card's lease (one upsert).
    assert writes(update) == ["INSERT"]


def test_a_label_chosen_by_function_sees_the_label_set_of_the_answers_transaction(
    service: LabelingService,
) -> None:
    [record] = service.next_records("p", "alice", 1)
    seen = []

    def choose(project):  # type: ignore[no-untyped-def]
        seen.append(project.label_names)
        return project.label_names[1]

    result = service.record_answer(
        project=service.get_project("p").id, record_id=record.record_id, user="alice", label=choose
    )
    assert seen == [("money", "weather")] and result.label == "weather"

    def refuse(project):  # type: ignore[no-untyped-def]
        raise ValueError("the label set changed")

    [other] = service.next_records("p", "alice", 1)
    with pytest.raises(ValueError):
        service.record_answer("p", other.record_id, "alice", refuse)
    assert service.status("p").annotations == 1  # the refused answer wrote nothing


def test_cached_project_info_follows_a_change_made_by_another_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    a = LabelingService(settings, embedder=HashingEmbedder(64))
    b = LabelingService(settings, embedder=HashingEmbedder(64))
    try:
        a.create_project("p", ["money", "weather"])
        a.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        assert a.get_project("p").answers_per_record == 1  # now cached in a
        b.configure_project("p", answers_per_record=2)
        assert a.get_project("p").answers_per_record == 2
        [record] = a.next_records("p", "alice", 1)
        assert not a.record_answer("p", record.record_id, "alice", "money").complete  # k = 2 applied
        b.delete_project("p")
        with pytest.raises(Exception, match="No project"):
            a.get_project("p")
    finally:
        a.close()
        b.close()


def test_a_hand_out_that_runs_the_queue_dry_asks_the_worker_to_refill_it(tmp_path: Path) -> None:
    svc = LabelingService(
        make_settings(tmp_path, retrain_every=50, queue_size=3), embedder=HashingEmbedder(64), background=True
    )
    try:
        svc.create_project("p", ["money", "weather"])
        seeded = {0: "weather", 1: "money"}  # two labeled classes: every retrain records a run
        svc.import_rows(
            "p",
            [
                ImportRow(line=i, external_id=str(i), text=t, label=seeded.get(i), annotator="seed")
                for i, t in enumerate(TEXTS)
            ],
        )
        svc.wait_for_retrains(timeout=60)
        assert len(svc.run_history("p")) == 1  # the import's retrain built a queue of 3
        ranked = svc.next_records("p", "alice", 3)
        assert all(r.reason != "next in the pool" for r in ranked)
        svc.wait_for_retrains(timeout=60)
        assert len(svc.run_history("p")) == 1  # a hand-out the queue could serve asks for nothing
        [unranked] = svc.next_records("p", "alice", 1)  # past the queue: the pool, and a refill asked
        assert unranked.reason == "next in the pool"
        svc.wait_for_retrains(timeout=60)
        assert len(svc.run_history("p")) == 2
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("n", "k", "labels", "extra", "gold", "expected"),
    [
        (0, 1, [], False, False, False),
        (1, 1, ["a"], False, False, True),
        (1, 2, ["a"], False, False, False),
        (0, 3, [], False, True, True),  # an admin's gold label completes it
        (2, 2, ["a", "b"], False, False, True),
        (2, 2, ["a", "b"], True, False, False),  # a tie among exactly k asks one more labeler
        (2, 2, ["a", "a"], True, False, True),
        (3, 2, ["a", "b", "a"], True, False, True),
    ],
)
def test_completeness_rule(
    n: int, k: int, labels: list[str], extra: bool, gold: bool, expected: bool
) -> None:
    assert (
        policy.is_complete(n, k, has_gold=gold, labels=labels, extra_answer_on_disagreement=extra) is expected
    )


def test_retrain_policy_counts_answers_and_cools_down() -> None:
    rules = policy.RetrainPolicy(every=10, cooldown=1.0)
    assert not rules.due_after_answers(9)
    assert rules.due_after_answers(10)  # never trained in this process: no pause
    assert not rules.due_after_answers(10, seconds_since_last=0.5, last_took=2.0)
    assert rules.due_after_answers(10, seconds_since_last=2.5, last_took=2.0)
    assert not policy.RetrainPolicy(every=0).due_after_answers(100)
    assert rules.due_after_handout(asked=1, ranked=0, unranked=1)
    assert not rules.due_after_handout(asked=1, ranked=1, unranked=5)
    assert not rules.due_after_handout(asked=1, ranked=0, unranked=0)
    assert not rules.due_after_handout(asked=1, ranked=0, unranked=1, seconds_since_last=0.5, last_took=2.0)
    assert rules.due_after_handout(asked=1, ranked=0, unranked=1, seconds_since_last=2.5, last_took=2.0)
    assert not policy.RetrainPolicy(every=0).due_after_handout(asked=1, ranked=0, unranked=1)


def test_a_click_shows_the_previous_guesses_while_another_process_s_run_is_predicted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    here = LabelingService(settings, embedder=HashingEmbedder(64))
    other = LabelingService(settings, embedder=HashingEmbedder(64))  # the CLI, another replica
    try:
        here.create_project("p", ["money", "weather"])
        here.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        answer_all(here)
        first = here.retrain("p")
        record = here.find_record("p", "0")
        assert record.predicted_label is not None  # guesses of the first run, cached here
        pid = here.get_project("p").id
        assert here.pools.guesses_of(pid)[0] == first.id
        second = other.retrain("p")
        assert second.id != first.id

        release, predicting = threading.Event(), threading.Event()
        real_predict = type(here.pools)._predict_table

        def held_predict(self, *args):  # type: ignore[no-untyped-def]
            predicting.set()
            assert release.wait(30)
            return real_predict(self, *args)

        monkeypatch.setattr(type(here.pools), "_predict_table", held_predict)
        shown: list[object] = []
        click = threading.Thread(
            target=lambda: shown.append(here.card_update("p", record.record_id, "alice").record)
        )
        click.start()
        click.join(30)
        assert shown and not click.is_alive()  # answered while the new run's prediction is held
        assert shown[0].predicted_label == record.predicted_label  # type: ignore[attr-defined]
        assert predicting.wait(30)  # ... which a background thread started
        release.set()
        for _ in range(300):
            if here.pools.guesses_of(pid)[0] == second.id:
                break
            threading.Event().wait(0.1)
        assert here.pools.guesses_of(pid)[0] == second.id
        # Reports never show an old run's guesses: they wait for the latest one.
        third = other.retrain("p")
        assert third.id != second.id
        latest = other.get_record("p", record.record_id)
        assert here.get_record("p", record.record_id) == latest
        assert here.pools.guesses_of(pid)[0] == third.id
    finally:
        here.close()
        other.close()


def test_a_project_made_again_under_a_reused_id_is_not_taken_for_the_cached_one(tmp_path: Path) -> None:
    # Databases made before ids were AUTOINCREMENT reuse a deleted project's id, and every new
    # project starts at version 0: the cache must still tell them apart.
    from sqlalchemy import text

    settings = make_settings(tmp_path)
    bot, cli = (LabelingService(settings, embedder=HashingEmbedder(64)) for _ in range(2))
    try:
        old = bot.create_project("q", ["x", "y"])
        assert bot.get_project(old.id).labels[0].name == "x"  # cached in the bot
        cli.delete_project("q")
        new = cli.create_project("n", ["pos", "neg", "neutral"], answers_per_record=3)
        with cli.engine.begin() as conn:  # what SQLite without AUTOINCREMENT would have done
            conn.execute(text("UPDATE project SET id = :old WHERE id = :new"), {"old": old.id, "new": new.id})
        seen = bot.get_project(old.id)
        assert (seen.name, seen.label_names, seen.answers_per_record) == ("n", ("pos", "neg", "neutral"), 3)

        def refuse_renamed(project):  # type: ignore[no-untyped-def]
            if project.name != "q":
                raise ValueError("not the project this button was made for")

        cli.import_rows("n", [ImportRow(line=1, external_id="n0", text="a new record")])
        record = cli.find_record("n", "n0")
        with pytest.raises(ValueError):
            bot.skip(old.id, record.record_id, "alice", confirm=refuse_renamed)
        with pytest.raises(ValueError):
            bot.undo(old.id, "alice", confirm=refuse_renamed)
        assert [r.record_id for r in bot.next_records("n", "alice", 1)] == [record.record_id]  # not skipped
    finally:
        bot.close()
        cli.close()


def test_a_database_from_before_the_version_columns_is_brought_up_to_date(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from core.store import create_db_engine

    settings = make_settings(tmp_path)
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    svc.create_project("p", ["money", "weather"])
    svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
    answer_all(svc)
    run = svc.retrain("p")
    svc.close()
    plain = create_engine(settings.database_url)  # no create_db_engine: it would add the columns back
    with plain.begin() as conn:  # as the release before these columns left it
        conn.execute(text("ALTER TABLE project DROP COLUMN version"))
        conn.execute(text("ALTER TABLE project DROP COLUMN latest_run_id"))
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))  # that release had no migrations
    errors: list[str] = []

    def open_it() -> None:
        try:
            create_db_engine(settings.database_url).dispose()
        except Exception as exc:  # two processes adding one column would fail here
            errors.append(repr(exc))

    openers = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in openers:
        thread.start()
    for thread in openers:
        thread.join(30)
    assert errors == []
    with plain.connect() as conn:
        assert conn.execute(text("SELECT version, latest_run_id FROM project")).all() == [(0, run.id)]
    plain.dispose()
    again = LabelingService(settings, embedder=HashingEmbedder(64))
    try:
        assert again.find_record("p", "0").predicted_label in ("money", "weather")  # guesses of that run
    finally:
        again.close()


def test_a_large_import_writes_in_bounded_transactions_each_record_with_its_own_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.service

    monkeypatch.setattr(core.service, "IMPORT_BATCH", 5)
    embedder = HashingEmbedder(64)
    svc = LabelingService(make_settings(tmp_path), embedder=embedder)
    try:
        svc.create_project("p", ["money", "weather"])
        rows = [ImportRow(line=i, external_id=str(i), text=t, label="money" if i == 11 else None)
                for i, t in enumerate(TEXTS)]
        with recorded(svc) as seen:
            result = svc.import_rows("p", rows, embed=False)
        assert (result.new_records, result.annotations, result.embedded) == (12, 1, 0)
        # 12 records in batches of 5 (3 transactions: INSERTs, or COPY on PostgreSQL), then the
        # answers and the data version (1).
        assert len(seen["transactions"]) == 2 + 3 + 1  # project and known ids read, 3 batches, the answers
        assert svc.similar("p", text=TEXTS[0], k=1) == []  # no vectors yet
        assert svc.embed("p").embedded == 12
        for i, text in enumerate(TEXTS):
            rid = svc.find_record("p", str(i)).record_id
            [nearest] = svc.similar("p", text=text, k=1)
            assert nearest.record_id == rid and nearest.score == pytest.approx(1.0, abs=2e-3)
        assert svc.status("p").labeled == 1 and svc.pending_count("p") == 11
    finally:
        svc.close()
