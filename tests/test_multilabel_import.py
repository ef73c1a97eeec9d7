"""Importing "none of these" into a multi-label project (issue 13): the cell ``none`` or a JSONL ``[]`` is
the empty set, while an empty cell (or a null / missing JSONL label) stays unanswered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import UnknownLabel
from core.service import LabelingService

LABELS = ["billing", "urgent", "refund"]


def _answered(service: LabelingService) -> dict[str, str]:
    return service.final_labels("p")


def test_csv_none_is_the_empty_set_and_an_empty_cell_is_unanswered(
    service: LabelingService, tmp_path: Path
) -> None:
    service.create_project("p", LABELS, multi_label=True)
    path = tmp_path / "in.csv"
    path.write_text("id,text,label\na,first,none\nb,second, NONE \nc,third,\nd,fourth,urgent|refund\n")
    result = service.import_file("p", path, label_column="label")
    assert result.annotations == 3
    assert _answered(service) == {"a": "", "b": "", "d": "urgent|refund"}
    status = service.status("p")
    assert status.labeled == 3 and status.label_counts == {"billing": 0, "urgent": 1, "refund": 1}
    # "none" beside a label is no label name: one line naming the file and line.
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,label\ne,fifth,none|billing\n")
    with pytest.raises(UnknownLabel, match=r"bad.csv, line 2: 'none' is not a label"):
        service.import_file("p", bad, label_column="label")


def test_jsonl_empty_list_is_the_empty_set_and_null_is_unanswered(
    service: LabelingService, tmp_path: Path
) -> None:
    service.create_project("p", LABELS, multi_label=True)
    lines = [
        {"id": "a", "text": "first", "label": []},
        {"id": "b", "text": "second", "label": None},
        {"id": "c", "text": "third"},
        {"id": "d", "text": "fourth", "label": "none"},
        {"id": "e", "text": "fifth", "label": ["billing"]},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = service.import_file("p", path, label_column="label")
    assert result.annotations == 3
    assert _answered(service) == {"a": "", "d": "", "e": "billing"}
    # The export writes the empty set back as [] and unanswered as null: a round trip keeps both.
    service.export("p", tmp_path / "out.jsonl")
    rows = map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    exported = {r["id"]: r["label"] for r in rows}
    assert exported == {"a": [], "b": None, "c": None, "d": [], "e": ["billing"]}


def test_a_label_named_none_is_that_label(service: LabelingService, tmp_path: Path) -> None:
    service.create_project("p", ["None", "billing"], multi_label=True)
    path = tmp_path / "in.csv"
    path.write_text("id,text,label\na,first,None\nb,second,billing\n")
    service.import_file("p", path, label_column="label")
    assert _answered(service) == {"a": "None", "b": "billing"}


def test_single_label_projects_keep_an_empty_jsonl_list_unanswered(
    service: LabelingService, tmp_path: Path
) -> None:
    service.create_project("p", LABELS)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "first", "label": []}) + "\n"
                    + json.dumps({"id": "b", "text": "second", "label": ["refund"]}) + "\n")
    result = service.import_file("p", path, label_column="label")
    assert result.annotations == 1 and result.new_records == 2
    assert _answered(service) == {"b": "refund"}
