"""Keyword and regex rules: weak labels an admin writes, e.g. ``refund, money back -> request_refund``.

A rule never answers a record: it is shown on cards, exported in its own column and measured against
the final labels (coverage, overlap, conflicts, estimated precision). Patterns run in the ``regex``
package with a timeout per record and a budget per evaluation, so a pathological pattern is reported
as timed out instead of hanging the bot. Evaluations over a project's records are cached in memory by
data version (records only change with an import, which bumps it).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import regex
from sqlalchemy import Connection, Engine, delete, insert, select, update

from core import multilabel
from core.errors import LabelbotError, UnknownLabel
from core.models import Record, Rule
from core.store import reading
from core.types import ProjectInfo, RecordView, RuleInfo

KINDS = ("keywords", "regex")
#: Seconds one pattern may spend on one record, and on all the records of one evaluation.
PER_RECORD_TIMEOUT = 0.05
EVALUATION_BUDGET = 10.0
#: Below this many labeled records among a rule's matches, its precision is not estimated ("n/a").
MIN_PRECISION_SUPPORT = 5
#: Flags a ``/regex/flags`` may carry: i (ignore case), m (multi-line), s (dot matches newline).
REGEX_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL}
ARROWS = ("->", "→")
EXAMPLE = "`refund, money back -> request_refund` or `/refund(ed)?/i -> request_refund`"


class RuleNotFound(LabelbotError):
    pass


@dataclass(frozen=True)
class ParsedRule:
    kind: str
    pattern: str  # keywords: comma-separated, as written; regex: /body/flags
    label: str


@dataclass(frozen=True)
class Evaluation:
    """The records one pattern matches; ``timed_out``: it ran past a limit and matches nothing."""

    matched: frozenset[int]
    timed_out: bool = False


def parse(text: str, label_names: Sequence[str]) -> ParsedRule:
    """``<keywords or /regex/flags> -> LABEL``, checked: one clear ``LabelbotError`` when it is not."""
    text = (text or "").strip()
    arrow = max(ARROWS, key=lambda a: text.rfind(a))
    cut = text.rfind(arrow)
    if cut < 0:
        raise LabelbotError(f"Write a rule as <keywords or /regex/> -> LABEL, e.g. {EXAMPLE}.")
    pattern, label = text[:cut].strip(), text[cut + len(arrow):].strip()
    if not label:
        raise LabelbotError(f"Name the label after `->`, e.g. {EXAMPLE}.")
    if label not in label_names:
        shown = ", ".join(label_names[:20]) + (" …" if len(label_names) > 20 else "")
        raise UnknownLabel(f"{label!r} is not a label of this project (labels: {shown}).")
    if not pattern:
        raise LabelbotError(f"The rule has no keywords or pattern before `->`, e.g. {EXAMPLE}.")
    if pattern.startswith("/"):
        kind = "regex"
    else:
        kind = "keywords"
        words = _keywords(pattern)
        if not words:
            raise LabelbotError(f"The rule has no keywords before `->`, e.g. {EXAMPLE}.")
        pattern = ", ".join(words)
    compile_pattern(kind, pattern)  # refuses a bad regex here
    return ParsedRule(kind, pattern, label)


def _keywords(pattern: str) -> list[str]:
    """The distinct keywords (matched ignoring case, so told apart ignoring case), spaces normalized."""
    first: dict[str, str] = {}
    for word in (" ".join(w.split()) for w in pattern.split(",")):
        if word:
            first.setdefault(word.casefold(), word)
    return list(first.values())


def compile_pattern(kind: str, pattern: str) -> regex.Pattern:
    """Keywords: any of them, case-insensitively, on word boundaries (a phrase's spaces match any
    whitespace). Regex: ``/body/flags``."""
    if kind == "keywords":
        words = _keywords(pattern)
        if not words:
            raise LabelbotError("A keyword rule needs at least one keyword.")
        alternatives = "|".join(r"\s+".join(regex.escape(part) for part in w.split()) for w in words)
        return regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", regex.IGNORECASE | regex.V0)
    if kind != "regex":
        raise LabelbotError(f"Unknown rule kind {kind!r}; expected one of {', '.join(KINDS)}.")
    end = pattern.rfind("/")
    if not pattern.startswith("/") or end == 0:
        raise LabelbotError(f"Write a regex between slashes, e.g. {EXAMPLE}.")
    body, letters = pattern[1:end], pattern[end + 1:]
    if not body:
        raise LabelbotError("The regex between the slashes is empty.")
    flags = regex.V0
    for letter in letters:
        if letter not in REGEX_FLAGS:
            raise LabelbotError(f"Unknown regex flag {letter!r} in {pattern!r}; use i, m or s.")
        flags |= REGEX_FLAGS[letter]
    try:
        return regex.compile(body, flags)
    except (regex.error, ValueError, OverflowError, RecursionError) as error:
        raise LabelbotError(f"Not a valid regex {pattern!r}: {error}.") from None


@functools.lru_cache(maxsize=4096)
def compiled(kind: str, pattern: str) -> regex.Pattern:
    """:func:`compile_pattern`, remembered (stored rules are compiled on every card)."""
    return compile_pattern(kind, pattern)


def matching(rules: Iterable[Rule], text: str, label_names: Sequence[str]) -> tuple[str, ...]:
    """The rules (of labels still in the set) matching ``text``, as shown; one timed out is left out."""
    return tuple(
        describe(rule.kind, rule.pattern, rule.label)
        for rule in rules
        if rule.label in label_names and matches(compiled(rule.kind, rule.pattern), text)
    )


def describe(kind: str, pattern: str, label: str) -> str:
    """How a rule is shown: ``refund, money back → request_refund``."""
    return f"{pattern} → {label}"


def matches(compiled: regex.Pattern, text: str, *, timeout: float = PER_RECORD_TIMEOUT) -> bool | None:
    """Whether ``compiled`` matches ``text``; None when it ran out of time."""
    try:
        return compiled.search(text, timeout=timeout) is not None
    except TimeoutError:
        return None


def evaluate(
    compiled: regex.Pattern,
    texts: Iterable[tuple[int, str]],
    *,
    per_record: float = PER_RECORD_TIMEOUT,
    budget: float = EVALUATION_BUDGET,
) -> Evaluation:
    """The records of ``texts`` (id, text) that ``compiled`` matches. A pattern that runs past
    ``per_record`` on any record, or past ``budget`` in all, is marked timed out and matches nothing
    (a partial match set would skew its statistics)."""
    deadline = time.monotonic() + budget
    found = []
    search = compiled.search
    for record_id, text in texts:
        try:
            if search(text, timeout=per_record) is not None:
                found.append(record_id)
        except TimeoutError:
            return Evaluation(frozenset(), timed_out=True)
        if time.monotonic() > deadline:
            return Evaluation(frozenset(), timed_out=True)
    return Evaluation(frozenset(found))


# ------------------------------------------------------------------ the rule table


def add(conn: Connection, project_id: int, rule: ParsedRule, created_by: str, now: datetime) -> int:
    values = dict(project_id=project_id, label=rule.label, kind=rule.kind, pattern=rule.pattern,
                  created_by=created_by, created_at=now)  # fmt: skip
    return int(conn.execute(insert(Rule).values(**values).returning(Rule.id)).scalar_one())


def load(conn: Connection, project_id: int) -> list[Rule]:
    rows = conn.execute(select(Rule).where(Rule.project_id == project_id).order_by(Rule.id)).all()
    return [Rule.model_validate(row._mapping) for row in rows]


def remove(conn: Connection, project_id: int, rule_id: int) -> Rule:
    row = conn.execute(select(Rule).where(Rule.project_id == project_id, Rule.id == rule_id)).first()
    if row is None:
        raise RuleNotFound(f"There is no rule {rule_id} in this project (see the rule list for their ids).")
    conn.execute(delete(Rule).where(Rule.id == rule_id))
    return Rule.model_validate(row._mapping)


def relabel(conn: Connection, project_id: int, renamed: Mapping[str, str]) -> None:
    """Rules follow a label renamed or merged (old name → new name, applied in order)."""
    for old, new in renamed.items():
        conn.execute(update(Rule).where(Rule.project_id == project_id, Rule.label == old).values(label=new))


def record_texts(conn: Connection, project_id: int) -> list[tuple[int, str]]:
    rows = conn.execute(select(Record.id, Record.text).where(Record.project_id == project_id))
    return [(int(rid), text) for rid, text in rows]


# ------------------------------------------------------------------ evaluations and statistics


class RuleMatches:
    """Evaluations of patterns over a project's records, by (project, data version, kind, pattern):
    a project's older data versions are dropped when a newer one is evaluated. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int, str, str], Evaluation] = {}

    def cached(self, project_id: int, data_version: int, kind: str, pattern: str) -> Evaluation | None:
        with self._lock:
            return self._cache.get((project_id, data_version, kind, pattern))

    def store(self, project_id: int, data_version: int, kind: str, pattern: str, found: Evaluation) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == project_id and k[1] < data_version]:
                del self._cache[key]
            self._cache[(project_id, data_version, kind, pattern)] = found

    def evaluations(
        self,
        engine: Engine,
        project_id: int,
        found: Sequence[Rule],
        data_version: Callable[[Connection], int],
    ) -> dict[int, Evaluation]:
        """Rule id → its matches over the project's records, run once per data version (``data_version``
        reads the project's in a transaction); a read: it writes nothing."""
        out: dict[int, Evaluation] = {}
        with reading(engine) as conn:
            version = data_version(conn)
        texts: list[tuple[int, str]] | None = None
        for rule in found:
            evaluation = self.cached(project_id, version, rule.kind, rule.pattern)
            if evaluation is None:
                if texts is None:
                    with reading(engine) as conn:  # the texts and their version from one snapshot
                        version = data_version(conn)
                        texts = record_texts(conn, project_id)
                evaluation = evaluate(compiled(rule.kind, rule.pattern), texts)
                self.store(project_id, version, rule.kind, rule.pattern, evaluation)
            out[rule.id] = evaluation
        return out


