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
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bot.cli_errors import OneLineUsageErrors
from core import io
from core.config import load_settings
from core.errors import LabelbotError, OutputFileError
from core.service import LabelingService
from core.settings_errors import invalid_settings
from core.types import LabelDef, ProjectStatus, RuleInfo

app = typer.Typer(
    help="labelbot: label text data together, driven by active learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,
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
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True,
                              soft_wrap=True)
            raise typer.Exit(1) from None
        except ValidationError as exc:  # a LABELBOT_* value of the wrong type or range
            settings_class = _settings_classes().get(exc.title)
            if settings_class is None:
                raise
            err_console.print(
                f"[red]error:[/red] {escape(str(invalid_settings(exc, settings_class)))}",
                highlight=False, markup=True, soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _settings_classes() -> dict[str, type[BaseSettings]]:
    """The settings classes a command reads, by the name pydantic's errors carry (``exc.title``)."""
    from bot.scheduler import SchedulerSettings
    from bot.settings import BotSettings
    from core.config import Settings

    return {cls.__name__: cls for cls in (Settings, BotSettings, SchedulerSettings)}


def _service() -> LabelingService:
    return LabelingService(load_settings())


def _check_count(option: str, value: int) -> None:
    """A count of 0 or less is a mistake, not a request for nothing (it would read as "nothing left")."""
    if value < 1:
        raise LabelbotError(f"{option} must be at least 1 (got {value}).")


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
    strategy: Annotated[
        str | None,
        typer.Option(help="Query strategy (default margin-kmeans; max-uncertainty-kmeans when multi-label)."),
    ] = None,
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label",
            help="Each answer is a set of labels, possibly empty (or multi_label: true in the labels file).",
        ),
    ] = False,
) -> None:
    """Create a project with its label set."""
    if (labels is None) == (labels_file is None):
        raise LabelbotError("Give the labels with exactly one of --labels or --labels-file.")
    defs: list[LabelDef] = (
        io.parse_label_list(labels) if labels is not None else io.read_label_set(labels_file)
    )
    multi_label = multi_label or (labels_file is not None and io.label_set_is_multi_label(labels_file))
    info = _service().create_project(
        project, defs, answers_per_record=answers_per_record, strategy=strategy, multi_label=multi_label
    )
    kind = " (multi-label)" if info.multi_label else ""
    console.print(
        f"Created project [bold]{info.name}[/bold]{kind} with {len(info.labels)} labels.", highlight=False
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
            f"{info.name}\t{len(info.labels)} labels{' (multi-label)' if info.multi_label else ''}"
            f"\tk={info.answers_per_record}\t{info.strategy}"
            f"\tgold_rate={info.gold_rate:g}",
            highlight=False,
            markup=False,
        )


#: `labelbot import` embeds this many new records before returning (about a minute on 2 cores); more
#: are left to the embedding job, so a large import returns in seconds.
EMBED_NOW_UP_TO = 20_000


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
    embed: Annotated[
        bool | None,
        typer.Option(
            "--embed/--no-embed", help="Embed the new records now (default: when there are up to 20,000)."
        ),
    ] = None,
) -> None:
    """Import records (and optional labels). Re-importing known ids changes nothing.

    Up to 20,000 new records are embedded right away; more are left to the embedding job
    (`labelbot serve`, or `labelbot embed PROJECT` to watch it): records without a vector are not
    handed out until they have one.
    """
    service = _service()
    result = service.import_file(
        project,
        file,
        text_column=text_column,
        id_column=id_column or "id",
        label_column=label_column,
        annotator_column=annotator_column,
        id_column_required=id_column is not None,
        fmt=format,
        embed=False,
    )
    console.print(
        f"Imported {result.rows} rows from {result.path}: {result.new_records} new records, "
        f"{result.existing_records} already known, {result.annotations} answers.",
        highlight=False,
        markup=False,
    )
    for note in result.notes():
        console.print(note, highlight=False, markup=False)
    if embed is None:
        embed = service.embedding_status(project).missing <= EMBED_NOW_UP_TO
    if embed:
        _embed_with_progress(service, project)
    else:
        status = service.embedding_status(project)
        console.print(
            f"{status.missing:,} records need a vector: `labelbot serve` embeds them in the background, "
            f"or run `labelbot embed {project}` (resumable).",
            highlight=False,
            markup=False,
        )
    if result.new_records or result.annotations:
        run = service.retrain(project)
        _print_run(run)


