"""Editing a project's label set: guidelines, and adding, renaming, merging and retiring labels.

Each function takes the connection of a write transaction the facade opened and the project as that
transaction read it, writes the new ``project.labels`` (bumping ``version``, so every process reads
the new set) and moves the answers and what is keyed by label name along with it.

Chat cards name a label by index and a digest of its name (bot.ids), so any change of names or
order makes cards already sent stale; a guideline changes neither and leaves them working.

A retired label stays in ``project.labels`` marked ``"retired": true``: its answers stay in the
history and the export (column ``retired_answers``), and count for nothing (core.answers,
core.training), so a record whose only answers were for it needs answers again.

In a multi-label project an answer is a set (core.multilabel): a rename or merge rewrites the name
inside every stored set (answers, gold answers, queue guesses, owed card updates), kept in canonical
order; a retire leaves the stored sets as they are, and everything that counts reads only the active
labels of a set (each label is its own yes/no question), so the retired name drops out of every set.
An answer whose set names retired labels only counts for nothing, as in a single-label project: it
said nothing about the labels that remain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, select, update

from core import answers, multilabel
from core.errors import LabelbotError, UnknownLabel
from core.guidelines import check_guideline
from core.io import MAX_LABEL_LENGTH
from core.models import Annotation, Delivery, LabelVector, Project, QueueItem, Record
from core.projects import ProjectCatalog, ProjectKey, label_rows
from core.types import LabelDef, ProjectInfo

#: A project needs this many active labels (core.projects.check_labels).
MIN_LABELS = 2

Edit = Literal["add", "rename", "merge", "retire"]


@dataclass(frozen=True)
class LabelSetEdit:
    """What an edit did. ``renamed`` (old name -> new name; a merge maps FROM to INTO) and ``retired``
    are the hook for what else is keyed by label name (weak-label rules): apply them in order."""

    project: str
    edit: Edit
    label: str
    target: str | None = None
    answers_moved: int = 0
    reopened: int = 0  # records that need answers again (a retire)
    renamed: dict[str, str] = field(default_factory=dict)
    retired: tuple[str, ...] = ()
    info: ProjectInfo | None = None

    @property
    def summary(self) -> str:
        """One line for the person who made the edit (CLI and chat)."""
        moved = f"{self.answers_moved:,} answer{'s' if self.answers_moved != 1 else ''} moved"
        reopened = f"{self.reopened:,} record{'s' if self.reopened != 1 else ''}"
        done = {
            "add": f"Added label {self.label!r} to {self.project}.",
            "rename": f"Renamed {self.label!r} to {self.target!r} in {self.project} ({moved}).",
            "merge": f"Merged {self.label!r} into {self.target!r} in {self.project} ({moved}).",
            "retire": f"Retired {self.label!r} in {self.project}: its answers are kept, marked; "
            f"{reopened} answered only with it need answers again.",
        }[self.edit]
        if self.edit != "add":
            done += " Cards sent before this show a 'label set changed' line when clicked."
        return done + " The model is retraining."


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not name:
        raise LabelbotError("A label name must not be empty.")
    if len(name) > MAX_LABEL_LENGTH:
        raise LabelbotError(f"A label name is at most {MAX_LABEL_LENGTH} characters (Slack's menu options).")
    return name


def _active(info: ProjectInfo, name: str) -> LabelDef:
    for label in info.labels:
        if label.name == name:
            return label
    if name in info.retired_labels:
        raise UnknownLabel(f"{name!r} is a retired label of project {info.name!r}; add it back first.")
    raise UnknownLabel(
        f"{name!r} is not a label of project {info.name!r} (labels: {', '.join(info.label_names)})."
    )


def _write(
    conn: Connection, catalog: ProjectCatalog, info: ProjectInfo, labels: list[LabelDef], retired: list[str]
) -> ProjectInfo:
    conn.execute(
        update(Project)
        .where(Project.id == info.id)
        .values(labels=label_rows(labels, retired), version=Project.version + 1)
    )
    return catalog.info(conn, info.id)


def _training_changed(conn: Connection, project_id: int) -> None:
    # Answers' labels changed without a new answer: bump data_version so the answers' fingerprint
    # (retrain-if-changed, cached stopping advice) moves too.
    ProjectCatalog.bump_data_version(conn, project_id)


def _move_answers(conn: Connection, project_id: int, old: str, new: str) -> int:
    moved = conn.execute(
        update(Annotation)
        .where(Annotation.project_id == project_id, Annotation.label == old)
        .values(label=new)
    ).rowcount
    # Guesses shown until the next retrain, and card updates still owed, show the new name.
    conn.execute(
        update(QueueItem)
        .where(QueueItem.project_id == project_id, QueueItem.predicted_label == old)
        .values(predicted_label=new)
    )
    conn.execute(
        update(Delivery).where(Delivery.project_id == project_id, Delivery.label == old).values(label=new)
    )
    # The label-name prior: the old name's vectors go; the new name is embedded at the next retrain.
    conn.execute(delete(LabelVector).where(LabelVector.project_id == project_id, LabelVector.label == old))
    return int(moved or 0)


def _order(info: ProjectInfo) -> list[str]:
    # The canonical order of a stored set: active labels, then retired ones (core.projects.label_rows).
    return [*info.label_names, *info.retired_labels]


def _rewrite_sets(
    conn: Connection, project_id: int, name: str, rewrite: Callable[[str], str], *, guesses_only: bool = False
) -> int:
    """Multi-label: rewrite each stored set text that names ``name`` (answers, queue guesses, card
    updates still owed); returns how many answers changed."""
    tables: list[tuple[Any, Any]] = [(QueueItem, QueueItem.predicted_label)]
    if not guesses_only:
        tables += [(Delivery, Delivery.label), (Annotation, Annotation.label)]
    changed = 0
    for table, column in tables:
        rows = conn.execute(
            select(table.id, column).where(
                table.project_id == project_id, column.contains(name, autoescape=True)
            )
        ).all()
        new = [
            {"row_id": rid, "text": rewrite(text)}
            for rid, text in rows
            if name in multilabel.split(text) and rewrite(text) != text
        ]
        if new:
            conn.execute(
                update(table).where(table.id == bindparam("row_id")).values({column.key: bindparam("text")}),
                new,
            )
        if table is Annotation:
            changed = len(new)
    return changed


def _move_in_sets(conn: Connection, info: ProjectInfo, old: str, new: str, updated: ProjectInfo) -> int:
    """Multi-label rename or merge: ``old`` becomes ``new`` inside every set (one ``new`` after a merge)."""
    moved = _rewrite_sets(
        conn, info.id, old, lambda text: multilabel.reorder(text, _order(updated), {old: new})
    )
    conn.execute(delete(LabelVector).where(LabelVector.project_id == info.id, LabelVector.label == old))
    return moved


def _check_multi_label(info: ProjectInfo, labels: list[LabelDef]) -> None:
    if info.multi_label:
        multilabel.check_names([d.name for d in labels])


def set_guideline(
    conn: Connection,
    catalog: ProjectCatalog,
    project: ProjectKey,
    label: str,
    description: str | None,
    examples: list[str] | tuple[str, ...] | None = None,
) -> ProjectInfo:
    """Set ``label``'s description and its examples; None keeps the ones there are."""
    info = catalog.info(conn, project)
    current = _active(info, label)
    description, cleaned = check_guideline(
        current.description if description is None else description,
        current.examples if examples is None else examples,
    )
    labels = [LabelDef(d.name, description, cleaned) if d.name == label else d for d in info.labels]
    return _write(conn, catalog, info, labels, list(info.retired_labels))


