"""The `labelbot` command: a thin client of ``core.LabelingService`` (and the wiring for the bot)."""

from __future__ import annotations

import functools
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from core import io
from core.config import load_settings
from core.errors import LabelbotError
from core.service import LabelingService
from core.types import LabelDef, ProjectStatus

app = typer.Typer(
    help="labelbot: label text data together, driven by active learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """Turn LabelbotError into one clear line on stderr and exit status 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LabelbotError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _service() -> LabelingService:
    return LabelingService(load_settings())


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "cli"


UserOption = Annotated[str, typer.Option("--user", "-u", help="Who is answering (default: your login name).")]


@app.command()
@_friendly
def init(
    project: Annotated[str, typer.Argument(help="Project name.")],
    labels: Annotated[str | None, typer.Option(help='Comma-separated labels, e.g. "spam,ham".')] = None,
    labels_file: Annotated[
        Path | None, typer.Option(help="YAML or JSON file with label names and descriptions.")
    ] = None,
    answers_per_record: Annotated[int | None, typer.Option(help="Answers needed per record (crowd).")] = None,
    strategy: Annotated[str | None, typer.Option(help="Query strategy (default margin-kmeans).")] = None,
) -> None:
    """Create a project with its label set."""
    if (labels is None) == (labels_file is None):
        raise LabelbotError("Give the labels with exactly one of --labels or --labels-file.")
    defs: list[LabelDef] = (
        io.parse_label_list(labels) if labels is not None else io.read_label_set(labels_file)
    )
    info = _service().create_project(project, defs, answers_per_record=answers_per_record, strategy=strategy)
    console.print(
        f"Created project [bold]{info.name}[/bold] with {len(info.labels)} labels.", highlight=False
    )


@app.command("projects")
@_friendly
def list_projects() -> None:
    """List projects."""
    infos = _service().list_projects()
    if not infos:
        console.print("No projects yet. Create one with `labelbot init NAME --labels a,b`.")
    for info in infos:
        console.print(
            f"{info.name}\t{len(info.labels)} labels\tk={info.answers_per_record}\t{info.strategy}",
            highlight=False,
            markup=False,
        )


@app.command("import")
@_friendly
def import_(
    project: str,
    file: Annotated[Path, typer.Argument(help="CSV, TSV or JSONL (UTF-8).")],
    text_column: Annotated[str, typer.Option(help="Column with the text.")] = "text",
    id_column: Annotated[
        str | None, typer.Option(help="Column with a unique id (default: id, else row numbers).")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Column with existing labels (become annotations).")
    ] = None,
    annotator_column: Annotated[
        str | None, typer.Option(help="Long-format crowd answers: who answered.")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="csv, tsv or jsonl (default: from the extension).")
    ] = None,
) -> None:
    """Import records (and optional labels). Re-importing known ids changes nothing."""
    service = _service()
    with _progress() as progress:
        task = progress.add_task("Embedding", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = service.import_file(
            project,
            file,
            text_column=text_column,
            id_column=id_column or "id",
            label_column=label_column,
            annotator_column=annotator_column,
            id_column_required=id_column is not None,
            fmt=format,
            progress=report,
        )
    console.print(
        f"Imported {result.rows} rows from {result.path}: {result.new_records} new records, "
        f"{result.existing_records} already known, {result.annotations} answers.",
        highlight=False,
        markup=False,
    )
    if result.new_records or result.annotations:
        run = service.retrain(project)
        _print_run(run)


@app.command()
@_friendly
def export(
    project: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the extension).")
    ] = None,
) -> None:
    """Export one row per record: id, text, final label, answers, the model's guess and probability."""
    result = _service().export(project, output, fmt=format)
    console.print(
        f"Wrote {result.rows} records to {result.path} ({result.format}).", highlight=False, markup=False
    )


