"""The embedding job: records without vectors wait, batches resume after kill -9, and a project moves
to another model atomically (similar search and hand-out on the new vectors)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import embedding_job
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from core.vectors import VectorFiles
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["rain", "sun", "card", "refund", "wind", "loan", "snow", "cash", "storm", "bank"]


def _rows(n: int, start: int = 0) -> list[ImportRow]:
    return [
        ImportRow(line=i, external_id=str(i), text=f"{WORDS[i % 10]} {WORDS[(i * 7) % 10]} note {i}")
        for i in range(start, start + n)
    ]


LABEL_TEXTS = {"weather", "money"}  # the labels of every project here (their label texts are the names)


class CountingEmbedder(HashingEmbedder):
    """Counts the record texts it encodes (label names, embedded once for the learner's label-name
    prior, go to ``label_texts``), and can stand for another model name."""

    def __init__(self, dim: int = 64, name: str | None = None) -> None:
        super().__init__(dim)
        self.name = name or self.name
        self.encoded: list[str] = []
        self.label_texts: list[str] = []

    def encode(self, texts, *, progress=None):  # type: ignore[no-untyped-def]
        for text in texts:
            (self.label_texts if text in LABEL_TEXTS else self.encoded).append(text)
        return super().encode(texts, progress=progress)


def test_records_without_a_vector_are_not_handed_out_until_the_job_embeds_them(tmp_path: Path) -> None:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        svc.create_project("p", ["weather", "money"])
        result = svc.import_rows("p", _rows(30), embed=False)
        assert (result.new_records, result.embedded) == (30, 0)
        assert svc.embedding_status("p").missing == 30
        assert svc.next_records("p", "alice", n=5) == []
        # One batch of 8, then stop: only those 8 may be handed out.
        calls = iter([False, True])
        first = embedding_job.embed_project(
            svc.engine, "p", svc.get_project("p").id, "hashing-64", HashingEmbedder(64),
            should_stop=lambda: next(calls), batch=8,
        )
        assert (first.embedded, first.stopped) == (8, True)
        handed = svc.next_records("p", "alice", n=30)
        assert len(handed) == 8
        assert {v.external_id for v in handed} == {str(i) for i in range(8)}
        assert svc.embed("p").embedded == 22
        rest = svc.next_records("p", "bob", n=30)  # alice holds the first 8 (one answer each)
        assert {v.external_id for v in rest} == {str(i) for i in range(8, 30)}
        assert svc.embedding_status("p").missing == 0
    finally:
        svc.close()


_KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from core.config import Settings
    from core.embeddings import HashingEmbedder
    from core.service import LabelingService
    from core import embedding_job

    class Slow(HashingEmbedder):
        def encode(self, texts, *, progress=None):
            time.sleep(0.3)
            return super().encode(texts, progress=progress)

    embedding_job.BATCH = 5
    svc = LabelingService(Settings(_env_file=None, database_url=sys.argv[1], vector_dir=sys.argv[2],
                                   embedding_model="hashing-64"), embedder=Slow(64))
    svc.embed("p", progress=lambda done, total: print(done, flush=True))
    """
)


def test_a_killed_job_resumes_without_embedding_finished_records_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    try:
        svc.create_project("p", ["weather", "money"])
        svc.import_rows("p", _rows(60), embed=False)
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED_RUN, settings.database_url, settings.vector_dir],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        # Wait until at least two batches are committed, then kill -9 mid-way.
        while True:
            line = proc.stdout.readline()
            assert line, "the job ended before it was killed"
            if int(line) >= 10:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = 60 - svc.embedding_status("p").missing
        assert 10 <= done_before < 60
        again = CountingEmbedder(64)
        resumed = LabelingService(settings, embedder=again)
        try:
            result = resumed.embed("p")
        finally:
            resumed.close()
        assert result.embedded == 60 - done_before == len(again.encoded)
        # Exactly the records the killed run had not finished, each once.
        assert len(set(again.encoded)) == len(again.encoded)
        finished = {r.text for r in _rows(60)} - set(again.encoded)
        assert len(finished) == done_before
        assert svc.embedding_status("p").missing == 0
    finally:
        svc.close()


def test_changing_the_model_switches_once_every_record_has_a_new_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding_job, "BATCH", 8)
    old = HashingEmbedder(64)
    svc = LabelingService(make_settings(tmp_path), embedder=old)
    new = CountingEmbedder(32, name="hashing-32")
    svc._embedders["hashing-32"] = new  # the second model, without loading anything
    try:
        svc.create_project("p", ["weather", "money"])
        svc.import_rows("p", _rows(40))
        target = svc.find_record("p", "3").record_id
        before = svc.similar("p", record_id=target, k=3)
        # Stopped half-way: the project keeps its model; search and hand-out use the old vectors.
        calls = iter([False, False, True])
        stopped = svc.embed("p", model="hashing-32", should_stop=lambda: next(calls))
        assert stopped.stopped and not stopped.switched
        status = svc.embedding_status("p")
        assert (status.model, status.target) == ("hashing-64", "hashing-32")
        assert 0 < status.missing < 40
        assert svc.similar("p", record_id=target, k=3) == before
        # The job goes on from where it stopped (no text twice) and switches at the end.
        result = svc.embed("p")
        assert result.switched and result.model == "hashing-32"
        assert len(new.encoded) == len(set(new.encoded)) == 40
        status = svc.embedding_status("p")
        assert (status.model, status.target, status.missing) == ("hashing-32", None, 0)
        hits = svc.similar("p", record_id=target, k=3)
        texts = [r.text for r in _rows(40)]
        brute = HashingEmbedder(32).encode(texts) @ HashingEmbedder(32).encode([texts[3]])[0]
        brute[3] = -np.inf
        assert [h.score for h in hits] == pytest.approx(sorted(brute)[::-1][:3], abs=2e-3)
        assert [h.score for h in hits] != pytest.approx([h.score for h in before], abs=1e-4)
        assert len(svc.next_records("p", "alice", n=40)) == 40
        svc.record_answer("p", target, "alice", "weather")
        svc.record_answer("p", svc.find_record("p", "4").record_id, "alice", "money")
        run = svc.retrain("p")
        assert run is not None
        classifier = svc.latest_classifier("p")
        assert classifier is not None and classifier.n_features_in_ == 32  # trained on the new vectors
    finally:
        svc.close()