@app.command()
@_friendly
def embed(
    project: str,
    model: Annotated[
        str | None,
        typer.Option(help="Move the project to this sentence-transformers model (a name or a path)."),
    ] = None,
) -> None:
    """Give every record a vector (resumable: stopped or killed, it goes on where it was).

    With --model, the project moves to that model once every record has a vector for it; until then
    hand-out and Show similar use the old vectors.
    """
    service = _service()
    result = _embed_with_progress(service, project, model=model)
    if result.switched:
        console.print(f"{project} now uses {result.model}; the queue was ranked again.", markup=False)
    status = service.embedding_status(project)
    console.print(
        f"{status.project}: {status.with_vectors:,} records with vectors for "
        f"{status.target or status.model}, {status.missing:,} missing.",
        highlight=False,
        markup=False,
    )


def _embed_with_progress(service: Any, project: str, *, model: str | None = None) -> Any:
    with _progress() as progress:
        task = progress.add_task("Embedding", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return service.embed(project, model=model, progress=report)


@app.command()
@_friendly
def export(
    project: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the extension).")
    ] = None,
) -> None:
    """Export one row per record: id, text, final label, answers, agreement, tie, the model's guess."""
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
    _check_count("-n", n)
    service = _service()
    records = service.next_records(project, user or _default_user(), n)
    if not records:
        waiting = service.embedding_status(project).missing
        console.print(
            f"Nothing to label yet: {waiting:,} records are waiting for their vectors "
            f"(`labelbot embed {project}`, or `labelbot serve` embeds them)."
            if waiting
            else "Nothing left to label for you in this project.",
            highlight=False,
            markup=False,
        )
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
def answer(
    project: str,
    record_id: str,
    label: Annotated[
        str, typer.Argument(help='The label; multi-label: the set joined by "|" ("" for none of these).')
    ],
    user: UserOption = "",
) -> None:
    """Label a record (by the id from the imported file)."""
    service = _service()
    record = service.find_record(project, record_id)
    result = service.record_answer(project, record.record_id, user or _default_user(), label, source="cli")
    state = "saved" if result.changed else "unchanged"
    shown = result.label or "(none of these)"  # a multi-label project's empty set
    console.print(f"{record_id}: {shown} ({state}).", highlight=False, markup=False)


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
    _check_count("-k", k)
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
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also write the learning-curve chart (PNG) to this file.")
    ] = None,
) -> None:
    """Progress, per-label counts, model quality and top labelers."""
    service = _service()
    result = service.status(project)
    if plot is not None:
        _write_plot(service, result, plot)
    if as_json:
        print(json.dumps(_status_dict(result), ensure_ascii=False, indent=2))
        return
    _print_status(result, all_annotators=annotators)
    if result.rules:
        _print_rules(result.rules)
    vectors = service.embedding_status(project)
    if vectors.missing or vectors.target:
        moving = f", moving to {vectors.target}" if vectors.target else ""
        console.print(
            f"Embedding ({vectors.model}{moving}): {vectors.missing:,} records still need a vector; "
            "they are handed out once they have one.",
            highlight=False,
            markup=False,
        )
    waiting, given_up = service.delivery_counts(project)
    if waiting or given_up:  # the outbox (docs/reliability.md): what Slack has not taken yet
        console.print(
            f"Card deliveries: {waiting:,} waiting for Slack, {given_up:,} given up.",
            highlight=False,
        )


@app.command()
@_friendly
def configure(
    project: str,
    answers_per_record: Annotated[int | None, typer.Option(help="Answers needed per record.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Query strategy.")] = None,
    extra_answer_on_disagreement: Annotated[
        bool | None,
        typer.Option(
            "--extra-answer-on-disagreement/--no-extra-answer-on-disagreement",
            help="Send a tie to one more labeler before it goes to review.",
        ),
    ] = None,
    gold_rate: Annotated[
        float | None,
        typer.Option(
            help="Share of each labeler's cards that are gold questions (records with a gold label), "
            "0 to 0.5; 0 turns them off.",
        ),
    ] = None,
) -> None:
    """Change a project's settings."""
    info = _service().configure_project(
        project,
        answers_per_record=answers_per_record,
        strategy=strategy,
        extra_answer_on_disagreement=extra_answer_on_disagreement,
        gold_rate=gold_rate,
    )
    console.print(
        f"{info.name}: answers_per_record={info.answers_per_record}, strategy={info.strategy}, "
        f"extra_answer_on_disagreement={info.extra_answer_on_disagreement}, gold_rate={info.gold_rate:g}",
        highlight=False,
        markup=False,
    )


