"""Plain, frozen values the service returns. No ORM rows or numpy arrays cross the boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class LabelDef:
    name: str
    description: str = ""
    # Guidelines: a few example texts shown with the description (core.guidelines.MAX_EXAMPLES at most).
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    labels: tuple[LabelDef, ...]
    answers_per_record: int
    strategy: str
    created_at: datetime
    # Crowd: a tie among exactly k answers asks one more labeler before the record goes to review.
    extra_answer_on_disagreement: bool = False
    # Share of each labeler's cards that are gold questions (records with an admin's gold label).
    gold_rate: float = 0.0
    # Labels retired from the set (core.labelset.retire): their answers stay in the history, marked.
    retired_labels: tuple[str, ...] = ()
    # An answer is a set of labels, possibly empty (core.multilabel); kept in the settings JSON.
    multi_label: bool = False

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)


@dataclass(frozen=True)
class RecordView:
    """A record as a labeler sees it, with the model's guess and why it was picked."""

    project: str
    record_id: int
    external_id: str
    text: str
    predicted_label: str | None = None
    confidence: float | None = None
    reason: str = ""
    rules: tuple[str, ...] = ()  # the keyword/regex rules matching it, as shown ("refund → request_refund")


@dataclass(frozen=True)
class AnswerResult:
    project: str
    record_id: int
    external_id: str
    user: str
    label: str
    changed: bool  # False when the same user gave the same label before (a repeated click)
    complete: bool  # the record now has all the answers it needs
    retrain_started: bool = False
    deliveries: tuple[int, ...] = ()  # the outbox rows this click wrote (core.deliveries)


@dataclass(frozen=True)
class UndoResult:
    project: str
    record_id: int
    external_id: str
    user: str
    label: str  # the label that was removed
    deliveries: tuple[int, ...] = ()  # the outbox rows this undo wrote (core.deliveries)


@dataclass(frozen=True)
class SimilarRecord:
    record_id: int
    external_id: str
    text: str
    score: float  # cosine similarity
    label: str | None = None  # the final label if the record has one
    predicted_label: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote, and what its crowd answers did to the project's answers per record (k).

    A project still at the default k with no answers yet takes k from a multi-answer import: the most
    common number of answers per record (``k_from_data``). Every answer counts in the aggregate either
    way; ``records_over_k`` and ``records_under_k`` count the imported records with more answers than k
    and with fewer (those wait for labelers before they are complete).
    """

    project: str
    path: str
    rows: int
    new_records: int
    existing_records: int
    annotations: int
    embedded: int
    answers_per_record: int = 1  # the project's k after the import
    k_from_data: bool = False  # the import set k
    records_at_k: int = 0  # imported records with exactly k answers (what made k, when set from the data)
    records_over_k: int = 0
    records_under_k: int = 0

    def notes(self) -> list[str]:
        """The sentences an import summary adds about answers per record (none for a plain import)."""
        k = self.answers_per_record
        answered = self.records_at_k + self.records_over_k + self.records_under_k
        notes = []
        if self.k_from_data:
            notes.append(
                f"Answers per record set to {k} from the data (most records have {k} answers: "
                f"{self.records_at_k:,} of {answered:,})."
            )
        if self.records_over_k:
            notes.append(
                f"{self.records_over_k:,} records have more than {k} "
                f"{'answer' if k == 1 else 'answers'}: all of them count in the aggregate."
            )
        if self.records_under_k:
            notes.append(
                f"{self.records_under_k:,} records have fewer than {k} answers: "
                "they get a label once labelers add the rest."
            )
        return notes


@dataclass(frozen=True)
class EmbedResult:
    """One run of the embedding job: vectors written, still missing, whether the project switched."""

    project: str
    model: str
    embedded: int
    remaining: int
    switched: bool = False
    stopped: bool = False


@dataclass(frozen=True)
class EmbeddingStatus:
    """A project's embedding model, the model it is moving to (or None), and vectors had and missing."""

    project: str
    model: str
    target: str | None
    with_vectors: int
    missing: int


@dataclass(frozen=True)
class ModelRunInfo:
    id: int
    project: str
    created_at: datetime
    n_labels: int
    strategy: str
    # cv_accuracy, cv_macro_f1, cv_log_likelihood (absent when too few labels); c and next_c (the
    # regularisation of this fit and of the next); label_names_used and label_name_agreement (the
    # label-name prior, core.learner); stability_kappa.
    metrics: dict[str, float]
    label_counts: dict[str, int]
    duration_seconds: float

    @property
    def learner(self) -> str:
        """The learner of this run in words, for status texts."""
        m = self.metrics
        text = "logistic regression" + (f", C={m['c']:g}" if "c" in m else "")
        if "label_name_agreement" in m:
            share = f"{m['label_name_agreement']:.0%}"
            if m.get("label_names_used"):
                text += f", with the label names as examples (they match {share} of the labels)"
            else:
                text += f"; label names not used (they match only {share} of the labels)"
        if "next_c" in m and m["next_c"] != m.get("c"):
            text += f"; cross-validation chose C={m['next_c']:g} for the next retrain"
        return text


