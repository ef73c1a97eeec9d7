"""Reading import files and label sets, writing export files.

Over 400 lines because every input format (CSV, TSV, JSONL, label files) and its one-line
errors live together, so they stay consistent.

Pure parsing and validation: nothing here touches the database. Readers either return every
row or raise :class:`~core.errors.InputFileError` naming the file, the line and the problem, so
the caller never writes half an import.

Formats are chosen by extension (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``), by an
explicit ``fmt``, or by sniffing the first line when the extension is unknown.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError, InputFileError, LabelbotError, OutputFileError
from core.guidelines import check_guideline
from core.types import LabelDef

__all__ = [
    "MAX_LABEL_LENGTH",
    "ImportRow",
    "detect_format",
    "parse_label_list",
    "read_label_set",
    "read_records",
    "write_records",
]

# Slack caps the text of a select-menu option at 75 characters; a longer label could not be
# shown as a choice.
MAX_LABEL_LENGTH = 75

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_FORMAT_ALIASES = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "ndjson": "jsonl"}
_MAX_LISTED = 20  # valid labels / columns named in an error message before truncating
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One row of an import file, validated."""

    line: int  # 1-based; for CSV/TSV the physical line where the row starts (header is line 1)
    external_id: str
    text: str
    label: str | None = None
    annotator: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # the other columns, JSON-serializable


# --------------------------------------------------------------------------------------------
# Records


def detect_format(path: str | Path, fmt: str | None = None, first_line: str | None = None) -> str:
    """Return ``"csv"``, ``"tsv"`` or ``"jsonl"`` from ``fmt``, the extension, or the first line."""
    if fmt is not None:
        try:
            return _FORMAT_ALIASES[fmt.lower()]
        except KeyError:
            raise InputFileError(str(path), f"unknown format {fmt!r}; use csv, tsv or jsonl") from None
    ext = Path(path).suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    # Unknown extension (e.g. the SMS Spam Collection has none): look at the first line.
    head = (first_line or "").strip()
    if head.startswith("["):
        raise InputFileError(
            str(path), "looks like a JSON array; only JSON Lines (one object per line) is supported", 1
        )
    if head.startswith("{"):
        return "jsonl"
    if "\t" in head:
        return "tsv"
    return "csv"


def read_records(
    path: str | Path,
    *,
    text_column: str = "text",
    id_column: str | None = "id",
    label_column: str | None = None,
    annotator_column: str | None = None,
    labels: Collection[str] | None = None,
    id_column_required: bool = False,
    fmt: str | None = None,
) -> list[ImportRow]:
    """Read and validate every row of a CSV, TSV or JSON Lines file.

    Parameters
    ----------
    path : file to read (UTF-8, a BOM is accepted).
    text_column : column / key holding the text to label.
    id_column : column holding a stable external id. When it is absent from the file (and
        ``id_column_required`` is False) ids are the 1-based data row numbers, so importing the
        same file again gives the same ids. ``None`` always numbers the rows.
    label_column : optional column with existing labels; an empty cell means unlabeled.
    annotator_column : optional column naming who gave the label. Setting it switches to *long
        format*: several rows may share an id (one per annotator) but must carry the same text.
    labels : the valid label names; labels outside it are an error. ``None`` skips the check.
    id_column_required : the user named the id column explicitly, so its absence is an error.
    fmt : ``"csv"``, ``"tsv"`` or ``"jsonl"``; ``None`` decides by extension, then by sniffing.

    Returns
    -------
    rows : list of ImportRow in file order.

    Raises
    ------
    InputFileError : on the first problem; nothing is returned partially.
    """
    name = str(path)
    used = [
        ("text", text_column),
        ("id", id_column),
        ("label", label_column),
        ("annotator", annotator_column),
    ]
    used = [(role, col) for role, col in used if col is not None]
    for i, (role_a, col_a) in enumerate(used):
        for role_b, col_b in used[i + 1 :]:
            if col_a == col_b:
                raise InputFileError(name, f"the {role_a} column and the {role_b} column are both {col_a!r}")

    text = _read_text(path)
    first_line = next((ln for ln in text.split("\n") if ln.strip()), "")
    kind = detect_format(path, fmt, first_line)
    spec = _Spec(name, text_column, id_column, label_column, annotator_column, labels, id_column_required)
    if kind == "jsonl":
        raw_rows = _jsonl_rows(text, spec)
    else:
        raw_rows = _delimited_rows(text, spec, delimiter="\t" if kind == "tsv" else ",")
    return _validate(raw_rows, spec)


