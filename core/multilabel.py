"""Multi-label answers: a set of label names stored as one canonical text.

An answer in a multi-label project is a set of labels, possibly empty ("none of these"). It is kept in
``Annotation.label`` (one text column, as for single-label answers) as the chosen names in the project's
label order joined by ``|``; the empty set is the empty string. One canonical text per set means equal
sets compare equal as text, so repeated clicks, agreement and undo work on the column unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

from core import aggregate as agg
from core.agreement import cohen_kappa_pairs, krippendorff_alpha_nominal
from core.errors import LabelbotError, UnknownLabel
from core.review import needs_extra_answer as _needs_extra_answer
from core.types import ProjectInfo

#: A guess names its set by a bitmask of the labels (multilabel_learner.SetNames), exact in float32 to 2^24.
MAX_MULTI_LABELS = 24

#: Joins the names of a set in the stored text, the CSV export and simulate's files.
SEPARATOR = "|"

#: An imported label cell saying "none of these" (the empty set); an empty cell is unanswered.
NONE_TOKEN = "none"

#: A new multi-label project's query strategy (docs/benchmarks.md, "Multi-label (issue 13)").
DEFAULT_STRATEGY = "max-uncertainty-kmeans"

#: What an answer of a multi-label project may be: the names, or a callable choosing them against the
#: project as the answering transaction reads it (the card listener resolves ticked options so).
LabelChoice = Collection[str] | Callable[[ProjectInfo], Collection[str]]


def check_names(names: Iterable[str]) -> None:
    """Label names of a multi-label project may not contain the separator; at most ``MAX_MULTI_LABELS``
    (a guess names its set by a bitmask, core.learner)."""
    names = list(names)
    if len(names) > MAX_MULTI_LABELS:
        raise LabelbotError(f"A multi-label project has at most {MAX_MULTI_LABELS} labels.")
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


def answer_text(info: ProjectInfo, label: object) -> str:
    """What ``Annotation.label`` stores for an answer: one active label's name for a single-label project
    (a name, or a callable returning one), the canonical set text for a multi-label one."""
    if info.multi_label:
        return resolve(info, label)  # type: ignore[arg-type]
    name = label(info) if callable(label) else label
    if not isinstance(name, str) or name not in info.label_names:
        raise UnknownLabel(f"{name!r} is not a label of project {info.name!r}.")
    return name


def resolve(info: ProjectInfo, label: LabelChoice | str) -> str:
    """The canonical text of an answer given as names, a callable returning them, or ``|``-joined text."""
    if callable(label):
        label = label(info)
    if isinstance(label, str):
        return join(info, split(label))
    return join(info, label)


def reorder(text: str, order: Sequence[str], renamed: Mapping[str, str] | None = None) -> str:
    """A stored set text with names renamed (``renamed``: old -> new; two names made one are one) and
    in ``order`` (a project's active labels, then its retired ones); names not in ``order`` go last."""
    renamed = renamed or {}
    chosen = dict.fromkeys(renamed.get(name, name) for name in split(text))
    ordered = [name for name in order if name in chosen]
    return SEPARATOR.join(ordered + [name for name in chosen if name not in set(order)])


def without(text: str, names: Collection[str]) -> str:
    """A set text without ``names`` (a guess naming a retired label)."""
    return SEPARATOR.join(name for name in split(text) if name not in names)


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


def base_rates(info: ProjectInfo, texts: Iterable[str]) -> dict[str, float]:
    """Each label's share of the sets ``texts``, smoothed as if one set had it and one did not (so a label
    never seen is at 1/2 before any answer, not at 0)."""
    counts = dict.fromkeys(info.label_names, 0)
    n = 0
    for text in texts:
        n += 1
        for name in split(text):
            if name in counts:
                counts[name] += 1
    return {name: (count + 1) / (n + 2) for name, count in counts.items()}


def yes_no(text: str, label: str) -> str:
    """One label of a set answer as the yes/no question it is aggregated as."""
    return "yes" if label in split(text) else "no"


def needs_extra_answer(info: ProjectInfo, texts: Sequence[str]) -> bool:
    """Disagreement routing: k set answers with a tie on any label's yes/no get one more answer."""
    return any(
        _needs_extra_answer([yes_no(t, label) for t in texts], info.answers_per_record)
        for label in info.label_names
    )


def agreement_per_label(
    info: ProjectInfo, triples: Sequence[tuple[Hashable, Hashable, str]], min_overlap: int
) -> tuple[float | None, dict[tuple[Hashable, Hashable], tuple[float, int]]]:
    """Krippendorff's alpha and Cohen's kappa per annotator pair over set answers ``(record, annotator,
    text)``: each label a yes/no question (as :func:`aggregate` treats it), then the mean over labels.

    Alpha is the mean over the labels that have one (None when none has); a pair's kappa is the mean of
    its finite per-label kappas (nan when every label was answered one way throughout by both).
    """
    alphas: list[float] = []
    kappas: dict[tuple[Hashable, Hashable], list[float]] = {}
    overlaps: dict[tuple[Hashable, Hashable], int] = {}
    for label in info.label_names:
        yes_no_triples = [(rid, who, yes_no(text, label)) for rid, who, text in triples]
        alpha = krippendorff_alpha_nominal(yes_no_triples)
        if alpha is not None and math.isfinite(alpha):
            alphas.append(float(alpha))
        for pair, (kappa, overlap) in cohen_kappa_pairs(yes_no_triples, min_overlap=min_overlap).items():
            kappas.setdefault(pair, [])
            if math.isfinite(kappa):
                kappas[pair].append(kappa)
            overlaps[pair] = overlap  # the records both answered: the same for every label
    pairs = {pair: (sum(v) / len(v) if v else float("nan"), overlaps[pair]) for pair, v in kappas.items()}
    return (sum(alphas) / len(alphas) if alphas else None), pairs


def aggregate(
    info: ProjectInfo,
    answers: Iterable[tuple[Hashable, Hashable, str]],
    gold: Mapping[Hashable, str] | None = None,
) -> dict[Hashable, agg.AggregateLabel]:
    """The final set per record: each label a yes/no question through :func:`core.aggregate.aggregate`.

    ``label`` is the canonical text of the labels whose answer is yes; ``tie`` when any label's yes/no
    is split evenly; ``agreement`` and ``confidence`` the mean over labels; a gold set wins whole.
    """
    answers = list(answers)
    gold = dict(gold or {})
    per_label = {
        label: agg.aggregate(
            [(rid, who, yes_no(text, label)) for rid, who, text in answers],
            ("no", "yes"),
            answers_per_record=info.answers_per_record,
            gold={rid: yes_no(text, label) for rid, text in gold.items()},
        )
        for label in info.label_names
    }
    records = dict.fromkeys([rid for rid, _, _ in answers] + list(gold))
    result = {}
    for rid in records:
        finals = [(label, per_label[label][rid]) for label in info.label_names]
        result[rid] = agg.AggregateLabel(
            label=SEPARATOR.join(label for label, f in finals if f.label == "yes"),
            confidence=sum(f.confidence for _, f in finals) / len(finals),
            n_answers=finals[0][1].n_answers,
            tie=any(f.tie for _, f in finals),
            agreement=sum(f.agreement for _, f in finals) / len(finals),
        )
    return result


def is_none_token(info: ProjectInfo, text: str) -> bool:
    """Whether an imported label cell says "none of these": :data:`NONE_TOKEN` in any case, unless the
    project has a label of that name (then it is that label)."""
    word = text.strip().casefold()
    return word == NONE_TOKEN and all(name.casefold() != word for name in info.label_names)


def canonical_rows(info: ProjectInfo, rows: Sequence[Any], path: str) -> list[Any]:
    """Import rows (``core.io.ImportRow``) with their ``|``-joined labels as canonical set texts; an
    unknown name is one line naming the file and line. The cell ``none`` (and a JSONL ``[]``, which
    ``core.io`` reads as "") is the empty set; an empty cell (None) stays unanswered."""
    out = []
    for row in rows:
        if row.label is not None:
            try:
                text = "" if is_none_token(info, row.label) else join(info, split(row.label))
                row = dataclasses.replace(row, label=text)
            except UnknownLabel as exc:
                raise UnknownLabel(f"{path}, line {row.line}: {exc}") from None
        out.append(row)
    return out


def as_lists(row: dict[str, Any]) -> dict[str, Any]:
    """An export row with its set columns (``label``, ``predicted_label``) as lists of names (JSONL)."""
    return {
        key: list(split(value)) if key in ("label", "predicted_label") and value is not None else value
        for key, value in row.items()
    }
