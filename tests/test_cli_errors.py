"""Every failure a CLI user can meet is one line on stderr and a non-zero exit, never a traceback (issue 12).

The database and export cases run the real command in a subprocess: only there would a traceback
reach stderr the way a user sees it. The others go through typer's CliRunner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from core.errors import DatabaseUnavailable
from core.store import create_db_engine
from tests.conftest import use_cli_environment

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cli_environment(tmp_path, monkeypatch)


def labelbot(*args: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command as a user does, in its own process (the test's environment, another database)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if database is not None:
        env["LABELBOT_DATABASE_URL"] = database
    return subprocess.run(
        [sys.executable, "-c", "from bot.cli import app; app()", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def refused(*args: str) -> str:
    result: Result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    return one_line_error(result.stderr)


def make_project(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id,text\nr1,hello there\nr2,buy cheap pills now\n", encoding="utf-8")
    assert runner.invoke(app, ["init", "P", "--labels", "spam,ham"]).exit_code == 0
    assert runner.invoke(app, ["import", "P", str(tmp_path / "data.csv")]).exit_code == 0


# ------------------------------------------------------------------ the database cannot be opened


@pytest.mark.parametrize("command", [["projects"], ["status", "P"]])
def test_database_in_a_missing_directory(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    done = labelbot(*command, database=f"sqlite:///{missing / 'x.db'}")
    assert done.returncode != 0
    line = one_line_error(done.stderr)
    assert f"Cannot open the database at sqlite:///{missing / 'x.db'}" in line
    assert f"the directory {missing} does not exist" in line
    assert not (tmp_path / "no").exists()


def test_database_that_is_a_text_file_is_left_as_it_was(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n" * 100, encoding="utf-8")
    before = notes.read_bytes()
    done = labelbot("projects", database=f"sqlite:///{notes}")
    assert done.returncode != 0
    line = one_line_error(done.stderr)
    assert f"Cannot open the database at sqlite:///{notes}: file is not a database" in line
    assert notes.read_bytes() == before


def test_postgres_where_nothing_listens_names_the_server_without_the_password() -> None:
    done = labelbot("projects", database="postgresql+psycopg://u:s3cret@127.0.0.1:1/x")
    assert done.returncode != 0
    line = one_line_error(done.stderr)
    assert "Cannot open the database at postgresql+psycopg://u:***@127.0.0.1:1/x:" in line
    assert "s3cret" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("url", "reason"),
    [("not a url", "not a database URL"), ("nosuchdb://h/x", "no driver for it")],
)
def test_unusable_database_url(url: str, reason: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=reason):
        create_db_engine(url)
    line = refused_with_database(url)
    assert reason in line


def refused_with_database(url: str) -> str:
    result = runner.invoke(app, ["projects"], env={"LABELBOT_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    return one_line_error(result.stderr)


# ------------------------------------------------------------------ export (and the chart) cannot be written


def test_export_into_a_missing_directory_in_a_real_process(tmp_path: Path) -> None:
    make_project(tmp_path)
    before = sorted(tmp_path.iterdir())
    done = labelbot("export", "P", "-o", str(tmp_path / "missing" / "x.csv"))
    assert done.returncode != 0
    line = one_line_error(done.stderr)
    missing = tmp_path / "missing"
    assert f"Cannot write {missing / 'x.csv'}: the directory {missing} does not exist" in line
    assert sorted(tmp_path.iterdir()) == before


def test_export_onto_a_directory_leaves_it_alone(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "out").mkdir()
    line = refused("export", "P", "-o", str(tmp_path / "out"))
    assert f"Cannot write {tmp_path / 'out'}: it is a directory" in line
    assert list((tmp_path / "out").iterdir()) == []
    assert not list(tmp_path.glob(".out.*"))


def test_export_under_a_regular_file(tmp_path: Path) -> None:
    """Fails for root as well (unlike a chmod 000 directory)."""
    make_project(tmp_path)
    (tmp_path / "plain").write_text("a file\n", encoding="utf-8")
    line = refused("export", "P", "-o", str(tmp_path / "plain" / "x.csv"))
    plain = tmp_path / "plain"
    assert f"Cannot write {plain / 'x.csv'}: {plain} is a file, not a directory" in line
    assert (tmp_path / "plain").read_text(encoding="utf-8") == "a file\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_export_into_a_directory_without_write_permission(tmp_path: Path) -> None:
    make_project(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = refused("export", "P", "-o", str(locked / "x.csv"))
    finally:
        locked.chmod(0o700)
    assert f"Cannot write {locked / 'x.csv'}: permission denied" in line
    assert list(locked.iterdir()) == []


def test_export_keeps_an_existing_file_when_it_fails(tmp_path: Path) -> None:
    """An export that fails part-way (here: a full disk) leaves the earlier export as it was."""
    make_project(tmp_path)
    target = tmp_path / "labels.csv"
    target.write_text("the earlier export\n", encoding="utf-8")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        line = refused("export", "P", "-o", str(target))
    assert f"Cannot write {target}: No space left on device" in line
    assert target.read_text(encoding="utf-8") == "the earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".labels")) == []


@pytest.mark.parametrize("where", ["missing/chart.png", "adir"])
def test_status_chart_that_cannot_be_written(tmp_path: Path, where: str) -> None:
    make_project(tmp_path)
    (tmp_path / "adir").mkdir()
    line = refused("status", "P", "--plot", str(tmp_path / where))
    assert line.startswith(f"error: Cannot write {tmp_path / where}: ")


# ------------------------------------------------------------------ counts of zero


def test_init_with_zero_answers_per_record_is_refused_like_configure(tmp_path: Path) -> None:
    make_project(tmp_path)
    line = refused("init", "Q", "--labels", "a,b", "--answers-per-record", "0")
    assert line == refused("configure", "P", "--answers-per-record", "0")
    assert "answers_per_record must be between 1 and 50" in line
    names = [line.split()[0] for line in runner.invoke(app, ["projects"]).stdout.splitlines()]
    assert names == ["P"]


@pytest.mark.parametrize(
    ("command", "option"),
    [(["next", "P", "-n", "0"], "-n"), (["next", "P", "-n", "-2"], "-n"),
     (["review", "P", "-n", "0"], "-n"), (["similar", "P", "hello", "-k", "0"], "-k")],
)
def test_a_count_below_one_is_refused(tmp_path: Path, command: list[str], option: str) -> None:
    make_project(tmp_path)
    line = refused(*command)
    assert f"{option} must be at least 1" in line
    assert "Nothing" not in line
