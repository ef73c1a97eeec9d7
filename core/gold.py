"""Gold questions: when a labeler's next card is a gold record (one with an admin's gold label), which
one, and what its card shows instead of the guess of a model that trained on the gold label.

The rate: a labeler's cards are numbered 0, 1, 2, ... (their answers, skips and cards held so far
give the next number) and cut into stretches of about ``1 / rate`` cards (card s in stretch
``floor(rate * s)``); each stretch has one gold card, at a place in it drawn from a uniform hashed from
(project, labeler, stretch): nobody can predict it, and after m cards a labeler has had
``floor(rate * m)`` or ``ceil(rate * m)`` gold cards (fewer when the gold records they have not seen run
out). Deterministic; no state kept.

The card: the latest model was trained on the gold labels, so its guess for a gold record is nearly
always the gold label itself. The training worker fits a second model without the gold records and ranks them
with the project's strategy as if they were unlabeled (:func:`held_out_queue_rows`); their guesses and
reasons are stored with the queue (``QueueItem.gold``), and a gold card shows those. In a multi-label
project the second model is the project's multi-label learner and its guess a set (canonical text).

The grade: in a multi-label project an answer to a gold question is right when its set equals the gold
set; :func:`label_decisions` also counts it per label, each label the yes/no question the multi-label
aggregation asks (``core.multilabel.yes_no``), so a set with one label wrong out of eight is told apart
from one that is all wrong.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from core import multilabel
from core.learner import EmbeddingClassifier
from core.multilabel_learner import SetNames
from core.strategies import get_strategy

#: Gold records whose held-out guesses one retrain stores (a random sample of them when there are more).
MAX_GOLD_QUEUE = 500


def _uniform(*parts: object) -> float:
    """A uniform in [0, 1) fixed by ``parts`` (the same in every process and on every run)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def gold_slots(project_id: int, user: str, rate: float, start: int, n: int) -> list[int]:
    """Which of ``user``'s cards ``start`` .. ``start + n - 1`` are gold questions (offsets from
    ``start``, ascending).

    Card s belongs to stretch ``floor(rate * s)``; stretch j (the cards s with j <= rate * s < j + 1,
    ``1 / rate`` of them give or take one) holds gold question j, on the card ``u_j`` picks in it.
    """
    r = Fraction(rate).limit_denominator(10_000)  # exact stretches: 0.2 is 1/5, not 0.2000000000000000111
    if r <= 0 or n <= 0:
        return []
    slots = []
    for s in range(start, start + n):
        j = math.floor(r * s)
        first, end = math.ceil(j / r), math.ceil((j + 1) / r)
        if s == first + math.floor(_uniform(project_id, user, j) * (end - first)):
            slots.append(s - start)
    return slots


def gold_order(project_id: int, user: str, record_ids: Sequence[int]) -> list[int]:
    """``record_ids`` in the order ``user`` gets them as gold questions: fixed per labeler, and not the
    same for two labelers (who would otherwise meet the same gold record on the same day)."""
    return sorted(record_ids, key=lambda rid: (_uniform(project_id, user, "gold", rid), rid))


def held_out_queue_rows(
    *,
    project_id: int,
    strategy: str,
    record_ids: np.ndarray,
    vectors: np.ndarray,
    labeled_rows: np.ndarray,
    y: np.ndarray,
    gold_rows: np.ndarray,
    rng: np.random.Generator,
    learner: Callable[[], EmbeddingClassifier] = EmbeddingClassifier,
) -> list[dict]:
    """Queue rows (``gold=True``) for gold records: the guess and reason of a model fit without them.

    ``record_ids`` and ``vectors``: the pool; ``labeled_rows`` and ``y``: what the retrain trained on;
    ``gold_rows``: pool rows of gold records. The held-out model trains on the labeled rows that are not
    gold (none, or one class only: no guess, the strategy's cold-start reasons, like any card before the
    first model); the project's strategy then ranks the gold rows as if nobody had labeled them. At
    most ``MAX_GOLD_QUEUE`` gold records, sampled with ``rng``. One more fit per retrain (of the
    project's ``learner``), in the training worker.
    """
    if len(gold_rows) > MAX_GOLD_QUEUE:
        gold_rows = np.sort(rng.choice(gold_rows, MAX_GOLD_QUEUE, replace=False))
    if len(gold_rows) == 0:
        return []
    keep = ~np.isin(labeled_rows, gold_rows)
    train_rows, train_y = labeled_rows[keep], y[keep]
    X = np.asarray(vectors[gold_rows], dtype=np.float32)
    scores, classes = None, ()
    if len(set(train_y.tolist())) >= 2:
        held_out = learner().fit(vectors[train_rows], train_y)
        scores = held_out.score_pool(X)
        # A multi-label model's classes are its label sets by bitmask (SetNames), never listed.
        classes = held_out.classes_ if isinstance(held_out.classes_, SetNames) else tuple(
            str(c) for c in held_out.classes_
        )
    picks = get_strategy(strategy).query(
        proba=None,
        scores=scores,
        embeddings=X,
        candidates=np.arange(len(gold_rows)),
        classes=classes,
        n=len(gold_rows),
        rng=rng,
        labeled=None,
    )
    return [
        {
            "project_id": project_id,
            "position": position,
            "record_id": int(record_ids[gold_rows[pick.index]]),
            "predicted_label": classes[int(scores.best[pick.index])] if scores is not None else None,
            "confidence": float(scores.best_proba[pick.index]) if scores is not None else None,
            # Never empty: a card with neither a guess nor a reason is given the latest model's guess.
            "reason": pick.reason or "random sample",
            "gold": True,
        }
        for position, pick in enumerate(picks)
    ]


def label_decisions(labels: Sequence[str], answer: str, gold_set: str) -> tuple[int, int]:
    """How many of ``labels`` a multi-label answer decides as the gold set does (each label yes or no,
    :func:`core.multilabel.yes_no`), and how many labels were decided."""
    right = sum(multilabel.yes_no(answer, label) == multilabel.yes_no(gold_set, label) for label in labels)
    return right, len(labels)
