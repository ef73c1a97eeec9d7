"""Label guidelines: a description and a few examples per label, as stored and shown (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import LabelbotError

#: Examples per label: a card's guidelines are read in a glance.
MAX_EXAMPLES = 3
#: Characters of a description and of an example (Slack shows 3,000 per section; a modal lists all).
MAX_DESCRIPTION = 500
MAX_EXAMPLE = 300


def check_guideline(description: str | None, examples: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """A description and examples as stored (each on one line); LabelbotError past the limits."""
    description = " ".join(str(description or "").split())
    cleaned = tuple(" ".join(str(e).split()) for e in examples)
    if len(description) > MAX_DESCRIPTION:
        raise LabelbotError(
            f"A label's description is at most {MAX_DESCRIPTION} characters "
            f"(this one has {len(description)})."
        )
    if len(cleaned) > MAX_EXAMPLES:
        raise LabelbotError(f"A label has at most {MAX_EXAMPLES} examples (got {len(cleaned)}).")
    if any(not e for e in cleaned):
        raise LabelbotError("An example must not be empty.")
    long = [e for e in cleaned if len(e) > MAX_EXAMPLE]
    if long:
        raise LabelbotError(
            f"An example is at most {MAX_EXAMPLE} characters ({long[0][:30]!r}... has {len(long[0])})."
        )
    return description, cleaned
