"""Developer commands for the migrations (see the package docstring).

    python -m core.migrations revision "add record.priority"   # autogenerate the next revision
    python -m core.migrations revision --empty "backfill x"     # an empty one to write by hand
    python -m core.migrations current sqlite:///labelbot.db
    python -m core.migrations upgrade sqlite:///labelbot.db      # what opening it does anyway
    python -m core.migrations downgrade sqlite:///labelbot.db 0001
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from alembic import command

from core.migrations import current_revision, head_revision, runner
from core.store import create_db_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.migrations", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write the next revision: models vs. migrations at head")
    revision.add_argument("message")
    revision.add_argument("--empty", action="store_true", help="no autogenerate: write the steps by hand")
    for name in ("current", "upgrade", "downgrade"):
        sub = commands.add_parser(name)
        sub.add_argument("url")
        if name == "downgrade":
            sub.add_argument("revision")
    args = parser.parse_args(argv)

    if args.command == "revision":
        next_id = f"{int(head_revision()) + 1:04d}"
        with tempfile.TemporaryDirectory() as tmp:
            # Autogenerate compares the models with a database at head: a new SQLite file made by the
            # migrations. Check the result against PostgreSQL too (the test suite's PostgreSQL pass).
            engine = create_db_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
            with engine.connect() as conn:
                script = command.revision(
                    runner.config(conn), message=args.message, autogenerate=not args.empty, rev_id=next_id
                )
            engine.dispose()
        path = script[0].path if isinstance(script, list) else script.path  # type: ignore[union-attr]
        print(f"wrote {path}: read it, then run tests/test_migrations.py")
    elif args.command == "current":
        engine = create_db_engine(args.url, upgrade=False)
        current = current_revision(engine) or "none (a new database, or one made before migrations)"
        print(f"{current} (head: {head_revision()})")
    elif args.command == "upgrade":
        create_db_engine(args.url).dispose()
        print(f"at {head_revision()}")
    else:
        engine = create_db_engine(args.url, upgrade=False)
        runner.downgrade(engine, args.revision)
        print(f"at {current_revision(engine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
