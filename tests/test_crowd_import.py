"""No configuration trap (issue 11): multi-answer imports into a project at the default answers per record,
answers beyond k, and ties that keep the aggregate's label (exported with a flag, trained on, in review until
an admin's gold label), through the facade and the CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app as cli_app
from core import ingest
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import database_url, make_settings, write_csv
from tests.test_crowd import TEXTS, TRUTH

GOOD = ("w1", "w2", "w3", "w4")
ERRS = {"w1": 0, "w2": 13, "w3": 20}  # each reliable worker gets one record wrong, never the same one
N = len(TEXTS)


def five_answer_rows() -> list[dict[str, str]]:
    """Long format, 5 answers per record: four reliable workers and a spammer who always says spam."""
    rows = []
    for i, text in enumerate(TEXTS):
        other = "ham" if TRUTH[i] == "spam" else "spam"
        for worker in GOOD:
            rows.append({"id": f"r{i}", "text": text, "worker": worker,
                         "label": other if ERRS.get(worker) == i else TRUTH[i]})
        rows.append({"id": f"r{i}", "text": text, "worker": "spammer", "label": "spam"})
    return rows


def read_export(path: Path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LabelingService]:
    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    yield service
    service.close()


def cli_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELBOT_DATABASE_URL", database_url(tmp_path, with_tables=True))
    monkeypatch.setenv("LABELBOT_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("LABELBOT_RETRAIN_EVERY", "0")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    return run


# ---------------------------------------------------------------- multi-answer imports


def test_five_answers_per_record_into_a_default_project(svc: LabelingService, tmp_path: Path) -> None:
    assert svc.create_project("p", ["spam", "ham"]).answers_per_record == 1  # never configured
    data = write_csv(tmp_path / "long.csv", five_answer_rows())
    result = svc.import_file("p", data, label_column="label", annotator_column="worker")
    assert (result.new_records, result.annotations) == (N, 5 * N)
    assert result.k_from_data and result.answers_per_record == 5 == svc.get_project("p").answers_per_record
    assert (result.records_at_k, result.records_over_k, result.records_under_k) == (N, 0, 0)
    assert result.notes() == [
        f"Answers per record set to 5 from the data (most records have 5 answers: {N} of {N})."
    ]
    status = svc.status("p")
    assert (status.labeled, status.remaining, status.ties) == (N, 0, 0)
    exported = read_export(Path(svc.export("p", tmp_path / "out.csv").path))
    assert {eid: row["label"] for eid, row in exported.items()} == {f"r{i}": TRUTH[i] for i in range(N)}
    assert all(row["n_annotations"] == "5" and row["tie"] == "false" for row in exported.values())
    # The spammer's answer is outvoted, the reliable worker's error too: 4 of 5 agree on those records.
    assert exported["r0"]["agreement"] == "0.8" and exported["r12"]["agreement"] == "0.8"  # r12 is ham
    assert exported["r1"]["agreement"] == "1.0"


def test_five_answers_per_record_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = cli_runner(tmp_path, monkeypatch)
    run("init", "p", "--labels", "spam,ham")
    data = write_csv(tmp_path / "long.csv", five_answer_rows())
    out = run("import", "p", str(data), "--annotator-column", "worker", "--label-column", "label")
    assert f"{N} new records" in out and f"{5 * N} answers" in out
    assert f"Answers per record set to 5 from the data (most records have 5 answers: {N} of" in out
    run("export", "p", "-o", str(tmp_path / "out.csv"))
    exported = read_export(tmp_path / "out.csv")
    assert len(exported) == N
    assert all(row["label"] == TRUTH[int(eid[1:])] for eid, row in exported.items())
    assert json.loads(run("status", "p", "--json"))["labeled"] == N


def test_answers_beyond_a_configured_k_all_count(svc: LabelingService, tmp_path: Path) -> None:
    svc.create_project("p", ["spam", "ham"], answers_per_record=3)
    data = write_csv(tmp_path / "long.csv", five_answer_rows())
    result = svc.import_file("p", data, label_column="label", annotator_column="worker")
    assert not result.k_from_data and result.answers_per_record == 3
    assert svc.get_project("p").answers_per_record == 3
    assert (result.records_at_k, result.records_over_k, result.records_under_k) == (0, N, 0)
    assert result.notes() == [f"{N} records have more than 3 answers: all of them count in the aggregate."]
    exported = read_export(Path(svc.export("p", tmp_path / "out.csv").path))
    assert all(row["n_annotations"] == "5" and row["label"] for row in exported.values())
    # r13 (ham): w2 and the spammer say spam. Agreement over all five answers, not the first three (2/3).
    assert exported["r13"]["label"] == "ham" and exported["r13"]["agreement"] == "0.6"


def test_k_from_the_most_common_count_and_short_records_wait(svc: LabelingService, tmp_path: Path) -> None:
    svc.create_project("p", ["spam", "ham"])
    short = ("r1", "r2")  # w3 and w4 never answered these: 3 answers each
    rows = [row for row in five_answer_rows() if not (row["id"] in short and row["worker"] in ("w3", "w4"))]
    data = write_csv(tmp_path / "long.csv", rows)
    result = svc.import_file("p", data, label_column="label", annotator_column="worker")
    assert result.answers_per_record == 5 and result.k_from_data
    assert (result.records_at_k, result.records_under_k) == (N - 2, 2)
    assert result.notes()[1] == (
        "2 records have fewer than 5 answers: they get a label once labelers add the rest."
    )
    exported = read_export(Path(svc.export("p", tmp_path / "out.csv").path))
    assert {eid for eid, row in exported.items() if not row["label"]} == {"r1", "r2"}
    assert svc.status("p").remaining == 2


def test_k_stays_when_configured_or_the_project_has_answers(svc: LabelingService, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "long.csv", five_answer_rows())
    svc.create_project("configured", ["spam", "ham"], answers_per_record=2)
    result = svc.import_file("configured", data, label_column="label", annotator_column="worker")
    assert not result.k_from_data and svc.get_project("configured").answers_per_record == 2
    assert result.records_over_k == N

    svc.create_project("answered", ["spam", "ham"])
    svc.import_rows("answered", [ImportRow(line=2, external_id="seed", text="a seed text", label="ham")])
    result = svc.import_file("answered", data, label_column="label", annotator_column="worker")
    assert not result.k_from_data and svc.get_project("answered").answers_per_record == 1
    assert result.records_over_k == N
    assert svc.status("answered").labeled == N + 1  # every record complete and labeled at k = 1

    # One answer per record (seed labels) leaves the default alone: nothing in them says k.
    svc.create_project("seeds", ["spam", "ham"])
    result = svc.import_rows("seeds", [ImportRow(line=i + 2, external_id=str(i), text=t, label=TRUTH[i])
                                       for i, t in enumerate(TEXTS)])
    assert not result.k_from_data and result.notes() == [] and result.records_at_k == N


def test_k_from_data_rule() -> None:
    assert ingest.k_from_data(Counter({5: 10, 3: 4})) == 5
    assert ingest.k_from_data(Counter({3: 4, 5: 4, 1: 2})) == 3  # equally common: the smaller
    assert ingest.k_from_data(Counter({1: 10})) is None  # one answer each: not a multi-answer import
    assert ingest.k_from_data(Counter({1: 10, 2: 1})) == 1
    assert ingest.k_from_data(Counter()) is None