def add(
    conn: Connection, catalog: ProjectCatalog, project: ProjectKey, name: str, description: str = ""
) -> LabelSetEdit:
    """Add a label at the end of the set; a retired label's name brings it back with its answers."""
    info = catalog.info(conn, project)
    name = _check_name(name)
    if name in info.label_names:
        raise LabelbotError(f"{name!r} is already a label of project {info.name!r}.")
    description, _ = check_guideline(description, ())
    retired = [r for r in info.retired_labels if r != name]
    _check_multi_label(info, [*info.labels, LabelDef(name, description)])
    new = _write(conn, catalog, info, [*info.labels, LabelDef(name, description)], retired)
    if name in info.retired_labels:
        if info.multi_label:  # back at the end of the set: sets naming it take the new canonical order
            _rewrite_sets(conn, info.id, name, lambda text: multilabel.reorder(text, _order(new)))
        answers.recompute_completeness(
            conn, new, record_ids=_records_answered(conn, info.id, name, multi_label=info.multi_label)
        )
        _training_changed(conn, info.id)
    return LabelSetEdit(info.name, "add", name, info=new)


def rename(
    conn: Connection, catalog: ProjectCatalog, project: ProjectKey, old: str, new_name: str
) -> LabelSetEdit:
    """Rename a label: its answers (gold and review answers too), guidelines and place in the set follow."""
    info = catalog.info(conn, project)
    current = _active(info, old)
    new_name = _check_name(new_name)
    if new_name == old:
        raise LabelbotError(f"{old!r} is already called that.")
    if new_name in info.label_names or new_name in info.retired_labels:
        raise LabelbotError(
            f"Project {info.name!r} already has a label {new_name!r}"
            + (" (retired)." if new_name in info.retired_labels else "; merge them instead.")
        )
    labels = [LabelDef(new_name, d.description, d.examples) if d.name == old else d for d in info.labels]
    _check_multi_label(info, labels)
    updated = _write(conn, catalog, info, labels, list(info.retired_labels))
    if info.multi_label:
        moved = _move_in_sets(conn, info, current.name, new_name, updated)
    else:
        moved = _move_answers(conn, info.id, current.name, new_name)
    _training_changed(conn, info.id)
    return LabelSetEdit(
        info.name, "rename", old, new_name, answers_moved=moved, renamed={old: new_name}, info=updated
    )


