"""The likely-mislabel check per label in multi-label projects (issue 13): each label's yes/no through
confident learning on out-of-fold one-vs-rest probabilities, the reason naming the label."""

from __future__ import annotations

import numpy as np
import pytest

from core import review
from core.io import ImportRow
from core.service import LabelingService

# Label 0: rows 0-2 say yes and the model agrees; row 5 says no, the model gives it 0.97.
# Label 1: rows 3-5 say yes; row 5's 0.01 is the surest disagreement of all.
GIVEN = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
PROBA = np.array([[0.9, 0.05], [0.95, 0.1], [0.85, 0.08], [0.1, 0.9], [0.05, 0.95], [0.97, 0.01]])


def test_find_label_issues_per_label_by_hand() -> None:
    assert review.find_label_issues_per_label(GIVEN, PROBA) == {5: [1, 0]}
    # One label alone: the same rule, only that label named.
    assert review.find_label_issues_per_label(GIVEN[:, :1], PROBA[:, :1]) == {5: [0]}
    # A label every record answers one way has nothing to compare with.
    constant = np.column_stack([GIVEN[:, 0], np.ones(6, dtype=int)])
    assert review.find_label_issues_per_label(constant, PROBA) == {5: [0]}
    agreeing = np.where(PROBA >= 0.5, 1, 0)
    assert review.find_label_issues_per_label(agreeing, PROBA) == {}
    with pytest.raises(ValueError, match="one shape"):
        review.find_label_issues_per_label(GIVEN, PROBA[:, :1])


BILLING = ["invoice charge payment {}", "billed twice on my card {}", "the invoice amount is wrong {}"]
URGENT = ["asap please right now {}", "emergency help immediately {}", "critical outage asap {}"]
FILLER = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _texts() -> list[tuple[str, set[str]]]:
    rows = []
    for word in FILLER:
        rows += [(t.format(word), {"billing"}) for t in BILLING]
        rows += [(t.format(word), {"urgent"}) for t in URGENT]
    return rows


def test_review_names_the_label_a_set_likely_has_wrong(service: LabelingService) -> None:
    service.create_project("p", ["billing", "urgent", "refund"], multi_label=True)
    rows = _texts()
    service.import_rows("p", [ImportRow(i + 2, f"r{i}", text) for i, (text, _) in enumerate(rows)])
    wrong = 0  # "invoice charge payment alpha", answered {billing, urgent}
    for i, (_, names) in enumerate(rows):
        rid = service.find_record("p", f"r{i}").record_id
        service.record_answer("p", rid, "a", names | ({"urgent"} if i == wrong else set()), source="cli")
    items = [item for item in service.review_queue("p", 10) if item.kind == "label_issue"]
    assert [item.external_id for item in items] == [f"r{wrong}"]
    [item] = items
    assert item.label == "billing|urgent" and item.suggested_label == "billing"
    assert item.reason.startswith("Likely mislabel: 'urgent' is in the set, but a model trained without "
                                  "this record gives it 0.")
    given = float(item.reason.rsplit("gives it ", 1)[1].rstrip("."))
    assert given < 0.5 and item.confidence == pytest.approx(1 - given, abs=0.006)
    # The admin's gold set takes it off the queue.
    service.record_answer("p", item.record_id, "admin", {"billing"}, source="review")
    assert [i for i in service.review_queue("p", 10) if i.kind == "label_issue"] == []
