"""Tests for core.io: import readers, label sets and export writers."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from core.errors import ConfigError, InputFileError
from core.io import ImportRow, parse_label_list, read_label_set, read_records, write_records
from core.types import LabelDef

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SMS = SHARED / "sms_spam" / "SMSSpamCollection"
BANKING_CATEGORIES = SHARED / "banking77" / "categories.json"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def raises_at(path: Path, line: int | None, *words: str, **kwargs) -> InputFileError:
    """Read ``path`` expecting an InputFileError at ``line`` whose message names the file and ``words``."""
    with pytest.raises(InputFileError) as info:
        read_records(path, **kwargs)
    err = info.value
    assert err.line == line, str(err)
    message = str(err)
    assert str(path) in message
    if line is not None:
        assert f"line {line}" in message
    for word in words:
        assert word in message, message
    return err


# ------------------------------------------------------------------------------------------
# Happy paths


def test_csv_fixture_ids_labels_metadata_and_multiline_line_numbers():
    rows = read_records(DATA / "records.csv", label_column="label")
    assert [r.external_id for r in rows] == ["a1", "a2", "a3"]  # ids stripped
    assert [r.line for r in rows] == [2, 3, 5]  # a2's text spans lines 3-4
    assert rows[1].text == 'Line one\nline two, with "quotes"'
    assert [r.label for r in rows] == ["card_arrival", None, "exchange_rate"]  # empty cell, stripped
    assert rows[0].metadata == {"source": "web"}
    assert rows[0].annotator is None


def test_multiline_field_keeps_line_numbers_of_later_errors(tmp_path):
    path = write(tmp_path, "m.csv", 'id,text\n1,"a\nb\nc"\n2,"d\r\ne"\n3,   \n')
    raises_at(path, 7, "empty text")


def test_text_kept_as_is_but_id_and_label_stripped(tmp_path):
    path = write(tmp_path, "t.csv", "id,text,label\n 7 ,  spaced text  , spam \n")
    (row,) = read_records(path, label_column="label", labels=["ham", "spam"])
    assert row == ImportRow(line=2, external_id="7", text="  spaced text  ", label="spam")


def test_tsv_keeps_quotes_in_text(tmp_path):
    path = write(tmp_path, "t.tsv", 'Label\tSMS\nham\t"Quoted" start\nspam\tmid "quote\nham\tend"\n')
    rows = read_records(path, text_column="SMS", label_column="Label")
    assert [r.text for r in rows] == ['"Quoted" start', 'mid "quote', 'end"']
    assert [r.label for r in rows] == ["ham", "spam", "ham"]
    assert [r.external_id for r in rows] == ["1", "2", "3"]
    assert [r.line for r in rows] == [2, 3, 4]


def test_jsonl_fixture_numbers_as_ids_blank_lines_and_metadata():
    rows = read_records(DATA / "records.jsonl", label_column="label", labels={"ham", "spam"})
    assert [r.external_id for r in rows] == ["1", "2", "x3"]
    assert [r.line for r in rows] == [1, 3, 4]
    assert [r.label for r in rows] == ["spam", None, "ham"]
    assert rows[1].text == "Ok lar… see you ☕"
    assert rows[0].metadata == {"lang": "en", "score": 0.5}
    assert rows[2].metadata == {"tags": ["a", "b"]}
    json.dumps([r.metadata for r in rows])  # metadata must stay JSON-serializable


def test_ndjson_extension_and_crlf(tmp_path):
    path = write(tmp_path, "r.ndjson", '{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [r.text for r in read_records(path)] == ["a", "b"]


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path, "bom.csv", "\ufeffid,text\nx,hello\n".encode())
    (row,) = read_records(path, id_column_required=True)
    assert (row.external_id, row.text, row.line) == ("x", "hello", 2)


def test_derived_ids_are_data_row_numbers_and_stable(tmp_path):
    path = write(tmp_path, "n.csv", "text,label\nfirst,\n\nsecond,\nthird,\n")
    first = read_records(path)
    assert [r.external_id for r in first] == ["1", "2", "3"]  # the blank line does not count
    assert [r.line for r in first] == [2, 4, 5]
    assert [r.external_id for r in read_records(path)] == ["1", "2", "3"]
    assert first[0].metadata == {"label": ""}  # unused columns are kept as metadata
    # id_column=None numbers rows even when an "id" column exists.
    path2 = write(tmp_path, "m.csv", "id,text\nz,a\ny,b\n")
    assert [r.external_id for r in read_records(path2, id_column=None)] == ["1", "2"]


def test_format_sniffed_without_extension_or_given_explicitly(tmp_path):
    tsv = write(tmp_path, "noext", "Label\tSMS\nham\thi, there\n")
    assert read_records(tsv, text_column="SMS")[0].text == "hi, there"
    jsonl = write(tmp_path, "noext2", '\n{"text": "x, y"}\n')
    assert read_records(jsonl)[0].text == "x, y"
    csv_file = write(tmp_path, "noext3", "text,other\nhello,1\n")
    assert read_records(csv_file)[0].metadata == {"other": "1"}
    forced = write(tmp_path, "data.txt", "text\tother\nhello, world\t1\n")
    assert read_records(forced, fmt="tsv")[0].text == "hello, world"


@pytest.mark.skipif(not SMS.exists(), reason="SMS Spam Collection not present at /work/shared/datasets")
def test_sms_spam_collection_parses_to_5574_rows():
    rows = read_records(SMS, text_column="SMS", label_column="Label", labels=["ham", "spam"])
    # Counts from the dataset's documentation (SOURCE.md), not from this reader.
    assert len(rows) == 5574
    assert Counter(r.label for r in rows) == {"ham": 4827, "spam": 747}
    assert rows[0].line == 2 and rows[-1].line == 5575


# ------------------------------------------------------------------------------------------
# Long format


def test_long_format_allows_one_row_per_annotator(tmp_path):
    path = write(
        tmp_path,
        "long.csv",
        "id,text,label,user\n1,hello,ham,alice\n1,hello,spam,bob\n2,bye,,\n1,hello,ham, carol \n",
    )
    rows = read_records(path, label_column="label", annotator_column="user", labels=["ham", "spam"])
    assert [(r.external_id, r.annotator, r.label) for r in rows] == [
        ("1", "alice", "ham"),
        ("1", "bob", "spam"),
        ("2", None, None),
        ("1", "carol", "ham"),
    ]


def test_long_format_duplicate_pair_names_both_lines(tmp_path):
    path = write(tmp_path, "long.csv", "id,text,label,user\n1,hi,a,alice\n2,yo,b,bob\n1,hi,b,alice\n")
    raises_at(path, 4, "'1'", "'alice'", "line 2", label_column="label", annotator_column="user")


def test_long_format_same_id_needs_same_text(tmp_path):
    path = write(tmp_path, "long.jsonl", '{"id":1,"text":"hi","u":"a"}\n{"id":1,"text":"hi!","u":"b"}\n')
    raises_at(path, 2, "'1'", "different text", "line 1", annotator_column="u")


# ------------------------------------------------------------------------------------------
# Errors


def test_missing_file(tmp_path):
    raises_at(tmp_path / "nope.csv", None, "not found")


def test_directory(tmp_path):
    raises_at(tmp_path, None, "directory")


@pytest.mark.parametrize("content", [b"", b"\n\n", "text\n", "id,text\n\n,,\n"])
def test_empty_file_or_header_only(tmp_path, content):
    path = write(tmp_path, "e.csv", content)
    err = raises_at(path, None)
    assert "empty" in err.problem or "no data rows" in err.problem


def test_jsonl_with_only_blank_lines(tmp_path):
    raises_at(write(tmp_path, "e.jsonl", "\n \n"), None, "empty")


def test_unknown_text_column_lists_columns(tmp_path):
    path = write(tmp_path, "c.csv", "id,Text,category\n1,a,b\n")
    raises_at(path, 1, "'text'", "'id', 'Text', 'category'", "did you mean 'Text'")


def test_unknown_label_column_and_semicolon_hint(tmp_path):
    path = write(tmp_path, "c.csv", "id,text\n1,a\n")
    raises_at(path, 1, "label column 'label'", label_column="label")
    semi = write(tmp_path, "s.csv", "id;text\n1;a\n")
    raises_at(semi, 1, "';'")


def test_missing_id_column_when_required(tmp_path):
    path = write(tmp_path, "c.csv", "text,label\na,b\n")
    raises_at(path, 1, "id column 'id'", "'text', 'label'", id_column_required=True)
    jsonl = write(tmp_path, "c.jsonl", '{"text": "a"}\n')
    raises_at(jsonl, None, "'uid'", "'text'", id_column="uid", id_column_required=True)


def test_jsonl_missing_keys(tmp_path):
    path = write(tmp_path, "k.jsonl", '{"id": 1, "text": "a"}\n{"id": 2, "body": "b"}\n')
    raises_at(path, 2, "'text'", "'body'")
    path = write(tmp_path, "k2.jsonl", '{"id": 1, "text": "a"}\n{"text": "b"}\n')
    raises_at(path, 2, "'id'")
    path = write(tmp_path, "k3.jsonl", '{"text": "a"}\n')
    raises_at(path, None, "'label'", label_column="label")


@pytest.mark.parametrize(
    "name, content, line",
    [
        ("w.csv", "id,text\n1,ok\n2,   \n", 3),
        ("w.tsv", "id\ttext\n1\tok\n2\t\n", 3),
        ("w.jsonl", '{"id": 1, "text": "ok"}\n{"id": 2, "text": " \\n "}\n', 2),
        ("n.jsonl", '{"id": 1, "text": null}\n', 1),
    ],
)
def test_empty_text(tmp_path, name, content, line):
    raises_at(write(tmp_path, name, content), line, "empty text")


def test_empty_id_cell(tmp_path):
    raises_at(write(tmp_path, "i.csv", "id,text\n1,a\n  ,b\n"), 3, "empty id")


def test_duplicate_ids_name_id_and_both_lines(tmp_path):
    path = write(tmp_path, "d.csv", "id,text\n5,a\n6,b\n 5 ,c\n")
    raises_at(path, 4, "duplicate id '5'", "line 2")
    jsonl = write(tmp_path, "d.jsonl", '{"id": 5, "text": "a"}\n{"id": "5", "text": "b"}\n')
    raises_at(jsonl, 2, "duplicate id '5'", "line 1")


def test_unknown_label_names_label_line_and_valid_labels(tmp_path):
    path = write(tmp_path, "l.csv", "id,text,label\n1,a,ham\n2,b,\n3,c,Spam\n")
    raises_at(
        path,
        4,
        "'Spam'",
        "'ham', 'spam'",
        "did you mean 'spam'",
        label_column="label",
        labels=["ham", "spam"],
    )


def test_unknown_label_with_long_label_set_is_truncated(tmp_path):
    valid = [f"intent_{i:03d}" for i in range(77)]
    path = write(tmp_path, "l.csv", "id,text,label\n1,a,intent_000\n2,b,zzz\n")
    err = raises_at(path, 3, "'zzz'", "77 labels in all", label_column="label", labels=valid)
    assert "intent_000" in err.problem and "intent_076" not in err.problem


def test_non_utf8_names_line_of_bad_byte(tmp_path):
    content = b'id,text\n1,ok\n2,"multi\nline"\n3,caf\xe9\n4,fine\n'
    raises_at(write(tmp_path, "b.csv", content), 5, "UTF-8", "0xe9")
    raises_at(write(tmp_path, "b.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n'), 2, "UTF-8")


def test_utf16_is_reported(tmp_path):
    raises_at(write(tmp_path, "u.csv", "id,text\n1,a\n".encode("utf-16")), 1, "UTF-16")


def test_invalid_json_line(tmp_path):
    path = write(tmp_path, "j.jsonl", '{"text": "a"}\n\n{"text": "b",}\n')
    raises_at(path, 3, "invalid JSON")


@pytest.mark.parametrize("value", ['["a", "b"]', '"just text"', "42"])
def test_jsonl_line_not_an_object(tmp_path, value):
    path = write(tmp_path, "o.jsonl", '{"text": "a"}\n' + value + "\n")
    raises_at(path, 2, "JSON object")


def test_jsonl_wrong_value_types(tmp_path):
    raises_at(write(tmp_path, "t.jsonl", '{"id": true, "text": "a"}\n'), 1, "id is a boolean")
    raises_at(write(tmp_path, "t2.jsonl", '{"text": {"a": 1}}\n'), 1, "text is an object")
    raises_at(write(tmp_path, "t3.jsonl", '{"id": 1.5, "text": "a"}\n'), 1, "1.5")


def test_json_array_file_is_explained(tmp_path):
    raises_at(write(tmp_path, "a.json", '[{"text": "a"}]\n'), 1, "JSON Lines")


@pytest.mark.parametrize(
    "content, line, count",
    [
        ("id,text\n1,a\n2,b,extra\n", 3, "found 3"),
        ("id,text,label\n1,a,x\n2\n", 3, "found 1"),
        ('id,text\n1,a\n2,"open\n3,c\n4,d",x\n5,e\n', 3, "spans lines 3-5"),
    ],
)
def test_wrong_number_of_fields(tmp_path, content, line, count):
    raises_at(write(tmp_path, "f.csv", content), line, "fields", count)


def test_unclosed_quote_does_not_swallow_the_rest(tmp_path):
    raises_at(write(tmp_path, "q.csv", 'id,text\n1,a\n2,"never closed\n3,c\n4,d\n'), 3, "never closed")
    raises_at(write(tmp_path, "q2.csv", 'id,text\n1,a\n2,"half"quoted\n'), 3, "quoted as a whole")


def test_same_column_for_two_roles(tmp_path):
    path = write(tmp_path, "s.csv", "id,text\n1,a\n")
    raises_at(path, None, "both 'text'", label_column="text")


def test_duplicate_header_column(tmp_path):
    raises_at(write(tmp_path, "h.csv", "id,text,text\n1,a,b\n"), 1, "'text' appears twice")


# ------------------------------------------------------------------------------------------
# Label sets


def test_label_set_yaml_objects_with_folded_description():
    labels = read_label_set(DATA / "labels.yaml")
    assert labels == [
        LabelDef("card_arrival", "Customer asks where their card is."),
        LabelDef("exchange_rate", ""),
        LabelDef("other", "Anything else"),
    ]


def test_label_set_yaml_mapping():
    assert read_label_set(DATA / "labels_mapping.yml") == [
        LabelDef("ham", "Normal message"),
        LabelDef("spam"),
    ]


def test_label_set_json_under_labels_key_collapses_newlines():
    assert read_label_set(DATA / "labels_objects.json") == [
        LabelDef("positive", "Happy customer"),
        LabelDef("negative"),
    ]


def test_label_set_plain_list(tmp_path):
    assert read_label_set(write(tmp_path, "l.yml", "- ' ham '\n- spam\n- 42\n")) == [
        LabelDef("ham"),
        LabelDef("spam"),
        LabelDef("42"),
    ]
    assert read_label_set(write(tmp_path, "l.json", '["a", "b"]')) == [LabelDef("a"), LabelDef("b")]


@pytest.mark.skipif(not BANKING_CATEGORIES.exists(), reason="Banking77 categories.json not present")
def test_banking77_categories_file_gives_77_labels():
    labels = read_label_set(BANKING_CATEGORIES)
    names = [label.name for label in labels]
    assert len(names) == 77 == len(set(names))
    assert "card_arrival" in names


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("d.yaml", "- a\n- b\n- a\n", ["'a' appears twice"]),
        ("e.yaml", "- a\n- ''\n", ["empty name"]),
        ("n.yaml", "- a\n-\n", ["empty name"]),
        ("long.json", json.dumps(["x" * 76]), ["76 characters", "75", "Slack"]),
        ("s.yaml", "just a string\n", ["found str"]),
        ("z.yaml", "", ["empty"]),
        ("b.yaml", "- yes\n- no\n", ["quotes"]),
        ("k.yaml", "- name: a\n  colour: red\n", ["'colour'"]),
        ("x.json", '["a",', ["invalid JSON"]),
        ("x.yaml", "- a\n- [b\n", ["invalid YAML"]),
        ("empty_list.yaml", "[]\n", ["no labels"]),
    ],
)
def test_label_set_errors(tmp_path, name, content, words):
    path = write(tmp_path, name, content)
    with pytest.raises(InputFileError) as info:
        read_label_set(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_label_set_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_label_set(tmp_path / "labels.yaml")


def test_parse_label_list():
    assert parse_label_list(" ham , spam,other ") == [LabelDef("ham"), LabelDef("spam"), LabelDef("other")]
    for bad, word in [
        ("a,,b", "empty"),
        ("a,b,", "empty"),
        ("a,b,a", "twice"),
        ("", "empty"),
        ("x" * 80, "75"),
    ]:
        with pytest.raises(ConfigError, match=word):
            parse_label_list(bad)


# ------------------------------------------------------------------------------------------
# Writing


TRICKY = [
    {"id": "1", "text": 'Héllo, "world"\nsecond line ☕', "label": "spam", "extra": "ignored"},
    {"id": "2", "text": "tab\there; semicolon, comma", "label": None},
    {"id": "3", "text": "日本語\r\nwith CRLF", "label": "ham"},
]


@pytest.mark.parametrize("fmt, name", [("csv", "out.csv"), ("jsonl", "out.jsonl")])
def test_write_then_read_round_trip(tmp_path, fmt, name):
    path = tmp_path / name
    n = write_records(path, iter(TRICKY), fmt=fmt, columns=["id", "text", "label"])
    assert n == 3
    rows = read_records(path, label_column="label", labels=["ham", "spam"])
    assert [r.external_id for r in rows] == ["1", "2", "3"]
    assert [r.text for r in rows] == [row["text"] for row in TRICKY]
    assert [r.label for r in rows] == ["spam", None, "ham"]
    assert all(r.metadata == {} for r in rows)  # "extra" was not in columns
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_write_jsonl_keeps_column_order_unicode_and_nulls(tmp_path):
    path = tmp_path / "o.jsonl"
    write_records(path, [{"b": None, "a": "ü"}, {"a": 1}], fmt="jsonl", columns=["a", "b"])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ['{"a": "ü", "b": null}', '{"a": 1, "b": null}']


def test_write_csv_header_and_empty_cells(tmp_path):
    path = tmp_path / "o.csv"
    assert write_records(path, [{"x": None, "y": 2}], fmt="csv", columns=["y", "x"]) == 1
    assert path.read_text(encoding="utf-8") == "y,x\n2,\n"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


def test_write_booleans_as_json_writes_them(tmp_path):
    rows = [{"tie": True, "n": 1}, {"tie": False, "n": 0}, {"tie": None, "n": 2}]
    write_records(tmp_path / "o.csv", rows, fmt="csv", columns=["tie", "n"])
    assert (tmp_path / "o.csv").read_text(encoding="utf-8") == "tie,n\ntrue,1\nfalse,0\n,2\n"
    write_records(tmp_path / "o.jsonl", rows, fmt="jsonl", columns=["tie"])
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines() == [
        '{"tie": true}', '{"tie": false}', '{"tie": null}'
    ]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "keep.csv"
    path.write_text("old content\n", encoding="utf-8")

    def rows():
        yield {"id": "1"}
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        write_records(path, rows(), fmt="csv", columns=["id"])
    assert path.read_text(encoding="utf-8") == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_write_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="xlsx"):
        write_records(tmp_path / "o.xlsx", [], fmt="xlsx", columns=["id"])
