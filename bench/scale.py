"""Issue 10's scale figures on the real code: import, vector writes, pool loads, the similar-search
index, similar top-10 latency and recall, retrains and the serving process tree's memory (PSS).

Steps, each through the code the bot runs:

1. ``labelbot import PROJECT file.csv --label-column label --no-embed`` in a subprocess (the real CLI;
   a wrapper only adds up the time spent in ``import_file``'s pauses, in reading the file and in the
   retrain the command runs after importing). Target: < 30 s at 1M, not waiting for embeddings.
2. ``LabelingService.embed`` with a fake embedder returning precomputed clustered 384-d vectors
   (``bench/speed.py``'s generator) and ``core.embedding_job.BATCH`` raised to 20,000: the rate of the
   vector writes.
3. The first pool load (reads every vector from the database into the float16 files: "cold") and
   a later one in a new service (maps the files: "warm"), each as the first ``similar`` call.
4. ``update_search_index`` (the usearch HNSW file), then ``similar(project, record_id=…, k=10)``:
   p50/p95 over warm queries and recall@10 against brute force over the float32 vectors.
5. Memory, emulating ``labelbot serve`` in a child process: the service with ``background=True`` and a
   ``ProcessTrainer`` (the training worker process), an ``EmbeddingWorker`` (the embedding worker
   process), a pool load and a hand-out, then two background retrains (timed); then PSS
   (``/proc/PID/smaps_rollup``) summed over the child and all its descendants. Target: ≤ 3 GB at 1M.

    .venv/bin/python bench/scale.py                                  # 100k
    .venv/bin/python bench/scale.py --records 1000000 --workdir /tmp/scale-1m

The database, vector files and index are kept in ``--workdir`` and reused (steps 1-2 and the index
build are skipped when present; their figures come from ``build.json`` there). Results are printed
and written to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from speed import PrecomputedEmbedder, synthetic_pool  # noqa: E402

import core.embedding_job as embedding_job  # noqa: E402
from core.config import Settings  # noqa: E402
from core.service import IMPORT_BATCH, IMPORT_PAUSE, LabelingService  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PROJECT = "scale"
MODEL = "synthetic-384"  # PrecomputedEmbedder's name at 384 dims
TARGETS = {
    "import_s": 30.0,
    "pss_gb": 3.0,
    "similar_p95_ms": 20.0,
    "recall_at_10": 0.99,
    "retrain_warm_s": 5.0,
}
DATABASE_URL = ""  # --database-url; empty: a SQLite file in the work directory

# Runs the real CLI, adding up where `import_file` spends its time.
_CLI_WRAPPER = r"""
import time
began = time.perf_counter()
import atexit, json, os, sys
import core.io as io_module
import core.service as service_module
from core.service import LabelingService

spent = {"pauses_s": 0.0, "read_file_s": 0.0, "import_file_s": 0.0, "retrain_s": 0.0,
         "embedding_status_s": 0.0}

def timed(owner, name, key):
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - started
    setattr(owner, name, wrapper)

class _Clock:
    def __getattr__(self, name):
        return getattr(time, name)
    def sleep(self, seconds):
        started = time.perf_counter()
        time.sleep(seconds)
        spent["pauses_s"] += time.perf_counter() - started