@dataclass
class _Spec:
    path: str
    text_column: str
    id_column: str | None
    label_column: str | None
    annotator_column: str | None
    labels: Collection[str] | None
    id_column_required: bool

    def error(self, problem: str, line: int | None = None) -> InputFileError:
        return InputFileError(self.path, problem, line)


def _read_text(path: str | Path) -> str:
    """Whole file as text; errors name the line of the first byte that is not UTF-8."""
    name = str(path)
    p = Path(path)
    if p.is_dir():
        raise InputFileError(name, "is a directory, not a file")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(name, "file not found") from None
    except OSError as exc:
        raise InputFileError(name, f"cannot read the file ({exc.strerror or exc})") from None
    if not data.strip():
        raise InputFileError(name, "the file is empty")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputFileError(name, "the file is UTF-16; save it as UTF-8", 1)
    data = data.removeprefix(_UTF8_BOM)  # no newline in the BOM, so line numbers are unchanged
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # b"\n" never occurs inside a multi-byte UTF-8 sequence, so counting it in the raw bytes
        # gives the physical line of the bad byte.
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise InputFileError(
            name, f"not valid UTF-8 (byte 0x{bad} at byte column {column}); save the file as UTF-8", line
        ) from None


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    lowered = {o.lower(): o for o in options}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(names: Sequence[str], noun: str) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        return f"{shown}, ... ({len(names)} {noun} in all)"
    return shown


def _delimited_rows(text: str, spec: _Spec, delimiter: str) -> list[ImportRow]:
    # TSV is read as plain tab-separated values without quoting: in the SMS Spam Collection a
    # text may start with '"' and quoting would merge messages (5,572 rows instead of 5,574).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # newline="" keeps "\r\n" inside quoted fields as is, and splits lines like the csv module
    # expects; str.splitlines would also split on U+2028 and friends, which may occur in texts.
    # strict: otherwise a quote left open swallows the rest of the file into one text silently.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise spec.error(f"cannot parse the header ({exc})", 1) from None
    header_end = reader.line_num
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, col in enumerate(header):
        if col in seen and col:
            raise spec.error(f"column {col!r} appears twice in the header", 1)
        seen[col] = i

    def column(col: str, role: str) -> int:
        if col in seen:
            return seen[col]
        hint = _did_you_mean(col, header)
        if len(header) == 1 and ";" in header[0] and delimiter == ",":
            hint += " (is the file separated by ';'? Only ',' (.csv) and tab (.tsv) are supported)"
        elif len(header) == 1 and "\t" not in text.split("\n", 1)[0] and delimiter == "\t":
            hint += " (the header has no tab; is this a .csv file?)"
        raise spec.error(
            f"no {role} column {col!r}{hint}; the columns are: {_listing(header, 'columns')}", header_end
        )

    text_i = column(spec.text_column, "text")
    label_i = column(spec.label_column, "label") if spec.label_column is not None else None
    annot_i = column(spec.annotator_column, "annotator") if spec.annotator_column is not None else None
    id_i: int | None = None
    if spec.id_column is not None:
        if spec.id_column in seen:
            id_i = seen[spec.id_column]
        elif spec.id_column_required:
            column(spec.id_column, "id")  # raises with the list of columns
    used = {i for i in (text_i, id_i, label_i, annot_i) if i is not None}
    meta_cols = [(i, col) for i, col in enumerate(header) if i not in used]

    rows: list[ImportRow] = []
    append, width = rows.append, len(header)
    prev_end = header_end
    try:
        for fields in reader:  # the loop itself in C: a try/next per row cost a tenth of a 1M import
            start, end = prev_end + 1, reader.line_num
            prev_end = end
            if not "".join(fields).strip():  # one C call: a generator per row was a fifth of the time
                continue  # blank line, or a spreadsheet's trailing ",,," row
            if len(fields) != width:
                problem = f"expected {width} fields like the header, found {len(fields)}"
                if end > start:
                    problem += f" (the row spans lines {start}-{end}; is a quote left open?)"
                raise spec.error(problem, start)
            # Built once, as validated rows are (an empty label or annotator cell means none): a
            # second object per row was a quarter of the time of reading 1M rows.
            append(
                ImportRow(
                    start,
                    str(len(rows) + 1) if id_i is None else fields[id_i].strip(),
                    fields[text_i],
                    (fields[label_i].strip() or None) if label_i is not None else None,
                    (fields[annot_i].strip() or None) if annot_i is not None else None,
                    {col: fields[i] for i, col in meta_cols} if meta_cols else {},
                )
            )
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            problem = "a quote opened in this row is never closed"
        else:
            problem = f"cannot parse the row ({exc}; a quoted field must be quoted as a whole)"
        raise spec.error(problem, prev_end + 1) from None
    return rows


