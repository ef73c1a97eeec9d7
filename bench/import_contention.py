"""How long a labeler's answer waits for SQLite's write lock while another process imports a big file
or embeds it.

This process answers cards in a loop (``record_answer``: the transaction a click commits before its
ack) while a child process imports ``--records`` new records into another project of the same
database (the CLI beside ``labelbot serve``), or, with ``--job embed``, runs the embedding job over
them (records imported first; the hashing embedder commits batches far faster than a real model, so
this is the worst case). Prints the slowest and the p99 answer commit meanwhile, and the job's time.

    .venv/bin/python bench/import_contention.py                  # 100,000 records
    .venv/bin/python bench/import_contention.py --records 20000 --job embed
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import Settings
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService


def service(db: Path) -> LabelingService:
    settings = Settings(_env_file=None, database_url=f"sqlite:///{db}", retrain_every=0,  # type: ignore[call-arg]
                        embedding_model="hashing-64")
    return LabelingService(settings, embedder=HashingEmbedder(64))


def big_rows(records: int) -> list[ImportRow]:
    return [ImportRow(line=i, external_id=f"b{i}", text=f"text number {i}") for i in range(records)]


def importer(db: Path, records: int, job: str) -> None:
    svc = service(db)
    started = time.perf_counter()
    if job == "embed":
        svc.embed("big")
    else:
        svc.import_rows("big", big_rows(records), embed=False)
    print(f"{job} of {records:,} records: {time.perf_counter() - started:.2f} s", flush=True)
    svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--job", choices=["import", "embed"], default="import")
    parser.add_argument("--import-into", type=Path, help=argparse.SUPPRESS)  # the child's role
    args = parser.parse_args()
    if args.import_into:
        importer(args.import_into, args.records, args.job)
        return
    with tempfile.TemporaryDirectory(prefix="labelbot-contention-") as tmp:
        db = Path(tmp) / "contention.db"
        svc = service(db)
        svc.create_project("big", ["a", "b"])
        svc.create_project("p", ["a", "b"])
        svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=f"t {i}") for i in range(3000)])
        cards = svc.next_records("p", "labeler", 3000)
        if args.job == "embed":
            svc.import_rows("big", big_rows(args.records), embed=False)
        child = subprocess.Popen(
            [sys.executable, __file__, "--records", str(args.records), "--job", args.job,
             "--import-into", str(db)]
        )
        waits: list[float] = []
        while child.poll() is None:
            card = cards[len(waits) % len(cards)]
            label = "ab"[(len(waits) // len(cards)) % 2]  # a changed answer: always a write
            started = time.perf_counter()
            svc.record_answer("p", card.record_id, "labeler", label)
            waits.append(time.perf_counter() - started)
        svc.close()
    ms = np.asarray(waits) * 1000
    print(f"{len(ms):,} answers during the {args.job}: commit p50 {np.percentile(ms, 50):.1f} ms, "
          f"p99 {np.percentile(ms, 99):.1f} ms, slowest {ms.max():.0f} ms "
          f"(2 CPUs, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
