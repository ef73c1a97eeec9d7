"""The rules of the labeling loop, in one place: when a record is complete, when to retrain, when the
ranked queue needs refilling. Pure functions and one small settings object; the facade
(``core.service``) applies them, the job modules never decide them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.review import needs_extra_answer


def is_complete(
    n_answers: int,
    answers_per_record: int,
    *,
    has_gold: bool = False,
    labels: Sequence[str] | None = None,
    extra_answer_on_disagreement: bool = False,
) -> bool:
    """A record needs no more answers: an admin decided it, or it has k answers (k + 1 after a tie among
    exactly k when the project routes disagreements to one more labeler before review).

    ``labels`` (the record's answers) is only needed when that routing is on and ``n_answers == k``.
    """
    if has_gold:
        return True
    if n_answers < answers_per_record:
        return False
    if not extra_answer_on_disagreement or n_answers > answers_per_record:
        return True
    return not needs_extra_answer(list(labels or ()), answers_per_record)


def needs_labels_for_completeness(n_answers: int, answers_per_record: int, extra: bool) -> bool:
    """Whether :func:`is_complete` must see the record's answers (saves a query on every other click)."""
    return extra and n_answers == answers_per_record


@dataclass(frozen=True)
class RetrainPolicy:
    """When the model is retrained and the queue rebuilt.

    - ``every`` new or changed answers (0: never on answers; the scheduler's interval check remains);
    - after an import that added records or labels (the cold-start or updated ranking);
    - when a hand-out found fewer ranked records than asked for while unranked ones remain: the queue
      ran dry before the next retrain (with the same cooldown as answers).
    All of them on the training worker, off the click path; a service without one (the CLI) never
    retrains on its own.
    """

    every: int = 10
    #: After a retrain that took t seconds, the next one started by answers waits ``cooldown * t``
    #: seconds: on a large pool the training worker then uses at most 1 / (1 + cooldown) of a core,
    #: and answers given meanwhile go into the next retrain (0: no pause).
    cooldown: float = 1.0

    def due_after_answers(
        self, answers_since_retrain: int, *, seconds_since_last: float | None = None, last_took: float = 0.0
    ) -> bool:
        if self.every <= 0 or answers_since_retrain < self.every:
            return False
        return self.cooled_down(seconds_since_last, last_took)

    def cooled_down(self, seconds_since_last: float | None, last_took: float) -> bool:
        """Whether the pause after the last retrain in this process (None: none yet) is over."""
        return seconds_since_last is None or seconds_since_last >= self.cooldown * last_took

    @staticmethod
    def due_after_import(new_records: int, new_answers: int) -> bool:
        return new_records > 0 or new_answers > 0

    def due_after_handout(
        self,
        asked: int,
        ranked: int,
        unranked: int,
        *,
        seconds_since_last: float | None = None,
        last_took: float = 0.0,
    ) -> bool:
        """``unranked``: records the hand-out took from the pool because the queue had too few."""
        if self.every <= 0 or not (ranked < asked and unranked > 0):
            return False
        return self.cooled_down(seconds_since_last, last_took)