@app.command("next")
@_friendly
def next_(
    project: str,
    n: Annotated[int, typer.Option("-n", help="How many records.")] = 1,
    user: UserOption = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Show the next records to label (most informative first)."""
    records = _service().next_records(project, user or _default_user(), n)
    if not records:
        console.print("Nothing left to label for you in this project.")
    for record in records:
        if as_json:
            print(
                json.dumps(
                    {
                        "id": record.external_id,
                        "text": record.text,
                        "guess": record.predicted_label,
                        "confidence": record.confidence,
                        "reason": record.reason,
                    },
                    ensure_ascii=False,
                )
            )
            continue
        guess = (
            f"{record.predicted_label} ({record.confidence:.0%})"
            if record.predicted_label
            else "no model yet"
        )
        console.print(f"[bold]{record.external_id}[/bold]  [dim]{record.reason}; guess: {guess}[/dim]")
        console.print(record.text, markup=False, highlight=False)


@app.command()
@_friendly
def answer(project: str, record_id: str, label: str, user: UserOption = "") -> None:
    """Label a record (by the id from the imported file)."""
    service = _service()
    record = service.find_record(project, record_id)
    result = service.record_answer(project, record.record_id, user or _default_user(), label, source="cli")
    state = "saved" if result.changed else "unchanged"
    console.print(f"{record_id}: {label} ({state}).", highlight=False, markup=False)


@app.command()
@_friendly
def skip(project: str, record_id: str, user: UserOption = "") -> None:
    """Skip a record: you won't be asked about it again."""
    service = _service()
    service.skip(project, service.find_record(project, record_id).record_id, user or _default_user())
    console.print(f"Skipped {record_id}.", highlight=False, markup=False)


@app.command()
@_friendly
def undo(project: str, user: UserOption = "") -> None:
    """Remove your latest answer."""
    result = _service().undo(project, user or _default_user())
    console.print(
        f"Removed your answer {result.label!r} to {result.external_id}.", highlight=False, markup=False
    )


@app.command()
@_friendly
def similar(
    project: str,
    text: Annotated[str, typer.Argument(help="Free text, or a record id with --record.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.")] = 10,
    record: Annotated[bool, typer.Option("--record", help="TEXT is a record id.")] = False,
) -> None:
    """Records nearest to a text (or record) by cosine similarity."""
    service = _service()
    if record:
        hits = service.similar(project, record_id=service.find_record(project, text).record_id, k=k)
    else:
        hits = service.similar(project, text=text, k=k)
    table = Table("score", "id", "label", "guess", "text")
    for hit in hits:
        table.add_row(
            f"{hit.score:.3f}", hit.external_id, hit.label or "", hit.predicted_label or "", hit.text[:100]
        )
    console.print(table)


@app.command()
@_friendly
def retrain(project: str) -> None:
    """Train the classifier on the labels so far and re-rank the queue."""
    _print_run(_service().retrain(project))


@app.command()
@_friendly
def status(
    project: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    annotators: Annotated[bool, typer.Option("--annotators", help="Per-annotator figures.")] = False,
) -> None:
    """Progress, per-label counts, model quality and top labelers."""
    result = _service().status(project)
    if as_json:
        print(json.dumps(_status_dict(result), ensure_ascii=False, indent=2))
        return
    _print_status(result, all_annotators=annotators)


@app.command()
@_friendly
def configure(
    project: str,
    answers_per_record: Annotated[int | None, typer.Option(help="Answers needed per record.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Query strategy.")] = None,
) -> None:
    """Change a project's settings."""
    info = _service().configure_project(project, answers_per_record=answers_per_record, strategy=strategy)
    console.print(
        f"{info.name}: answers_per_record={info.answers_per_record}, strategy={info.strategy}",
        highlight=False,
        markup=False,
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=not sys.stderr.isatty(),
    )


def _print_run(run: Any) -> None:
    if run is None:
        console.print(
            "Not enough labels to train yet (need two labels in use): the queue uses the cold-start strategy."
        )
        return
    metrics = (
        ", ".join(f"{k} {v:.3f}" for k, v in run.metrics.items()) or "too few labels for cross-validation"
    )
    console.print(
        f"Trained on {run.n_labels} labels in {run.duration_seconds:.2f} s: {metrics}.",
        highlight=False,
        markup=False,
    )


def _status_dict(status: ProjectStatus) -> dict[str, Any]:
    run = status.latest_run
    return {
        "project": status.project,
        "total": status.total,
        "labeled": status.labeled,
        "annotations": status.annotations,
        "remaining": status.remaining,
        "label_counts": status.label_counts,
        "agreement": status.agreement,
        "annotators": [a.__dict__ for a in status.annotators],
        "latest_run": None
        if run is None
        else {
            "n_labels": run.n_labels,
            "metrics": run.metrics,
            "created_at": run.created_at.isoformat(),
            "strategy": run.strategy,
        },
    }


def _print_status(status: ProjectStatus, *, all_annotators: bool) -> None:
    console.print(
        f"[bold]{status.project}[/bold]: {status.labeled}/{status.total} labeled "
        f"({status.progress:.0%}), {status.remaining} need answers, {status.annotations} answers.",
        highlight=False,
    )
    counts = Table("label", "records")
    for label, count in sorted(status.label_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        counts.add_row(label, str(count))
    console.print(counts)
    run = status.latest_run
    if run is not None:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in run.metrics.items()) or "no cross-validation yet"
        console.print(
            f"Model: {run.n_labels} labels, {metrics} ({run.created_at:%Y-%m-%d %H:%M} UTC)",
            highlight=False,
            markup=False,
        )
    if "krippendorff_alpha" in status.agreement:
        console.print(f"Agreement: Krippendorff's alpha {status.agreement['krippendorff_alpha']:.3f}")
    people = Table("annotator", "answers", "median s/answer", "agreement", "est. accuracy")
    shown = status.annotators if all_annotators else status.annotators[:10]
    for a in shown:
        people.add_row(
            a.user,
            str(a.answers),
            "" if a.median_seconds is None else f"{a.median_seconds:.1f}",
            "" if a.agreement is None else f"{a.agreement:.0%}",
            "" if a.estimated_accuracy is None else f"{a.estimated_accuracy:.0%}",
        )
    if shown:
        console.print(people)


def main() -> None:  # pragma: no cover - console entry point alias
    app()


@app.command()
@_friendly
def serve(
    http: Annotated[
        bool, typer.Option("--http", help="Serve HTTP even when SLACK_APP_TOKEN is set.")
    ] = False,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 3000 or LABELBOT_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP host (default 127.0.0.1 or LABELBOT_HOST).")] = None,
) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP at /slack/events."""
    import logging
    import threading

    from bot.app import create_app
    from bot.server import EVENTS_PATH, SlackHTTPServer
    from bot.settings import load_bot_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bot_settings = load_bot_settings()
    transport = bot_settings.transport(force_http=http)
    bot_settings.check(transport)
    service = LabelingService(load_settings(), background=True)
    # Load the embedding model now, off the request threads, so the first search is not slow.
    threading.Thread(target=lambda: service.embedder.encode(["warm up"]), daemon=True).start()
    slack_app = create_app(bot_settings, service)
    try:
        if transport == "socket":
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            console.print("labelbot is connecting to Slack over Socket Mode.")
            SocketModeHandler(slack_app, bot_settings.slack_app_token).start()
        else:
            server = SlackHTTPServer(
                slack_app, host or bot_settings.http_host, port or bot_settings.http_port
            )
            console.print(f"labelbot listens on {server.url}{EVENTS_PATH}", highlight=False)
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