def _scalar(value: Any, what: str, spec: _Spec, line: int, *, allow_float: bool = False) -> str | None:
    """A JSON value as a string; None for null. Objects, arrays and booleans are errors."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list)):
        kind = (
            "a boolean" if isinstance(value, bool) else "an object" if isinstance(value, dict) else "a list"
        )
        raise spec.error(f"the {what} is {kind} ({json.dumps(value)[:40]}); expected a string", line)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and allow_float:
        return str(value)
    raise spec.error(f"the {what} is a number with a fraction ({value!r}); expected a string", line)


def _jsonl_rows(text: str, spec: _Spec) -> list[ImportRow]:
    objects: list[tuple[int, dict[str, Any]]] = []
    # Split on "\n" only: JSON strings may hold a raw U+2028, which splitlines() would cut.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise spec.error(f"invalid JSON ({exc.msg} at column {exc.colno})", number) from None
        if not isinstance(obj, dict):
            raise spec.error(f"expected a JSON object ({{...}}), found {type(obj).__name__}", number)
        objects.append((number, obj))
    if not objects:
        raise spec.error("no records in the file")

    all_keys: list[str] = list(dict.fromkeys(k for _, obj in objects for k in obj))

    def require_somewhere(col: str, role: str) -> None:
        # A key missing on some lines means an empty value there; missing on every line is
        # almost surely a misspelled option.
        if col not in all_keys:
            raise spec.error(
                f"no line has a {role} key {col!r}{_did_you_mean(col, all_keys)}; "
                f"the keys are: {_listing(all_keys, 'keys')}"
            )

    require_somewhere(spec.text_column, "text")
    if spec.label_column is not None:
        require_somewhere(spec.label_column, "label")
    if spec.annotator_column is not None:
        require_somewhere(spec.annotator_column, "annotator")
    use_ids = spec.id_column is not None and spec.id_column in all_keys
    if spec.id_column is not None and not use_ids and spec.id_column_required:
        require_somewhere(spec.id_column, "id")
    used = {spec.text_column, spec.label_column, spec.annotator_column}
    if use_ids:
        used.add(spec.id_column)

    rows: list[ImportRow] = []
    for number, obj in objects:
        if spec.text_column not in obj:
            raise spec.error(
                f"no {spec.text_column!r} key on this line; its keys are: {_listing(list(obj), 'keys')}",
                number,
            )
        text_value = _scalar(obj[spec.text_column], "text", spec, number, allow_float=True)
        if use_ids:
            assert spec.id_column is not None
            if spec.id_column not in obj:
                raise spec.error(
                    f"no {spec.id_column!r} key on this line, while other lines have one", number
                )
            external_id = (_scalar(obj[spec.id_column], "id", spec, number) or "").strip()
        else:
            external_id = str(len(rows) + 1)
        label = annotator = None
        empty_set = False
        if spec.label_column is not None:
            value = obj.get(spec.label_column)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):  # a multi-label set
                # [] is "none of these" (kept as ""), where a missing or null label is unanswered.
                empty_set = not any(v.strip() for v in value)
                value = "|".join(value)
            label = (_scalar(value, "label", spec, number) or "").strip()
        if spec.annotator_column is not None:
            annotator = (_scalar(obj.get(spec.annotator_column), "annotator", spec, number) or "").strip()
        rows.append(
            ImportRow(
                line=number,
                external_id=external_id,
                text=text_value or "",
                label="" if empty_set else label or None,
                annotator=annotator or None,
                metadata={k: v for k, v in obj.items() if k not in used},
            )
        )
    return rows


def _validate(raw_rows: list[ImportRow], spec: _Spec) -> list[ImportRow]:
    """``raw_rows`` themselves, once every one is valid."""
    if not raw_rows:
        raise spec.error("no data rows (only a header)")
    valid = list(spec.labels) if spec.labels is not None else None
    valid_set = set(valid) if valid is not None else None
    long_format = spec.annotator_column is not None
    first_line: dict[str, tuple[int, str]] = {}  # id -> (line, text) where it first appeared
    pairs: dict[tuple[str, str | None], int] = {}  # (id, annotator) -> line, long format only
    for row in raw_rows:
        if not row.external_id:
            raise spec.error(f"empty id in column {spec.id_column!r}", row.line)
        if not row.text.strip():
            raise spec.error(f"empty text in column {spec.text_column!r}", row.line)
        label, annotator = row.label, row.annotator
        if label and valid_set is not None and label not in valid_set:  # "": a JSONL [] (no label)
            assert valid is not None
            raise spec.error(
                f"unknown label {label!r}{_did_you_mean(label, valid)}; "
                f"valid labels are: {_listing(valid, 'labels')}",
                row.line,
            )
        seen = first_line.get(row.external_id)
        if seen is None:
            first_line[row.external_id] = (row.line, row.text)
        elif not long_format:
            raise spec.error(f"duplicate id {row.external_id!r} (first on line {seen[0]})", row.line)
        elif seen[1] != row.text:
            raise spec.error(
                f"id {row.external_id!r} has a different text than on line {seen[0]}; "
                "rows of one id must carry the same text",
                row.line,
            )
        if long_format:
            key = (row.external_id, annotator)
            if key in pairs:
                who = f"annotator {annotator!r}" if annotator is not None else "an empty annotator"
                raise spec.error(
                    f"duplicate row for id {row.external_id!r} and {who} (first on line {pairs[key]})",
                    row.line,
                )
            pairs[key] = row.line
    return raw_rows


# --------------------------------------------------------------------------------------------
# Label sets


def _check_label_names(defs: list[LabelDef], fail: Callable[[str], Exception]) -> list[LabelDef]:
    if not defs:
        raise fail("no labels given")
    seen: set[str] = set()
    for position, label in enumerate(defs, start=1):
        if not label.name:
            raise fail(f"label {position} has an empty name")
        if any(ch in label.name for ch in "\n\r\t"):
            raise fail(f"label {label.name!r} contains a line break or tab")
        if len(label.name) > MAX_LABEL_LENGTH:
            raise fail(
                f"label {label.name[:30]!r}... is {len(label.name)} characters long; Slack shows at most "
                f"{MAX_LABEL_LENGTH} characters in a menu option"
            )
        if label.name in seen:
            raise fail(f"label {label.name!r} appears twice")
        seen.add(label.name)
    return defs


def parse_label_list(text: str) -> list[LabelDef]:
    """Labels from a comma-separated list such as ``"ham, spam"``.

    Raises ConfigError for empty or duplicate names and names over 75 characters.
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"Label list {text!r}: {problem}.")

    defs = [LabelDef(part.strip()) for part in text.split(",")]
    return _check_label_names(defs, fail)


