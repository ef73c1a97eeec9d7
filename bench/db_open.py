"""How long ``create_db_engine`` takes: on a database already at the newest schema (what every process
and every test does), on a brand-new file, and (when ``core.migrations`` exists) on a database made by
release 5609fa7 that it upgrades. Also the import cost of ``core.store`` in a fresh interpreter.

    .venv/bin/python bench/db_open.py              # 200 opens of an up-to-date SQLite file
    .venv/bin/python bench/db_open.py --opens 500
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ms(seconds: list[float]) -> str:
    p90 = sorted(seconds)[int(len(seconds) * 0.9)]
    return f"median {statistics.median(seconds) * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opens", type=int, default=200)
    args = parser.parse_args()
    imports = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", "import time; t = time.perf_counter(); import core.store; "
             "print(time.perf_counter() - t)"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        imports.append(float(out.stdout))
    print(f"import core.store (fresh interpreter, 5 runs): {_ms(imports)}")

    from core.store import create_db_engine

    with tempfile.TemporaryDirectory() as tmp:
        fresh = []
        for i in range(20):
            t = time.perf_counter()
            create_db_engine(f"sqlite:///{tmp}/fresh{i}.db").dispose()
            fresh.append(time.perf_counter() - t)
        print(f"create_db_engine on a new file (20 files): {_ms(fresh)}")
        url = f"sqlite:///{tmp}/fresh0.db"
        opens = []
        for _ in range(args.opens):
            t = time.perf_counter()
            engine = create_db_engine(url)
            opens.append(time.perf_counter() - t)
            engine.dispose()
        print(f"create_db_engine on an up-to-date file ({args.opens} opens): {_ms(opens)}")
        schema = ROOT / "tests" / "data" / "schema_5609fa7.sqlite.sql"
        if schema.exists():
            import sqlite3

            old = []
            for i in range(20):
                path = f"{tmp}/old{i}.db"
                with sqlite3.connect(path) as con:
                    con.executescript(schema.read_text())
                t = time.perf_counter()
                create_db_engine(f"sqlite:///{path}").dispose()
                old.append(time.perf_counter() - t)
            print(f"create_db_engine upgrading a 5609fa7 database (20 files): {_ms(old)}")


if __name__ == "__main__":
    main()
