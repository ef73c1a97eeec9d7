"""Time loading a 100k-record project's embeddings from SQLite at start-up (the service's ``_pool`` path).

Builds the project once through ``LabelingService.import_rows`` (synthetic vectors, see bench/speed.py),
then, ``--repeats`` times, opens a fresh service on the existing database and times

* ``_pool``: the SELECT of every vector plus building the in-memory matrix and id index, and
* the first ``similar()`` call, which a user would wait for after a restart (pool load + search).

    .venv/bin/python bench/load_embeddings.py       # ~30 s; writes bench/results/load_embeddings.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import PROJECT, PrecomputedEmbedder, bench_settings, build_project, synthetic_pool

from core.service import LabelingService

RESULTS = Path(__file__).resolve().parent / "results"


def time_loads(db_path: Path, embedder: PrecomputedEmbedder, repeats: int) -> dict[str, list[float]]:
    pool_s, similar_s = [], []
    for _ in range(repeats):
        svc = LabelingService(bench_settings(db_path), embedder=embedder)
        try:
            info = svc.get_project(PROJECT)
            started = time.perf_counter()
            pool = svc._pool(info)  # the start-up path every model- or similarity-using call goes through
            pool_s.append(time.perf_counter() - started)
            assert pool.vectors.shape == embedder.vectors.shape
        finally:
            svc.close()
        svc = LabelingService(bench_settings(db_path), embedder=embedder)
        try:
            started = time.perf_counter()
            hits = svc.similar(PROJECT, record_id=1, k=10)
            similar_s.append(time.perf_counter() - started)
            assert len(hits) == 10
        finally:
            svc.close()
    return {"pool": pool_s, "first_similar": similar_s}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "load_embeddings.json")
    args = parser.parse_args(argv)

    vectors, classes = synthetic_pool(args.records, args.dim, 77)
    embedder = PrecomputedEmbedder(vectors)
    with tempfile.TemporaryDirectory(prefix="labelbot-load-") as tmp:
        db_path = Path(tmp) / "load.db"
        build_s = build_project(db_path, vectors, classes, n_labels=0, n_classes=77)
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
        times = time_loads(db_path, embedder, args.repeats)

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.records:,} records x {args.dim} dims (float32 blobs), database {size_mb:.0f} MiB, "
          f"built in {build_s:.1f} s")
    print(f"fresh service, _pool() load:       median {median['pool']:.3f} s  "
          f"(runs: {', '.join(f'{t:.3f}' for t in times['pool'])})")
    print(f"fresh service, first similar():    median {median['first_similar']:.3f} s  "
          f"(runs: {', '.join(f'{t:.3f}' for t in times['first_similar'])})")
    result = {
        "records": args.records, "dim": args.dim, "repeats": args.repeats, "db_mib": round(size_mb, 1),
        "pool_load_median_s": round(median["pool"], 4),
        "first_similar_median_s": round(median["first_similar"], 4),
        "runs_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "build_s": round(build_s, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_average_1m": os.getloadavg()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