def label_set_is_multi_label(path: str | Path) -> bool:
    """Whether a label set file says ``multi_label: true`` beside its ``labels`` (read_label_set checks
    the rest of the file)."""
    try:
        text = _read_text(path)
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        return False
    if not isinstance(data, dict) or "labels" not in data or "multi_label" not in data:
        return False
    if not isinstance(data["multi_label"], bool):
        raise InputFileError(str(path), "multi_label must be true or false")
    return data["multi_label"]


def read_label_set(path: str | Path) -> list[LabelDef]:
    """Label set from a YAML (``.yml``/``.yaml``) or JSON file.

    Accepted shapes: a list of names; a list of ``{name, description}`` objects; a mapping
    ``name: description``; any of these under a top-level ``labels`` key. Descriptions are
    optional and collapsed to one line.
    """
    name = str(path)
    text = _read_text(path)
    is_json = Path(path).suffix.lower() == ".json"
    try:
        # YAML is (almost) a superset of JSON, so unknown extensions are read as YAML.
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(name, f"invalid JSON ({exc.msg} at column {exc.colno})", exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        raise InputFileError(name, f"invalid YAML ({problem})", mark.line + 1 if mark else None) from None

    def fail(problem: str) -> InputFileError:
        return InputFileError(name, problem)

    if (
        isinstance(data, dict)
        and set(data) in ({"labels"}, {"labels", "multi_label"})
        and isinstance(data["labels"], (list, dict))
    ):
        data = data["labels"]  # beside it, ``multi_label: true`` (label_set_is_multi_label)
    defs: list[LabelDef] = []
    if isinstance(data, list):
        for position, item in enumerate(data, start=1):
            if isinstance(item, dict):
                extra = set(item) - {"name", "description", "examples"}
                if extra or "name" not in item:
                    raise fail(
                        f"label {position}: expected keys 'name' and optionally 'description' and "
                        f"'examples', found {sorted(map(str, item))}"
                    )
                defs.append(_guided_label(_label_name(item["name"], fail), item, fail))
            else:
                defs.append(LabelDef(_label_name(item, fail)))
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict):  # name: {description: ..., examples: [...]}
                extra = set(value) - {"description", "examples"}
                if extra:
                    raise fail(f"label {key!r}: expected 'description' and 'examples', found {sorted(extra)}")
                defs.append(_guided_label(_label_name(key, fail), value, fail))
            else:
                defs.append(LabelDef(_label_name(key, fail), _description(value, fail)))
    else:
        found = "nothing" if data is None else type(data).__name__
        raise fail(
            f"expected a list of label names, a list of {{name, description}} objects, or a mapping "
            f"name: description; found {found}"
        )
    return _check_label_names(defs, fail)