def labels_by_record(found: Sequence[Rule], evaluations: Mapping[int, Evaluation]) -> dict[int, str]:
    """Record → the labels of the rules matching it, in rule order, ``|``-joined."""
    by_record: dict[int, list[str]] = {}
    for rule in found:
        for rid in evaluations[rule.id].matched:
            if rule.label not in by_record.setdefault(rid, []):
                by_record[rid].append(rule.label)
    return {rid: "|".join(labels) for rid, labels in by_record.items()}


def with_rules(info: ProjectInfo, found: Sequence[Rule], views: Sequence[RecordView]) -> list[RecordView]:
    """Cards with the rules (``found``, read in the card's transaction) matching their records' texts."""
    if not found:
        return list(views)
    return [dataclasses.replace(v, rules=matching(found, v.text, info.label_names)) for v in views]


def statistics(
    project: str,
    rules: Sequence[Rule],
    evaluations: Mapping[int, Evaluation],
    *,
    total: int,
    finals: Mapping[int, str],
    multi_label: bool = False,
) -> list[RuleInfo]:
    """Per rule: coverage, overlap (matched by another rule too), conflicts (matched by another rule of
    a different label) and precision against ``finals`` (record → final label). ``multi_label``: the
    finals are ``|``-joined sets, a rule is right where its label is in the set, and two labels' rules on
    one record are no conflict (a record may be both)."""
    by_label: dict[str, set[int]] = {}
    hits: dict[int, int] = {}  # record → rules matching it
    for rule in rules:
        found = evaluations[rule.id].matched
        by_label.setdefault(rule.label, set()).update(found)
        for rid in found:
            hits[rid] = hits.get(rid, 0) + 1
    # A record matched by two rules of one label is an overlap, not a conflict.
    label_hits: dict[int, int] = {}
    for found in by_label.values():
        for rid in found:
            label_hits[rid] = label_hits.get(rid, 0) + 1
    out = []
    for rule in rules:
        evaluation = evaluations[rule.id]
        found = evaluation.matched
        labeled = [finals[rid] for rid in found if rid in finals]
        if multi_label:
            agreeing = sum(rule.label in multilabel.split(label) for label in labeled)
        else:
            agreeing = sum(label == rule.label for label in labeled)
        out.append(
            RuleInfo(
                id=int(rule.id or 0),
                project=project,
                label=rule.label,
                kind=rule.kind,
                pattern=rule.pattern,
                created_by=rule.created_by,
                created_at=rule.created_at,
                description=describe(rule.kind, rule.pattern, rule.label),
                total=total,
                matched=len(found),
                overlap=sum(hits[rid] > 1 for rid in found),
                conflicts=0 if multi_label else sum(label_hits[rid] > 1 for rid in found),
                labeled=len(labeled),
                agreeing=agreeing,
                precision=agreeing / len(labeled) if len(labeled) >= MIN_PRECISION_SUPPORT else None,
                timed_out=evaluation.timed_out,
            )
        )
    return out