service_module.time = _Clock()
timed(io_module, "read_records", "read_file_s")
timed(LabelingService, "import_file", "import_file_s")
timed(LabelingService, "retrain", "retrain_s")
timed(LabelingService, "embedding_status", "embedding_status_s")
atexit.register(lambda: open(os.environ["SCALE_SPENT"], "w").write(json.dumps(spent)))
from bot.cli import app
spent["python_imports_s"] = time.perf_counter() - began
sys.argv = ["labelbot"] + sys.argv[1:]
app()
"""


def database_url(workdir: Path) -> str:
    return DATABASE_URL or f"sqlite:///{workdir / 'scale.db'}"


def settings_for(workdir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url(workdir),
        "vector_dir": str(workdir / "scale.db.vectors"),
        "embedding_model": MODEL,
        "retrain_every": 0,  # the bench asks for retrains itself
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def build(workdir: Path, vectors: np.ndarray, classes: np.ndarray, n_labels: int) -> dict[str, Any]:
    """Project, CLI import and vector writes; the figures of the build."""
    n, n_classes = len(vectors), int(classes.max()) + 1
    names = [f"intent_{i:02d}" for i in range(n_classes)]
    svc = LabelingService(settings_for(workdir), embedder=PrecomputedEmbedder(vectors))
    svc.create_project(PROJECT, names)
    svc.close()
    labeled = np.zeros(n, dtype=bool)
    labeled[np.random.default_rng(1).choice(n, n_labels, replace=False)] = True
    csv_path = workdir / "records.csv"
    with open(csv_path, "w") as out:
        out.write("id,text,label\n")
        for i in range(n):
            out.write(f"{i},record {i},{names[classes[i]] if labeled[i] else ''}\n")
    env = {
        **os.environ,
        "LABELBOT_DATABASE_URL": database_url(workdir),
        "LABELBOT_VECTOR_DIR": str(workdir / "scale.db.vectors"),
        "LABELBOT_EMBEDDING_MODEL": MODEL,
        "SCALE_SPENT": str(workdir / "import_spent.json"),
        "PYTHONPATH": str(ROOT),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CLI_WRAPPER, "import", PROJECT, str(csv_path), "--label-column", "label",
         "--no-embed"],
        env=env, cwd=workdir, capture_output=True, text=True,
    )
    import_s = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"labelbot import failed:\n{done.stdout}\n{done.stderr}")
    spent = json.loads((workdir / "import_spent.json").read_text())
    pauses = math.ceil(n / IMPORT_BATCH) - 1
    figures: dict[str, Any] = {
        "import_s": import_s,
        "import_breakdown": {
            **spent,
            "pauses": pauses,
            "pause_each_s": IMPORT_PAUSE,
            "writing_s": spent["import_file_s"] - spent["pauses_s"] - spent["read_file_s"],
            "other_s": import_s - spent["import_file_s"] - spent["retrain_s"] - spent["python_imports_s"]
            - spent["embedding_status_s"],
        },
        "import_output": done.stdout.strip().splitlines()[-3:],
        "import_load": load_average(),
    }
    embedding_job.BATCH = 20_000
    svc = LabelingService(settings_for(workdir), embedder=PrecomputedEmbedder(vectors))
    started = time.perf_counter()
    result = svc.embed(PROJECT)
    figures["embed_s"] = time.perf_counter() - started
    figures["embed_rows_per_s"] = result.embedded / figures["embed_s"]
    figures["embedded"] = result.embedded
    figures["embed_load"] = load_average()
    svc.close()
    csv_path.unlink()
    return figures


def record_rows(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(record ids, their row in the synthetic matrix = external id), in record id order."""
    engine = create_engine(database_url(workdir))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, external_id FROM record ORDER BY id")).all()
    engine.dispose()
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([int(r[1]) for r in rows], dtype=np.int64)


def first_similar_s(workdir: Path, record_id: int) -> float:
    svc = LabelingService(settings_for(workdir))
    started = time.perf_counter()
    svc.similar(PROJECT, record_id=record_id, k=10)
    seconds = time.perf_counter() - started
    svc.close()
    return seconds