def _guided_label(name: str, item: Mapping[str, Any], fail: Callable[[str], Exception]) -> LabelDef:
    """A label with its guidelines: ``description`` and a list of ``examples`` (core.guidelines)."""
    examples = item.get("examples") or []
    if isinstance(examples, str):
        examples = [examples]
    if not isinstance(examples, list) or any(isinstance(e, (dict, list)) or e is None for e in examples):
        raise fail(f"label {name!r}: 'examples' must be a list of texts")
    try:
        description, cleaned = check_guideline(_description(item.get("description"), fail), examples)
    except LabelbotError as exc:
        raise fail(f"label {name!r}: {str(exc).rstrip('.')}") from None
    return LabelDef(name, description, cleaned)


def _label_name(value: Any, fail: Callable[[str], Exception]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        # YAML 1.1 reads yes/no/on/off as booleans.
        raise fail(f"a label name was read as {str(value).lower()}; put the name in quotes")
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise fail(f"a label name must be text, found {type(value).__name__}")


def _description(value: Any, fail: Callable[[str], Exception]) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise fail(f"a label description must be text, found {type(value).__name__}")
    return " ".join(str(value).split())  # one line: it is shown next to the label


# --------------------------------------------------------------------------------------------
# Writing


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} to an export file")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON writes them (str() would give True/False)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def write_records(
    path: str | Path, rows: Iterable[Mapping[str, Any]], *, fmt: str, columns: Sequence[str]
) -> int:
    """Write ``rows`` as CSV (header from ``columns``) or JSON Lines; return the number of rows.

    Only ``columns`` are written, in that order; a missing key or None is an empty CSV cell or
    JSON null; booleans are ``true``/``false`` in both. The file is written next to its destination
    and moved into place at the end, so a failure never leaves half a file. A path that cannot be
    written raises :class:`OutputFileError` naming it and the reason.
    """
    kind = _FORMAT_ALIASES.get(fmt.lower())
    if kind not in ("csv", "jsonl"):
        raise ValueError(f"unknown export format {fmt!r}; use csv or jsonl")
    target = Path(path)
    if target.is_dir():  # checked first: os.replace would only fail after the whole file is written
        raise OutputFileError(str(path), "it is a directory")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputFileError(str(path), output_problem(exc, target)) from None
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            if kind == "csv":
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(columns)
                for row in rows:
                    writer.writerow([_csv_cell(row.get(c)) for c in columns])
                    count += 1
            else:
                for row in rows:
                    obj = {c: row.get(c) for c in columns}
                    f.write(json.dumps(obj, ensure_ascii=False, default=_json_default) + "\n")
                    count += 1
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by the owner only; give it a normal file's mode.
        os.chmod(tmp_name, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):  # a full disk, a file system gone read-only
            raise OutputFileError(str(path), output_problem(exc, target)) from None
        raise
    return count


def output_problem(exc: OSError, target: Path) -> str:
    """Why ``target`` cannot be written, in words: the missing directory, the file in the way, …"""
    parent = target.parent
    if isinstance(exc, IsADirectoryError) or target.is_dir():
        return "it is a directory"
    if isinstance(exc, NotADirectoryError | FileNotFoundError):
        ancestor = next((p for p in target.parents if p.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            return f"{ancestor} is a file, not a directory"
        return f"the directory {parent} does not exist"
    if isinstance(exc, PermissionError):
        return f"permission denied (in {parent})"
    return exc.strerror or str(exc)