@dataclass(frozen=True)
class AnnotatorStats:
    user: str
    answers: int
    median_seconds: float | None = None
    agreement: float | None = None  # share of answers equal to the aggregate label
    estimated_accuracy: float | None = None  # hierarchical MACE (gold answers count), when k >= 3
    gold_answers: int = 0  # answers given to records after they had a gold label (gold questions)
    gold_correct: int = 0  # ... equal to the gold label (multi-label: the whole set)
    # Multi-label: the share of gold questions' label decisions (each label yes/no) equal to the gold set's.
    gold_label_accuracy: float | None = None


@dataclass(frozen=True)
class ProjectStatus:
    project: str
    total: int
    labeled: int  # records with a final label
    annotations: int
    label_counts: dict[str, int]
    annotators: tuple[AnnotatorStats, ...]  # ranked by answers, descending
    latest_run: ModelRunInfo | None
    remaining: int  # records that still need an answer
    agreement: dict[str, float] = field(default_factory=dict)  # e.g. krippendorff_alpha
    pairs: tuple[PairAgreement, ...] = ()  # Cohen's kappa per annotator pair with enough overlap
    # Complete records whose answers are split evenly: labeled by the aggregate, in review until gold.
    ties: int = 0
    rules: tuple[RuleInfo, ...] = ()  # keyword/regex rules with coverage and precision (core.rules)
    multi_label: bool = False  # label_counts then count the records carrying each label

    @property
    def progress(self) -> float:
        return self.labeled / self.total if self.total else 0.0


@dataclass(frozen=True)
class ExportResult:
    project: str
    path: str
    rows: int
    format: str


@dataclass(frozen=True)
class PairAgreement:
    """Cohen's kappa between two annotators over the complete records both answered."""

    first: str
    second: str
    kappa: float  # nan when both used one and the same label throughout
    overlap: int  # records both answered


@dataclass(frozen=True)
class ReviewItem:
    """A record the admin should decide: why, what the crowd said so far and what the model thinks."""

    project: str
    record_id: int
    external_id: str
    text: str
    kind: str  # "tie", "low_agreement", "label_issue" or "model_disagrees"
    reason: str  # one sentence for the admin
    label: str | None  # the current aggregate label (for a tie, the one annotator quality chose)
    answers: tuple[tuple[str, str], ...]  # (annotator, label), oldest first
    suggested_label: str | None = None  # what the model thinks
    confidence: float | None = None  # the model's probability of suggested_label


@dataclass(frozen=True)
class CardUpdate:
    """What a card needs after a click (the record as it is now) and the clicker's next cards."""

    project: ProjectInfo
    record: RecordView
    next: tuple[RecordView, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """An outbox row claimed by this process (core.deliveries): what to deliver to ``user``.

    ``kind``: ``answered`` / ``skipped`` / ``restored`` (update the clicked card at ``address``, showing
    ``label`` and ``complete`` for an answer) or ``cards`` (hand out and send ``n`` cards; with none
    left, say so when ``notify_empty``). ``address`` and ``reply_to`` are the client's own strings.
    ``attempts`` counts this one; ``token`` proves the claim when the outcome is reported.
    """

    id: int
    project_id: int
    user: str
    kind: str
    record_id: int | None
    label: str | None
    complete: bool
    n: int
    notify_empty: bool
    address: str | None
    reply_to: str | None
    attempts: int
    created_at: datetime
    token: str


@dataclass(frozen=True)
class RuleInfo:
    """A keyword/regex rule (core.rules) and how it does on the project's records and final labels."""

    id: int
    project: str
    label: str
    kind: str  # keywords / regex
    pattern: str
    created_by: str
    created_at: datetime
    description: str  # "refund, money back → request_refund"
    total: int = 0  # records in the project
    matched: int = 0
    overlap: int = 0  # matched records another rule matches too
    conflicts: int = 0  # matched records a rule of another label matches too
    labeled: int = 0  # matched records with a final label
    agreeing: int = 0  # of those, labeled as the rule says
    precision: float | None = None  # agreeing / labeled; None with too few labeled to tell
    timed_out: bool = False  # the pattern ran past its time limit: it matches nothing

    @property
    def coverage(self) -> float:
        return self.matched / self.total if self.total else 0.0