class _RateColumn(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:,.0f}/s")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
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
    console.print(
        f"Trained on {run.n_labels} labels in {run.duration_seconds:.2f} s: "
        f"{_scores(run) or 'too few labels for cross-validation'}.\nLearner: {run.learner}",
        highlight=False,
        markup=False,
    )


def _scores(run: Any) -> str:
    """The run's cross-validated scores and stability, as "cv_accuracy 0.812, cv_macro_f1 0.790"."""
    shown = ("cv_accuracy", "cv_micro_f1", "cv_macro_f1", "cv_subset_accuracy", "stability_kappa")
    return ", ".join(f"{k} {run.metrics[k]:.3f}" for k in shown if k in run.metrics)


def _status_dict(status: ProjectStatus) -> dict[str, Any]:
    run = status.latest_run
    return {
        "project": status.project,
        "total": status.total,
        "labeled": status.labeled,
        "annotations": status.annotations,
        "remaining": status.remaining,
        "ties": status.ties,
        "multi_label": status.multi_label,
        "label_counts": status.label_counts,
        "agreement": status.agreement,
        "pairs": [p.__dict__ for p in status.pairs],
        "annotators": [a.__dict__ for a in status.annotators],
        "rules": [_rule_dict(rule) for rule in status.rules],
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
        f"[bold]{status.project}[/bold]{' (multi-label)' if status.multi_label else ''}: "
        f"{status.labeled}/{status.total} labeled "
        f"({status.progress:.0%}), {status.remaining} need answers, {status.annotations} answers.",
        highlight=False,
    )
    counts = Table("label", "records")
    for label, count in sorted(status.label_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        counts.add_row(label, str(count))
    console.print(counts)
    if status.ties:
        console.print(
            f"{status.ties} {'tie' if status.ties == 1 else 'ties'} decided by annotator quality "
            "(in review: `labelbot review`, decide with `labelbot gold`).",
            highlight=False,
            markup=False,
        )
    run = status.latest_run
    if run is not None:
        console.print(
            f"Model: {run.n_labels} labels, {_scores(run) or 'no cross-validation yet'} "
            f"({run.created_at:%Y-%m-%d %H:%M} UTC)\nLearner: {run.learner}",
            highlight=False,
            markup=False,
        )
    per_label = " (mean over labels)" if status.multi_label else ""  # each label a yes/no question
    if "krippendorff_alpha" in status.agreement:
        alpha = status.agreement["krippendorff_alpha"]
        console.print(f"Agreement: Krippendorff's alpha {alpha:.3f}{per_label}")
    if status.pairs:
        kappas = Table("annotator", "annotator", f"Cohen's kappa{per_label}", "shared records")
        for pair in status.pairs if all_annotators else status.pairs[:10]:
            kappas.add_row(pair.first, pair.second, f"{pair.kappa:.3f}", str(pair.overlap))
        console.print(kappas)
    people = Table("annotator", "answers", "median s/answer", "agreement", "gold right", "est. accuracy")
    shown = status.annotators if all_annotators else status.annotators[:10]
    for a in shown:
        people.add_row(
            a.user,
            str(a.answers),
            "" if a.median_seconds is None else f"{a.median_seconds:.1f}",
            "" if a.agreement is None else f"{a.agreement:.0%}",
            (f"{a.gold_correct}/{a.gold_answers}" + (f" ({a.gold_label_accuracy:.0%} of labels)"
                                                     if a.gold_label_accuracy is not None else ""))
            if a.gold_answers else "",
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
    playground: Annotated[
        bool, typer.Option("--playground", help="Serve the local Slack playground page instead of Slack.")
    ] = False,
) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP at /slack/events."""
    import contextlib
    import logging
    import threading

    from bot.app import check_slack, create_app, freeze_startup_objects, make_client
    from bot.server import EVENTS_PATH, SlackHTTPServer, health_route
    from bot.settings import load_bot_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bot_settings = load_bot_settings()
    if playground:
        _run_playground(LabelingService(load_settings(), background=True), bot_settings, host, port, None)
        return
    transport = bot_settings.transport(force_http=http)
    bot_settings.check(transport)
    # Before any worker starts: an unreachable Slack or a refused token ends start-up with one line.
    client = make_client(bot_settings)
    check_slack(client)
    stop = _StopSignals()  # from here SIGTERM and Ctrl+C mean the same clean shutdown
    from core.embedding_job import EmbeddingWorker
    from core.trainer import ProcessTrainer

    settings = load_settings()
    # `running` stops what started, last first, however start-up or serving ends.
    with contextlib.ExitStack() as running:
        # Background retrains run in a worker process: they never hold this process's GIL
        # (docs/benchmarks.md).
        service = LabelingService(settings, background=True, trainer=ProcessTrainer(settings))
        running.callback(service.close)  # also ends the training worker
        # Load the embedding model now, off the request threads, so the first search is not slow.
        threading.Thread(target=lambda: service.embedder.encode(["warm up"]), daemon=True).start()
        # Records imported without vectors get them from a niced worker process, never on a click's path.
        running.callback(EmbeddingWorker(settings).start().stop)
        from concurrent.futures import ThreadPoolExecutor

        from bot.deliveries import delivery_client
        from bot.labeling import Labeling

        pool = ThreadPoolExecutor(bot_settings.after_ack_workers, thread_name_prefix="labelbot-listener")
        labeling = Labeling(
            service, admins=bot_settings.admins, executor=pool, client=delivery_client(client)
        )
        # The token was checked above: bolt need not call auth.test again.
        slack_app = create_app(
            bot_settings, service, client=client, token_verification=False, labeling=labeling
        )
        # Card updates and next cards owed by clicks: delivered after each ack, retried by this poller
        # (also what a replica that died still owed). Stopped after the server, so it sees its last clicks.
        running.callback(labeling.deliveries.start().stop)
        from bot.scheduler import LabelScheduler

        # Several replicas may serve one database: the lease holder runs the jobs and retrains
        # (docs/server.md).
        leadership = service.leadership().start()
        running.callback(leadership.stop)  # gives the lease to another replica at once (before the workers)
        # Retrain checks, prompts, digests; attach: /label schedule etc. find it in bolt's context.
        scheduler = LabelScheduler(
            service, slack_app.client, leadership=leadership, labeling=labeling
        ).attach(slack_app).start()
        running.callback(service.wait_for_retrains)  # the retrain in flight ends before another replica's
        running.callback(scheduler.shutdown, wait=False)
        freeze_startup_objects()
        if stop.received:  # a signal during start-up: stop before serving
            return
        if transport == "socket":
            from bot.app import socket_mode_handler

            console.print("labelbot is connecting to Slack over Socket Mode.")
            handler = socket_mode_handler(slack_app, bot_settings.slack_app_token)
            handler.connect()
            running.callback(handler.close)
        else:
            address = (host or bot_settings.http_host, port or bot_settings.http_port)
            try:
                routes = [health_route(service.database_answers, lambda: scheduler.role)]
                server = SlackHTTPServer(slack_app, *address, routes=routes).start()
            except OSError as exc:
                raise LabelbotError(
                    f"Cannot listen on {address[0]}:{address[1]} ({exc.strerror or exc}). "
                    "Pass --port or set LABELBOT_PORT."
                ) from None
            # Stops accepting, lets requests in flight finish (a few seconds), then closes.
            running.callback(server.stop)
            console.print(f"labelbot listens on {server.url}{EVENTS_PATH}", highlight=False)
        stop.wait()
        console.print("labelbot is stopping.")
    console.print("labelbot stopped.")


class _StopSignals:
    """Notes SIGTERM (`docker stop`, systemd) and SIGINT (Ctrl+C) in place of their defaults (die,
    KeyboardInterrupt), so a signal never cuts start-up or the shutdown half way; serve polls it."""

    def __init__(self) -> None:
        import signal

        self.received: list[int] = []  # list.append: no lock a handler could deadlock on
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def wait(self) -> None:
        import time

        while not self.received:
            time.sleep(0.2)  # the handler runs in this thread, during the sleep; seen within 0.2 s


# ------------------------------------------------------------------ demo and playground (issue 6)


def _run_playground(
    service: LabelingService, bot_settings: Any, host: str | None, port: int | None, project: str | None
) -> None:
    """Serve the bot with the local Slack playground page until Ctrl+C (``demo``, ``serve --playground``)."""
    import threading

    from bot.playground.demo import serve_playground

    host = host or bot_settings.http_host
    port = bot_settings.http_port if port is None else port
    # Load the embedding model now, off the request threads, so the first search is not slow.
    threading.Thread(target=lambda: service.embedder.encode(["warm up"]), daemon=True).start()

    def announce(url: str) -> None:
        console.print(
            f"\n[bold green]labelbot playground is running:[/bold green] open [bold]{url}[/bold] "
            "in your browser.",
            highlight=False,
        )
        console.print(
            "It is the real bot against a local stand-in for Slack. Switch between alice, bob, carol and "
            "admin (a labelbot admin) at the top left, then type [bold]/label next[/bold] in the message "
            "box. "
            "Ctrl+C stops it.\nTo use a real workspace instead, set SLACK_BOT_TOKEN and SLACK_APP_TOKEN "
            "(or SLACK_SIGNING_SECRET) as described in the README.\n",
            highlight=False,
        )

    try:
        serve_playground(service, host=host, port=port, project=project, admins=bot_settings.admins,
                         announce=announce)
    except OSError as exc:
        raise LabelbotError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Pass --port or set LABELBOT_PORT."
        ) from None
    finally:
        service.close()


@app.command()
@_friendly
def demo(
    port: Annotated[int | None, typer.Option(help="HTTP port (default 3000 or LABELBOT_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP host (default 127.0.0.1 or LABELBOT_HOST).")] = None,
) -> None:
    """Try labelbot: create the demo project (400 Banking77 queries) if missing, then run the bot.

    Without Slack credentials the bot runs against a local stand-in for Slack with a web page at
    http://127.0.0.1:3000/playground. With SLACK_BOT_TOKEN set it runs against Slack, as `labelbot serve`.
    The demo uses labelbot-demo.db unless LABELBOT_DATABASE_URL is set; a second run reuses it.
    """
    import logging
    import time

    from bot.playground.demo import demo_settings, ensure_demo_project, use_database
    from bot.settings import load_bot_settings

    settings = demo_settings(load_settings())
    bot_settings = load_bot_settings()
    service = LabelingService(settings, background=True)
    console.print(
        f"Database {settings.database_url}, embedding model {settings.embedding_model}.", highlight=False
    )
    started = time.perf_counter()
    try:
        with _progress() as progress:
            task = progress.add_task("Embedding the demo data", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            setup = ensure_demo_project(service, progress=report)
    except BaseException:
        service.close()
        raise
    elapsed = time.perf_counter() - started
    if setup.created or setup.new_records:
        console.print(
            f"Created the demo project [bold]{setup.project}[/bold]: {setup.new_records} customer queries "
            f"from Banking77 to label with 12 intents ({elapsed:.1f} s).",
            highlight=False,
        )
    else:
        console.print(
            f"Using the demo project [bold]{setup.project}[/bold] ({setup.total_records} records).",
            highlight=False,
        )
    if bot_settings.has_slack_credentials:
        service.close()
        use_database(settings)  # so `serve` opens the same database
        console.print("SLACK_BOT_TOKEN is set: running against Slack. In Slack, type /label next.")
        serve(http=False, port=port, host=host, playground=False)
        return
    # Warnings only: the page, not the log, is where the playground is watched.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _run_playground(service, bot_settings, host, port, setup.project)


@app.command()
@_friendly
def review(
    project: str,
    n: Annotated[int, typer.Option("-n", help="How many records.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Records to review: crowd disagreements and likely mislabels (decide with `labelbot gold`)."""
    _check_count("-n", n)
    items = _service().review_queue(project, n)
    if not items:
        console.print("Nothing to review: no disagreements or likely mislabels right now.")
    for item in items:
        if as_json:
            row = {**item.__dict__, "answers": [list(a) for a in item.answers]}
            print(json.dumps(row, ensure_ascii=False))
            continue
        answers = ", ".join(f"{who}: {label}" for who, label in item.answers) or "none"
        console.print(f"{item.external_id}  ({item.kind}) {item.reason}", markup=False, highlight=False)
        console.print(item.text, markup=False, highlight=False)
        console.print(f"  answers: {answers}", markup=False, highlight=False)


@app.command()
@_friendly
def gold(project: str, record_id: str, label: str, user: UserOption = "") -> None:
    """Set a record's gold label (an admin's review decision: it wins over the crowd's answers).

    Gold records are also gold questions: mixed into labelers' cards at the project's gold rate
    (`labelbot configure PROJECT --gold-rate`), scored on the leaderboard ("gold 9/10")."""
    service = _service()
    record = service.find_record(project, record_id)
    service.record_answer(project, record.record_id, user or _default_user(), label, source="review")
    console.print(f"{record_id}: gold label {label}.", highlight=False, markup=False)


# ------------------------------------------------------------------------------ schedules (issue 4)

schedule_app = typer.Typer(
    help="Scheduled labeling prompts and digests of a project (the jobs `labelbot serve` runs).",
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")


def _write_plot(service: LabelingService, status: ProjectStatus, path: Path) -> None:
    from core.charts import learning_curve_png  # matplotlib loads only when a chart is asked for

    png = learning_curve_png(service.run_history(status.project), status.label_counts, title=status.project)
    try:
        path.write_bytes(png)
    except OSError as exc:
        raise OutputFileError(str(path), io.output_problem(exc, path)) from None
    err_console.print(f"Wrote the learning-curve chart to {path}.", highlight=False, markup=False)


def _offline_scheduler(service: LabelingService) -> Any:
    """A paused scheduler on the project database: it edits the job store and never runs a job."""
    from bot.scheduler import LabelScheduler

    return LabelScheduler(service).start(paused=True)


def _pickup_note() -> str:
    from bot.scheduler import SchedulerSettings

    poll = SchedulerSettings().schedule_poll_seconds
    if poll <= 0:
        return "Restart `labelbot serve` to pick this up (LABELBOT_SCHEDULE_POLL_SECONDS is 0)."
    return f"A running `labelbot serve` picks this up within {poll:g} s (LABELBOT_SCHEDULE_POLL_SECONDS)."


@schedule_app.callback()
def schedule_main(
    ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project name.")]
) -> None:
    """Add, list or remove a project's prompts and digests: labelbot schedule PROJECT add|list|remove."""
    ctx.obj = {"project": project}


@schedule_app.command("add")
@_friendly
def schedule_add(
    ctx: typer.Context,
    channel: Annotated[str, typer.Option("--channel", "-c", help="Slack channel id, e.g. C0123456789.")],
    when: Annotated[str, typer.Option("--when", help='e.g. "weekdays 10:00" or "0 10 * * 1-5".')],
    n: Annotated[int, typer.Option("-n", help="Cards the prompt's button sends.")] = 5,
    tz: Annotated[
        str | None, typer.Option("--tz", help="IANA time zone (default LABELBOT_TIMEZONE, else UTC).")
    ] = None,
    digest: Annotated[
        bool, typer.Option("--digest", help="Schedule the digest with the chart instead of a prompt.")
    ] = False,
) -> None:
    """Schedule a labeling prompt (or, with --digest, the status digest) in a channel."""
    from bot.scheduler import resolve_timezone
    from core.schedules import check_at_most_hourly, parse_when

    service = _service()
    info = service.get_project(ctx.obj["project"])
    spec = check_at_most_hourly(parse_when(when, resolve_timezone(tz)))
    scheduler = _offline_scheduler(service)
    try:
        if digest:
            item = scheduler.add_digest(info, channel, spec, created_by="cli")
        else:
            item = scheduler.add_prompt(info, channel, spec, n=n, created_by="cli")
    finally:
        scheduler.shutdown(wait=False)
    nxt = f"{item.next_run:%Y-%m-%d %H:%M %Z}" if item.next_run else "paused"
    console.print(
        f"Added {item.id}: {item.kind} in {channel}, {item.when}"
        f"{f', {item.n} cards' if item.n else ''}; next {nxt}. {_pickup_note()}",
        highlight=False,
        markup=False,
    )


@schedule_app.command("list")
@_friendly
def schedule_list(ctx: typer.Context) -> None:
    """List the project's prompts, digests and subscriptions."""
    from datetime import UTC
    service = _service()
    info = service.get_project(ctx.obj["project"])
    scheduler = _offline_scheduler(service)
    try:
        items = scheduler.items(info.id)
    finally:
        scheduler.shutdown(wait=False)
    if not items:
        console.print(f"Nothing scheduled for {info.name}.", highlight=False, markup=False)
        return
    table = Table("id", "kind", "where", "when", "cards", "next run (UTC)")
    for item in items:
        table.add_row(
            item.id, item.kind, item.target, item.when, "" if item.n is None else str(item.n),
            f"{item.next_run.astimezone(UTC):%Y-%m-%d %H:%M}" if item.next_run else "paused",
        )
    console.print(table)


@schedule_app.command("remove")
@_friendly
def schedule_remove(
    ctx: typer.Context, item_id: Annotated[str, typer.Argument(help="Id from `list`.")]
) -> None:
    """Remove a prompt, digest or subscription by id."""
    service = _service()
    info = service.get_project(ctx.obj["project"])
    scheduler = _offline_scheduler(service)
    try:
        item = scheduler.remove(item_id, project_id=info.id)
    finally:
        scheduler.shutdown(wait=False)
    console.print(
        f"Removed {item.id} ({item.kind}, {item.when}). {_pickup_note()}", highlight=False, markup=False
    )


# ------------------------------------------------------------ guidelines and the label set (core.labelset)


@app.command()
@_friendly
def guide(
    project: Annotated[str, typer.Argument(help="Project name.")],
    label: Annotated[str | None, typer.Argument(help="The label whose guideline to set.")] = None,
    description: Annotated[str | None, typer.Argument(help="What the label means (one line).")] = None,
    example: Annotated[
        list[str] | None, typer.Option("--example", "-e", help="An example text (up to 3; replaces them).")
    ] = None,
) -> None:
    """Show the labels' guidelines, or set LABEL's description and examples."""
    service = _service()
    if label is not None and (description is not None or example):
        info = service.set_guideline(project, label, description, example or None)
    else:
        info = service.get_project(project)
        if label is not None and label not in info.label_names:
            raise LabelbotError(f"{label!r} is not a label of project {info.name!r}.")
    for d in info.labels:
        if label is None or d.name == label:
            console.print(f"{d.name}: {d.description or '(no description)'}", highlight=False, markup=False)
            for text in d.examples:
                console.print(f"  e.g. {text}", highlight=False, markup=False)


labels_app = typer.Typer(
    help="Edit a project's label set: labelbot labels PROJECT add|rename|merge|retire.",
    no_args_is_help=True,
    cls=OneLineUsageErrors,
)
app.add_typer(labels_app, name="labels")


@labels_app.callback(invoke_without_command=True)
@_friendly
def labels_main(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project name.")]) -> None:
    """Add, rename, merge or retire labels (answers, guidelines and the model follow); alone: list them."""
    ctx.obj = {"project": project}
    if ctx.invoked_subcommand is None:
        info = _service().get_project(project)
        console.print("\n".join(info.label_names), highlight=False, markup=False)
        if info.retired_labels:
            console.print(f"retired: {', '.join(info.retired_labels)}", highlight=False, markup=False)


def _edit_labels(ctx: typer.Context, edit: str, label: str, target: str | None = None, **kw: Any) -> None:
    done = _service().edit_labels(ctx.obj["project"], edit, label, target, **kw)  # type: ignore[arg-type]
    console.print(done.summary, highlight=False, markup=False)


@labels_app.command("add")
@_friendly
def labels_add(
    ctx: typer.Context,
    name: str,
    description: Annotated[str, typer.Option("--description", "-d", help="What it means.")] = "",
) -> None:
    """Add a label (a retired one comes back with its answers)."""
    _edit_labels(ctx, "add", name, description=description)


@labels_app.command("rename")
@_friendly
def labels_rename(ctx: typer.Context, old: str, new: str) -> None:
    """Rename a label: its answers, gold answers and guidelines follow."""
    _edit_labels(ctx, "rename", old, new)


@labels_app.command("merge")
@_friendly
def labels_merge(ctx: typer.Context, source: Annotated[str, typer.Argument(metavar="FROM")],
                 into: Annotated[str, typer.Argument(metavar="INTO")]) -> None:
    """Merge FROM into INTO: FROM's answers become INTO's and FROM leaves the set."""
    _edit_labels(ctx, "merge", source, into)


@labels_app.command("retire")
@_friendly
def labels_retire(ctx: typer.Context, name: str) -> None:
    """Retire a label: off the cards and the model; its answers stay in the history and export, marked."""
    _edit_labels(ctx, "retire", name)


@app.command()
@_friendly
def simulate(
    file: Annotated[Path, typer.Argument(help="Labeled training data (CSV, TSV or JSONL).")],
    text_column: Annotated[str, typer.Option(help="Column with the text.")] = "text",
    label_column: Annotated[
        str, typer.Option(help='Column with the gold label; multi-label: the set joined by "|".')
    ] = "label",
    test_file: Annotated[Path | None, typer.Option(help="Test data (default: a held-out 20% split).")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="Query strategy to compare with random (default: a new project's; "
                          "max-uncertainty-kmeans for multi-label files)."),
    ] = None,
    budget: Annotated[int, typer.Option(help="Labels to spend.")] = 1000,
    seeds: Annotated[int, typer.Option(help="Repetitions (mean ± std).")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the curves as JSON.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Write the learning curves as PNG.")] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Keyword/regex rules, one '<pattern> -> LABEL' a line.")
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option(
            "--multi-label/--single-label",
            help='Labels are sets joined by "|" (default: when any training label contains "|").',
        ),
    ] = None,
) -> None:
    """Replay an oracle through the real labeling loop and report how many labels active learning saves.

    Multi-label files (labels joined by "|") report micro-F1, macro-F1 and subset accuracy."""
    from core.simulate import format_table, plot, run_simulation, write_json

    result = run_simulation(
        file,
        text_column=text_column,
        label_column=label_column,
        test_path=test_file,
        strategy=strategy,
        budget=budget,
        seeds=seeds,
        settings=load_settings(),
        progress=lambda line: err_console.print(line, markup=False),
        rules_path=rules,
        multi_label=multi_label,
    )
    print(format_table(result))
    if json_out is not None:
        console.print(f"Wrote {write_json(result, json_out)}", highlight=False, markup=False)
    if plot_out is not None:
        console.print(f"Wrote {plot(result, plot_out)}", highlight=False, markup=False)


# ------------------------------------------------------------------------------ rules (issue 13)

rule_app = typer.Typer(
    help="Keyword/regex rules: weak labels shown on cards, voting in the model's guesses, exported apart.",
    no_args_is_help=True,
)
app.add_typer(rule_app, name="rule")


def _rule_dict(rule: RuleInfo) -> dict[str, Any]:
    return {
        "id": rule.id, "label": rule.label, "kind": rule.kind, "pattern": rule.pattern,
        "created_by": rule.created_by, "created_at": rule.created_at.isoformat(), "total": rule.total,
        "matched": rule.matched, "coverage": rule.coverage, "overlap": rule.overlap,
        "conflicts": rule.conflicts, "labeled": rule.labeled, "agreeing": rule.agreeing,
        "precision": rule.precision, "timed_out": rule.timed_out,
    }  # fmt: skip


def _print_rules(rules: list[RuleInfo] | tuple[RuleInfo, ...]) -> None:
    """One line per rule (not a table: patterns are long, and a line is easy to grep)."""
    console.print("Rules (weak labels):", highlight=False, markup=False)
    for rule in rules:
        coverage = "timed out" if rule.timed_out else f"{rule.coverage:.1%} ({rule.matched:,}/{rule.total:,})"
        precision = (
            f"n/a ({rule.labeled} labeled)"
            if rule.precision is None
            else f"{rule.precision:.0%} ({rule.agreeing}/{rule.labeled})"
        )
        console.print(
            f"  #{rule.id} {rule.kind} {rule.pattern} -> {rule.label}: covers {coverage}, overlap "
            f"{rule.overlap:,}, conflicts {rule.conflicts:,}, precision {precision}",
            highlight=False,
            markup=False,
        )


@rule_app.command("add")
@_friendly
def rule_add(
    project: Annotated[str, typer.Argument(help="Project name.")],
    rule: Annotated[
        str, typer.Argument(help='e.g. "refund, money back -> request_refund" or "/refund/i -> X".')
    ],
    user: UserOption = "",
) -> None:
    """Add a keyword (comma-separated, whole words, any case) or /regex/flags rule for a label."""
    added = _service().add_rule(project, rule, user or _default_user())
    _print_rules([added])
    if added.timed_out:
        err_console.print(
            f"Rule #{added.id} timed out on some record, so it matches nothing: remove it and write a "
            "simpler pattern.",
            highlight=False,
            markup=False,
        )


@rule_app.command("list")
@_friendly
def rule_list(
    project: Annotated[str, typer.Argument(help="Project name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The project's rules with coverage, overlap, conflicts and precision against the final labels."""
    found = _service().list_rules(project)
    if as_json:
        print(json.dumps([_rule_dict(rule) for rule in found], ensure_ascii=False, indent=2))
    elif not found:
        console.print(f"No rules in {project}.", highlight=False, markup=False)
    else:
        _print_rules(found)


@rule_app.command("remove")
@_friendly
def rule_remove(
    project: Annotated[str, typer.Argument(help="Project name.")],
    rule_id: Annotated[int, typer.Argument(help="The rule's id (from `labelbot rule list`).")],
) -> None:
    """Delete a rule (answers are untouched: a rule never gave any)."""
    removed = _service().remove_rule(project, rule_id)
    console.print(f"Removed rule #{removed.id}: {removed.description}", highlight=False, markup=False)