def test_vector_files_grow_by_new_batches_and_are_shared(tmp_path: Path) -> None:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        info = svc.create_project("p", ["weather", "money"])
        svc.import_rows("p", _rows(10))
        files = VectorFiles(tmp_path / "shared", svc.settings.database_url)
        first = files.load(svc.engine, info.id, info.created_at, "hashing-64")
        assert len(first.ids) == 10 and first.vectors.dtype == np.float16
        svc.import_rows("p", _rows(5, start=10))
        grown = files.load(svc.engine, info.id, info.created_at, "hashing-64", known=first)
        assert len(grown.ids) == 15 and grown.lineage == first.lineage
        np.testing.assert_array_equal(grown.ids[:10], first.ids)
        # Another process's view of the same files: same rows, without reading the database again.
        other = VectorFiles(tmp_path / "shared", svc.settings.database_url)
        seen = other.load(svc.engine, info.id, info.created_at, "hashing-64")
        np.testing.assert_array_equal(seen.ids, grown.ids)
        np.testing.assert_array_equal(seen.vectors, grown.vectors)
        exact = HashingEmbedder(64).encode([r.text for r in _rows(15)])
        order = np.argsort(seen.ids)
        np.testing.assert_allclose(seen.vectors[order].astype(np.float32), exact, atol=1e-3)
        unchanged = other.load(svc.engine, info.id, info.created_at, "hashing-64", known=seen)
        assert unchanged.ids is seen.ids
    finally:
        svc.close()


def test_progress_says_count_rate_and_time_left() -> None:
    line = embedding_job.describe("Embedding 'p'", 12_000, 1_000_000, 24.0)
    assert line == "Embedding 'p': 12,000/1,000,000 vectors (500/s, about 33 min left)"
    assert "left" not in embedding_job.describe("x", 0, 10, 0.0)


@pytest.mark.parametrize("count", [0, 3])
def test_embed_everything_embeds_only_what_is_missing(tmp_path: Path, count: int) -> None:
    embedder = CountingEmbedder(64)
    svc = LabelingService(make_settings(tmp_path), embedder=embedder)
    try:
        svc.create_project("p", ["weather", "money"])
        svc.create_project("q", ["weather", "money"])
        svc.import_rows("p", _rows(count), embed=False)
        svc.import_rows("q", _rows(4))
        embedder.encoded.clear()
        assert svc.embed_everything() == count
        assert len(embedder.encoded) == count
        svc.import_rows("q", _rows(2, start=4), embed=False)
        assert svc.embed_everything(should_stop=lambda: True) == 0  # asked to stop: nothing written
        assert svc.embedding_status("q").missing == 2
    finally:
        svc.close()


def test_the_search_index_built_by_one_process_serves_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.index

    monkeypatch.setattr(core.index, "EXACT_BELOW", 20)  # the approximate index from 20 records on
    settings = make_settings(tmp_path)
    worker = LabelingService(settings, embedder=HashingEmbedder(64))
    bot = LabelingService(settings, embedder=HashingEmbedder(64))
    try:
        worker.create_project("p", ["weather", "money"])
        worker.import_rows("p", _rows(60))
        target = bot.find_record("p", "5").record_id
        exact = bot.similar("p", record_id=target, k=5)  # no index yet: every row scored
        assert worker.update_search_index("p") is True
        assert worker.update_search_index("p") is False  # nothing new to add
        assert bot.similar("p", record_id=target, k=5) == exact
        index = next(iter(bot.pools._pools.values())).index
        assert index.pending == 0  # the bot now searches the worker's index file
        worker.import_rows("p", _rows(10, start=60))
        assert bot.similar("p", text=_rows(70)[65].text, k=1)[0].external_id == "65"
    finally:
        worker.close()
        bot.close()


def test_guesses_for_newly_embedded_records_predict_only_the_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.learner import EmbeddingClassifier

    scored: list[int] = []
    original = EmbeddingClassifier.score_pool

    def counting(self, X, *args, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(len(X))
        return original(self, X, *args, **kwargs)

    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    bot = LabelingService(svc.settings, embedder=HashingEmbedder(64))  # guesses made by another process
    try:
        svc.create_project("p", ["weather", "money"])
        svc.import_rows("p", _rows(30))
        for i, label in [(0, "weather"), (2, "money"), (4, "weather"), (6, "money")]:
            svc.record_answer("p", svc.find_record("p", str(i)).record_id, "alice", label)
        svc.retrain("p")
        monkeypatch.setattr(EmbeddingClassifier, "score_pool", counting)
        first = bot.similar("p", record_id=svc.find_record("p", "9").record_id, k=3)
        assert scored == [30] and all(hit.predicted_label is not None for hit in first)
        svc.import_rows("p", _rows(5, start=30))
        again = bot.similar("p", text=_rows(35)[33].text, k=1)
        assert scored == [30, 5]  # the 5 new rows, not the pool again
        assert again[0].external_id == "33" and again[0].predicted_label is not None
    finally:
        svc.close()
        bot.close()