def similar_figures(
    workdir: Path, vectors: np.ndarray, ids: np.ndarray, rows: np.ndarray, *, queries: int,
    recall_queries: int,
) -> dict[str, Any]:
    svc = LabelingService(settings_for(workdir))
    rng = np.random.default_rng(7)
    picks = rng.choice(len(ids), queries, replace=False)
    svc.similar(PROJECT, record_id=int(ids[picks[0]]), k=10)  # warm: pool mapped
    latencies = []
    for p in picks:
        started = time.perf_counter()
        svc.similar(PROJECT, record_id=int(ids[p]), k=10)
        latencies.append(time.perf_counter() - started)
    row_of_id = dict(zip(ids.tolist(), rows.tolist(), strict=True))
    hits = 0
    for chunk in np.array_split(picks[:recall_queries], max(1, recall_queries // 50)):
        q_rows = rows[chunk]
        scores = vectors[q_rows] @ vectors.T
        scores[np.arange(len(q_rows)), q_rows] = -np.inf  # the record itself
        truth = np.argpartition(-scores, 10, axis=1)[:, :10]
        for p, want in zip(chunk, truth, strict=True):
            got = {row_of_id[h.record_id] for h in svc.similar(PROJECT, record_id=int(ids[p]), k=10)}
            hits += len(got & set(want.tolist()))
    pool = svc.pools._pools[next(iter(svc.pools._pools))]
    figures = {
        "similar_p50_ms": float(np.percentile(latencies, 50) * 1000),
        "similar_p95_ms": float(np.percentile(latencies, 95) * 1000),
        "similar_queries": queries,
        "recall_at_10": hits / (10 * recall_queries),
        "recall_queries": recall_queries,
        "index_pending_rows": pool.index.pending,
        "similar_load": load_average(),
    }
    svc.close()
    return figures


# ------------------------------------------------------------------ memory of the serving process tree

_SERVE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from core.config import Settings
from core.embedding_job import EmbeddingWorker
from core.service import LabelingService
from core.trainer import ProcessTrainer

workdir, record_id = Path(sys.argv[2]), int(sys.argv[3])
settings = Settings(_env_file=None, database_url=sys.argv[4], vector_dir=str(workdir / "scale.db.vectors"),
                    embedding_model="synthetic-384")
service = LabelingService(settings, background=True, trainer=ProcessTrainer(settings))
worker = EmbeddingWorker(settings).start()
out = {}
started = time.perf_counter()
service.similar("scale", record_id=record_id, k=10)
out["first_similar_s"] = time.perf_counter() - started
service.next_records("scale", "bench-user", n=1)
for name in ("retrain_cold_s", "retrain_warm_s"):
    started = time.perf_counter()
    service.request_retrain("scale")
    service.wait_for_retrains()
    out[name] = time.perf_counter() - started
service.similar("scale", record_id=record_id, k=10)  # shows the new guesses
time.sleep(5)  # the embedding worker's idle poll maps the pool too
print(json.dumps(out), flush=True)
sys.stdin.readline()  # measured now; then stop
worker.stop()
service.close()
"""


def _kib(path: str, field: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def memory_figures(workdir: Path, record_id: int) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVE_CHILD, str(ROOT), str(workdir), str(record_id), database_url(workdir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=workdir,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line:
            raise SystemExit("the serving child died before measuring")
        figures: dict[str, Any] = json.loads(line)
        processes = []
        for pid in process_tree(child.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                pss = _kib(f"/proc/{pid}/smaps_rollup", "Pss")
                rss = _kib(f"/proc/{pid}/smaps_rollup", "Rss")
            except OSError:
                continue
            role = "bot" if pid == child.pid else ("worker" if "spawn_main" in cmd else "other")
            processes.append({"pid": pid, "role": role, "pss_mb": pss / 1024, "rss_mb": rss / 1024,
                              "cmd": cmd[:80]})
        figures["processes"] = processes
        figures["pss_gb"] = sum(p["pss_mb"] for p in processes) / 1024
        figures["memory_load"] = load_average()
    finally:
        if child.stdin:
            child.stdin.write("\n")
            child.stdin.flush()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
    return figures


def verdict(key: str, value: float) -> str:
    target = TARGETS.get(key)
    if target is None:
        return ""
    met = value >= target if key == "recall_at_10" else value <= target
    sign = "≥" if key == "recall_at_10" else ("<" if key.endswith("_s") else "≤")
    return f"target {sign} {target:g}: {'met' if met else 'MISSED'}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=77)
    parser.add_argument("--labels", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--recall-queries", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=None, help="kept, reused (default: a temporary one)")
    parser.add_argument("--skip", default="", help="steps to skip: index,similar,memory")
    parser.add_argument("--database-url", default="", help="e.g. PostgreSQL (default: SQLite in --workdir)")
    args = parser.parse_args(argv)
    global DATABASE_URL
    DATABASE_URL = args.database_url
    skip = set(filter(None, args.skip.split(",")))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="labelbot-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    vectors, classes = synthetic_pool(args.records, args.dim, args.classes)
    print(f"synthetic vectors: {time.perf_counter() - started:.1f} s", flush=True)
    build_file = workdir / "build.json"
    if build_file.exists():
        figures = json.loads(build_file.read_text())
        figures["reused_build"] = True
    else:
        figures = build(workdir, vectors, classes, args.labels)
        build_file.write_text(json.dumps(figures))
        figures["reused_build"] = False
    print(f"import {figures['import_s']:.1f} s; vectors {figures['embed_rows_per_s']:,.0f} rows/s",
          flush=True)
    ids, rows = record_rows(workdir)
    probe = int(ids[len(ids) // 2])
    # Cold: no float16 files yet (removed if a previous run made them; the index file stays).
    vector_root = Path(f"{workdir / 'scale.db'}.vectors")
    for path in vector_root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".ids", ".f16"):
            path.unlink()
    figures["cold_pool_load_s"] = first_similar_s(workdir, probe)
    figures["warm_pool_load_s"] = first_similar_s(workdir, probe)
    print(f"pool load cold {figures['cold_pool_load_s']:.1f} s, warm {figures['warm_pool_load_s']:.2f} s",
          flush=True)
    if "index_build_s" not in figures and "index" not in skip:
        svc = LabelingService(settings_for(workdir))
        started = time.perf_counter()
        built = svc.update_search_index(PROJECT)
        figures["index_build_s"] = time.perf_counter() - started if built else None
        figures["index_load"] = load_average()
        svc.close()
        build_file.write_text(json.dumps({k: v for k, v in figures.items() if k != "reused_build"}))
        print(f"index build {figures['index_build_s']}", flush=True)
    if "similar" not in skip:  # without an index: the exact search the service does until it is built
        figures.update(similar_figures(workdir, vectors, ids, rows, queries=args.queries,
                                       recall_queries=args.recall_queries))
    del vectors
    if "memory" not in skip:
        figures.update(memory_figures(workdir, probe))
    figures.update(database=make_url(database_url(workdir)).get_backend_name(), records=args.records,
                   dim=args.dim, labels=args.labels, python=platform.python_version(),
                   load_average=load_average())
    print(f"\n{args.records:,} records x {args.dim} dims, {args.labels:,} labels — {figures['load_average']}")
    for key in ("import_s", "embed_rows_per_s", "cold_pool_load_s", "warm_pool_load_s", "index_build_s",
                "similar_p50_ms", "similar_p95_ms", "recall_at_10", "retrain_cold_s", "retrain_warm_s",
                "pss_gb"):
        if figures.get(key) is not None:
            print(f"  {key:<20} {figures[key]:>12,.3f}  {verdict(key, figures[key])}")
    for p in figures.get("processes", []):
        print(f"    {p['role']:<6} pid {p['pid']}: PSS {p['pss_mb']:,.0f} MB (RSS {p['rss_mb']:,.0f} MB)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "scale.json"  # one entry per size
    previous = json.loads(out.read_text()) if out.exists() else {}
    key = str(args.records) + ("" if figures["database"] == "sqlite" else f"-{figures['database']}")
    merged = {**previous.get(key, {}), **figures}  # a run skipping steps keeps their figures
    out.write_text(json.dumps({**previous, key: merged}, indent=2))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
