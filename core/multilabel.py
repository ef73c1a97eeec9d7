"""Multi-label answers: a set of label names stored as one canonical text.

An answer in a multi-label project is a set of labels, possibly empty ("none of these"). It is kept in
``Annotation.label`` (one text column, as for single-label answers) as the chosen names in the project's
label order joined by ``|``; the empty set is the empty string. One canonical text per set means equal
sets compare equal as text, so repeated clicks, agreement and undo work on the column unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

from core.errors import LabelbotError, UnknownLabel
from core.types import ProjectInfo

#: Joins the names of a set in the stored text, the CSV export and simulate's files.
SEPARATOR = "|"

#: What an answer of a multi-label project may be: the names, or a callable choosing them against the
#: project as the answering transaction reads it (the card listener resolves ticked options so).
LabelChoice = Collection[str] | Callable[[ProjectInfo], Collection[str]]


def check_names(names: Iterable[str]) -> None:
    """Label names of a multi-label project may not contain the separator."""
    bad = [name for name in names if SEPARATOR in name]
    if bad:
        raise LabelbotError(
            f"Labels of a multi-label project may not contain {SEPARATOR!r}: {', '.join(bad)}."
        )


def join(info: ProjectInfo, names: Iterable[str]) -> str:
    """The canonical text of a set of labels: the project's label order, ``|``-joined; "" when empty.

    ``UnknownLabel`` (one line) for a name not among the project's active labels.
    """
    chosen = {str(name).strip() for name in names}
    chosen.discard("")
    known = info.label_names
    unknown = sorted(chosen.difference(known))
    if unknown:
        shown = ", ".join(repr(name) for name in unknown)
        raise UnknownLabel(f"{shown} {'is not a label' if len(unknown) == 1 else 'are not labels'} "
                           f"of project {info.name!r}.")
    return SEPARATOR.join(name for name in known if name in chosen)


def split(text: str | None) -> tuple[str, ...]:
    """The label names of a canonical text (or of an imported ``|``-joined one); () for ""."""
    if not text:
        return ()
    return tuple(part for part in (p.strip() for p in text.split(SEPARATOR)) if part)


def resolve(info: ProjectInfo, label: LabelChoice | str) -> str:
    """The canonical text of an answer given as names, a callable returning them, or ``|``-joined text."""
    if callable(label):
        label = label(info)
    if isinstance(label, str):
        return join(info, split(label))
    return join(info, label)


def indicator(texts: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Rows of 0/1 per label (in ``labels`` order) for canonical texts; unknown names are ignored."""
    position = {name: i for i, name in enumerate(labels)}
    rows = []
    for text in texts:
        row = [0] * len(labels)
        for name in split(text):
            if name in position:
                row[position[name]] = 1
        rows.append(row)
    return rows