def merge(
    conn: Connection, catalog: ProjectCatalog, project: ProjectKey, source: str, target: str
) -> LabelSetEdit:
    """Merge ``source`` into ``target``: its answers become ``target``'s and it leaves the set.

    One answer per labeler and record, so no labeler ends up with two; ``target`` keeps its guidelines.
    Completeness is recomputed (ties under extra-answer routing may have become majorities)."""
    info = catalog.info(conn, project)
    _active(info, source)
    _active(info, target)
    if source == target:
        raise LabelbotError(f"Cannot merge {source!r} into itself.")
    if len(info.labels) - 1 < MIN_LABELS:
        raise LabelbotError(
            f"Project {info.name!r} needs at least {MIN_LABELS} labels; add one before merging."
        )
    labels = [d for d in info.labels if d.name != source]
    updated = _write(conn, catalog, info, labels, list(info.retired_labels))
    if info.multi_label:  # a set {source, target} becomes {target}
        moved = _move_in_sets(conn, info, source, target, updated)
    else:
        moved = _move_answers(conn, info.id, source, target)
    answers.recompute_completeness(conn, updated)
    _training_changed(conn, info.id)
    return LabelSetEdit(
        info.name, "merge", source, target, answers_moved=moved, renamed={source: target}, info=updated
    )


def retire(conn: Connection, catalog: ProjectCatalog, project: ProjectKey, name: str) -> LabelSetEdit:
    """Retire a label: off the cards and out of the learner; its answers stay, marked, and count for
    nothing, so records whose only answers were for it go back to the queue (to labelers who have not
    answered them: an answer is never overwritten behind its labeler's back)."""
    info = catalog.info(conn, project)
    _active(info, name)
    if len(info.labels) - 1 < MIN_LABELS:
        raise LabelbotError(
            f"Project {info.name!r} needs at least {MIN_LABELS} active labels; "
            f"add one before retiring {name!r}."
        )
    labels = [d for d in info.labels if d.name != name]
    updated = _write(conn, catalog, info, labels, [*info.retired_labels, name])
    touched = _records_answered(conn, info.id, name, multi_label=info.multi_label)
    if info.multi_label:  # guesses are no history: they drop the name until the retrain
        _rewrite_sets(conn, info.id, name, lambda text: multilabel.without(text, (name,)), guesses_only=True)
    before = _complete_among(conn, touched)
    answers.recompute_completeness(conn, updated, record_ids=touched)
    reopened = len(before - _complete_among(conn, touched))
    conn.execute(delete(LabelVector).where(LabelVector.project_id == info.id, LabelVector.label == name))
    _training_changed(conn, info.id)
    return LabelSetEdit(
        info.name, "retire", name, answers_moved=0, reopened=reopened, retired=(name,), info=updated
    )


def _records_answered(
    conn: Connection, project_id: int, label: str, *, multi_label: bool = False
) -> list[int]:
    if multi_label:  # any answer whose set names it
        rows = conn.execute(
            select(Annotation.record_id, Annotation.label).where(
                Annotation.project_id == project_id, Annotation.label.contains(label, autoescape=True)
            )
        ).all()
        return sorted({rid for rid, text in rows if label in multilabel.split(text)})
    return sorted(
        set(
            conn.execute(
                select(Annotation.record_id).where(
                    Annotation.project_id == project_id, Annotation.label == label
                )
            ).scalars()
        )
    )


def _complete_among(conn: Connection, record_ids: list[int]) -> set[int]:
    done: set[int] = set()
    for start in range(0, len(record_ids), 5_000):
        chunk = record_ids[start : start + 5_000]
        done.update(
            conn.execute(select(Record.id).where(Record.id.in_(chunk), Record.complete.is_(True))).scalars()
        )
    return done


def retired_answers(info: ProjectInfo, given: list[tuple]) -> dict[int, list[str]]:
    """Per record, the retired labels its answers gave (``annotator: label``), for the export."""
    out: dict[int, list[str]] = {}
    for rid, annotator, label, *_ in given:
        names = multilabel.split(label) if info.multi_label else (label,)
        for name in names:  # a set answer: each retired label it names
            if name in info.retired_labels:
                out.setdefault(rid, []).append(f"{annotator}: {name}")
    return out
