"""Text DATA: a CSV/TSV or JSON Lines file with text and label columns, or a folder of class
subfolders holding one .txt file per example.

Everything about the user's files is checked before any work starts: the file or folder exists,
it is UTF-8, the named columns are there, every line parses, no text is empty, no label is missing,
there are at least two classes and no class folder is empty. Every bad line or file is listed at
once (the first few, with the total), as file:line for CSV/JSONL and as the file for folders.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from .splits import class_counts
from ..errors import HeadstartError, plural
from ..fileio import path_kind

CSV_SUFFIXES = frozenset({".csv", ".tsv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".json-lines", ".jsonlines", ".ndjson"})
TEXT_SUFFIX = ".txt"
FORMS = ("a .csv/.tsv file with a header row, a .jsonl file with one JSON object per line, "
         "or a folder with one subfolder of .txt files per class")
SHOW = 5  # bad items named in a message; the rest are counted


@dataclass(frozen=True)
class TextSamples:
    """Labelled texts: texts[i] has class classes[labels[i]] (and group groups[i], when read)."""

    texts: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    groups: tuple[str, ...] | None = None
    modality: ClassVar[str] = "text"

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return class_counts(self.labels, self.classes)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "TextSamples":
        idx = np.asarray(idx, dtype=np.int64)
        groups = None if self.groups is None else tuple(self.groups[i] for i in idx)
        return replace(self, texts=tuple(self.texts[i] for i in idx), labels=self.labels[idx], groups=groups)

    def fingerprint(self) -> str:
        """Identity of the examples: sha256 over the (text, label name) pairs, in order."""
        h = hashlib.sha256()
        for text, label in zip(self.texts, self.labels.tolist()):
            h.update(json.dumps([text, self.classes[label]], ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()


@dataclass
class _Example:
    where: str  # file:line (CSV/JSONL) or file (folder)
    text: str | None
    label: str | None
    group: str | None = None


def read_text_data(data: str | os.PathLike, *, text_column: str = "text", label_column: str = "label",
                   group_column: str | None = None, min_classes: int = 2, skip_empty: bool = False,
                   log: Callable[[str], object] | None = None) -> TextSamples:
    """Read DATA (CSV/TSV, JSON Lines, or a folder of class subfolders of .txt files).

    Labels become strings (surrounding spaces removed) and classes are sorted by name. Empty or
    whitespace-only texts are refused, all listed; skip_empty drops them instead (and says so via log).
    """
    root = Path(data).expanduser()
    shown = str(root)
    if not root.exists():
        raise HeadstartError(f"DATA '{data}' does not exist; give {FORMS}")
    suffix = root.suffix.lower()
    if root.is_dir():
        if group_column is not None:
            raise HeadstartError(
                f"DATA '{data}' is a folder, which has no columns; a group column ('{group_column}') "
                "needs a CSV or JSONL file with that column"
            )
        examples, problems = _folder_examples(root)
        where_labels = "its class subfolders"
    elif suffix in CSV_SUFFIXES or suffix in JSONL_SUFFIXES:
        if suffix in CSV_SUFFIXES:
            columns, records, problems = _read_csv(root)
        else:
            columns, records, problems = _read_jsonl(root)
        if problems and not records:  # nothing parsed: the bad lines are the whole story
            raise HeadstartError(f"DATA '{shown}': " + "; ".join(problems))
        _require_columns(root, columns, text_column, label_column, group_column)
        examples = _table_examples(root, records, text_column, label_column, group_column, problems)
        where_labels = f"column '{label_column}'"
    else:
        hint = (" (a .json file must be JSON Lines, one object per line: rename it to .jsonl)"
                if suffix == ".json" else "")
        raise HeadstartError(f"DATA '{data}' is a {suffix or 'suffix-less'} file{hint}; give {FORMS}")

    missing_label = [e.where for e in examples if not e.label]
    if missing_label:
        problems.append(f"{_n(missing_label, 'row has', 'rows have')} no label ({_first(missing_label)}); "
                        f"fill in {where_labels} or remove {_them(missing_label)}")
    if group_column is not None:
        missing_group = [e.where for e in examples if not e.group]
        if missing_group:
            problems.append(f"{_n(missing_group, 'row has', 'rows have')} no value in group column '{group_column}' "
                            f"({_first(missing_group)}); fill {_them(missing_group, 'it in', 'them in')} "
                            f"or remove {_them(missing_group)}")
    empty = [e.where for e in examples if e.text is None or not e.text.strip()]
    if empty and not skip_empty:
        problems.append(f"{_n(empty, 'text is', 'texts are')} empty or only whitespace ({_first(empty)}); "
                        f"remove {_them(empty)}, or pass --skip-empty (skip_empty=True) to leave "
                        f"{_them(empty)} out")
    if problems:
        raise HeadstartError(f"DATA '{shown}': " + "; ".join(problems))
    all_classes = {e.label for e in examples}
    if empty:
        dropped = set(empty)
        examples = [e for e in examples if e.where not in dropped]
        if log:
            log(f"skipping {plural(len(empty), 'empty text')} in DATA '{shown}': {_first(empty)}")

    if not examples:
        what = "only empty texts" if empty else "no examples"
        raise HeadstartError(f"DATA '{shown}' has {what}; add labelled texts")
    names = [e.label for e in examples]
    if root.is_dir():
        # a class folder whose only files were empty texts has vanished: name it, not the class count
        gone = sorted(all_classes - set(names))
        if gone:
            raise HeadstartError(
                f"DATA folder '{shown}': class {'folder' if len(gone) == 1 else 'folders'} "
                f"{', '.join(repr(g) for g in gone)} {'has' if len(gone) == 1 else 'have'} only empty texts; "
                "add texts or remove the folder"
            )
    classes = tuple(sorted(set(names)))
    if len(classes) < min_classes:
        only = f" ('{classes[0]}')" if len(classes) == 1 else ""
        fix = ("add a subfolder of .txt files per class" if root.is_dir()
               else f"check that {where_labels} is the label column (--label-column), or add examples of the "
                    "other classes")
        raise HeadstartError(
            f"DATA '{shown}' has {plural(len(classes), 'class', 'classes')}{only} in {where_labels}; "
            f"a classifier needs at least {min_classes}: {fix}"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    groups = tuple(e.group for e in examples) if group_column is not None else None
    return TextSamples(texts=tuple(e.text for e in examples), labels=labels, classes=classes,
                       source=str(root.resolve()), groups=groups)


def read_predict_texts(items: Sequence[str], *, text_column: str = "text") -> list[str]:
    """Texts to predict from command-line items: an existing .txt file gives its whole content, a
    .csv/.tsv/.jsonl file gives the text column of every row (in order), anything else is the text itself."""
    texts: list[str] = []
    for item in items:
        if not item.strip():
            raise HeadstartError("an empty text was given to predict; give text, or .txt/.csv/.tsv/.jsonl files")
        p = Path(item).expanduser()
        suffix = p.suffix.lower() if len(p.name) < 256 else ""  # a long text is not a file name
        known = suffix == TEXT_SUFFIX or suffix in CSV_SUFFIXES or suffix in JSONL_SUFFIXES
        kind = path_kind(p)
        if kind == "dir":
            raise HeadstartError(
                f"'{item}' is a folder; give .txt, .csv, .tsv or .jsonl files, or the text itself in quotes"
            )
        if kind == "file":
            if suffix == TEXT_SUFFIX:
                texts.append(_decode(p))
                if not texts[-1].strip():
                    raise HeadstartError(f"'{p}' is empty (or only whitespace); give a file with a text to predict")
                continue
            if suffix in CSV_SUFFIXES or suffix in JSONL_SUFFIXES:
                columns, records, problems = (_read_csv if suffix in CSV_SUFFIXES else _read_jsonl)(p)
                if problems:
                    raise HeadstartError(f"'{p}': " + "; ".join(problems))
                if text_column not in columns:
                    raise HeadstartError(
                        f"'{p}' has no '{text_column}' column; found {_columns(columns)}: the run reads its texts "
                        f"from column '{text_column}' (the one it was fitted on): rename that column"
                    )
                if not records:
                    raise HeadstartError(f"'{p}' has no rows; add texts to predict")
                values = [(f"{p}:{line}", _scalar(record.get(text_column))[0] or "") for line, record in records]
                empty = [where for where, v in values if not v.strip()]
                if empty:
                    raise HeadstartError(f"'{p}': {_n(empty, 'text is', 'texts are')} empty or only whitespace "
                                         f"({_first(empty)}); remove {_them(empty)}")
                texts.extend(v for _, v in values)
                continue
            raise HeadstartError(
                f"'{item}' is a {suffix or 'suffix-less'} file; give .txt, .csv, .tsv or .jsonl files, "
                "or the text itself in quotes"
            )
        if known and not any(ch.isspace() for ch in item):
            raise HeadstartError(f"file '{item}' does not exist; check the path (or quote a text to predict it)")
        texts.append(item)
    if not texts:
        raise HeadstartError("nothing to predict; give texts, or .txt/.csv/.tsv/.jsonl files of texts")
    return texts


def read_unlabelled_texts(path: Path, *, text_column: str = "text",
                          label_column: str = "label") -> tuple[list[str], list[str], bool]:
    """U's texts (headstart.data.unlabelled), empty ones left out; where each is ('file:line', or the file);
    and whether a label column was there (it is ignored): a CSV/TSV/JSONL file's text column, a .txt file's
    lines, or a folder's .txt files (any depth)."""
    suffix, where = path.suffix.lower(), f"--unlabelled '{path}'"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_text_file(p, path))
        if not files:
            raise HeadstartError(f"{where} holds no .txt files; give .txt files, or a CSV/JSONL file of texts")
        found = [(t, str(p)) for p, t in ((p, _decode(p)) for p in files) if t.strip()]
    elif suffix == TEXT_SUFFIX:
        found = [(line, f"{path}:{i}") for i, line in enumerate(_decode(path).split("\n"), start=1) if line.strip()]
    elif suffix not in CSV_SUFFIXES and suffix not in JSONL_SUFFIXES:
        raise HeadstartError(f"{where} is a {suffix or 'suffix-less'} file; give a CSV/TSV/JSONL file with a text "
                             "column, a .txt file (one text per line) or a folder of .txt files")
    else:
        columns, records, problems = (_read_csv if suffix in CSV_SUFFIXES else _read_jsonl)(path)
        if problems:
            raise HeadstartError(f"{where}: " + "; ".join(problems))
        if text_column not in columns:
            raise HeadstartError(f"{where} has no '{text_column}' column; found {_columns(columns)}: U's texts are read "
                                 f"from DATA's text column ('{text_column}'): rename U's column to it")
        found = [(v, f"{path}:{line}") for line, v in ((line, _scalar(r.get(text_column))[0]) for line, r in records)
                 if v and v.strip()]
        return [t for t, _ in found], [w for _, w in found], label_column in columns
    return [t for t, _ in found], [w for _, w in found], False


# ---------------------------------------------------------------- reading files


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise HeadstartError(f"cannot read '{path}': {e.strerror or e}") from None


def _utf8(raw: bytes) -> str | list[int]:
    """The text (a leading UTF-8 BOM dropped), or the numbers of the lines that are not UTF-8."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad = []
    for i, line in enumerate(raw.split(b"\n"), start=1):  # b"\n" never occurs inside a UTF-8 sequence
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return bad


def _decode(path: Path) -> str:
    """The file's text (UTF-8, optional BOM); non-UTF-8 lines are named with their line numbers."""
    text = _utf8(_read_bytes(path))
    if isinstance(text, str):
        return text
    raise HeadstartError(
        f"'{path}' is not UTF-8 text ({'line' if len(text) == 1 else 'lines'} {_first(text)}); "
        "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


_Records = list[tuple[int, dict[str, object]]]


def _read_csv(path: Path) -> tuple[list[str], _Records, list[str]]:
    """Header columns, (line, row) records and problems. line is the physical line where the row starts."""
    text = _decode(path)
    tsv = path.suffix.lower() == ".tsv"
    _allow_long_fields()
    reader = csv.reader(io.StringIO(text, newline=""), dialect="excel-tab" if tsv else "excel")
    columns: list[str] | None = None
    records: _Records = []
    too_many: list[str] = []
    headers: list[str] = []  # rows that repeat the header (files joined with their headers): not examples
    end = 0
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank line, or a row of empty cells
            if columns is None:
                columns = [c.strip() for c in fields]
                continue
            if [f.strip() for f in fields] == columns:
                headers.append(f"{path}:{start}")
                continue
            if len(fields) > len(columns):
                too_many.append(f"{path}:{start}")
            records.append((start, dict(zip(columns, fields))))
    except csv.Error as e:
        raise HeadstartError(f"'{path}' line {reader.line_num} is not valid CSV ({e}); fix the quoting") from None
    problems = []
    twice = sorted({c for c in (columns or []) if c and (columns or []).count(c) > 1})
    if twice:  # a row would keep only the last of them
        where = "; ".join(f"'{c}' (columns {', '.join(str(i + 1) for i, x in enumerate(columns or []) if x == c)})"
                          for c in twice)
        problems.append(f"its header names a column more than once: {where}; rename all but one")
    if headers:
        problems.append(f"{_n(headers, 'row repeats', 'rows repeat')} the header ({_first(headers)}); remove "
                        f"{_them(headers)}")
    if too_many:
        sep = "tabs" if tsv else "commas"
        problems.append(f"{_n(too_many, 'row has', 'rows have')} more cells than the header's {len(columns or [])} "
                        f"({_first(too_many)}); put texts that contain {sep} in double quotes")
    return columns or [], records, problems


def _read_jsonl(path: Path) -> tuple[list[str], _Records, list[str]]:
    text = _decode(path)
    if text.lstrip().startswith("["):
        raise HeadstartError(
            f"'{path}' is a JSON array, not JSON Lines; write one object per line, "
            'e.g. {"text": "...", "label": "..."}'
        )
    columns: dict[str, None] = {}
    records: _Records = []
    bad: list[str] = []

    def once(pairs: list[tuple[str, object]]) -> dict[str, object]:  # json keeps the last of a repeated key
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"key {', '.join(repr(k) for k in twice)} more than once")
        return dict(pairs)

    # split on \n only: JSON strings may hold U+2028 and other characters that str.splitlines breaks on
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=once)
        except json.JSONDecodeError as e:
            bad.append(f"{path}:{i} ({e.msg})")
            continue
        except ValueError as e:
            bad.append(f"{path}:{i} ({e})")
            continue
        if not isinstance(obj, dict):
            bad.append(f"{path}:{i} (a {type(obj).__name__}, not an object)")
            continue
        columns.update(dict.fromkeys(str(k) for k in obj))
        records.append((i, obj))
    problems = []
    if bad:
        problems.append(f"{_n(bad, 'line is not a JSON object', 'lines are not JSON objects')} ({_first(bad)}); "
                        'write one object per line, e.g. {"text": "...", "label": "..."}')
    return list(columns), records, problems


def _require_columns(path: Path, columns: list[str], text_column: str, label_column: str,
                     group_column: str | None) -> None:
    wanted = [("text", text_column), ("label", label_column)]
    if group_column is not None:
        wanted.append(("group", group_column))
    absent = [(role, name) for role, name in wanted if name not in columns]
    if not columns:
        raise HeadstartError(f"DATA '{path}' is empty; it needs a header row (or JSON keys) "
                             f"with columns '{text_column}' and '{label_column}'")
    if absent:
        names = " and ".join(f"{role} column '{name}'" for role, name in absent)
        flags = "/".join(f"--{role}-column" for role, _ in absent)
        raise HeadstartError(f"DATA '{path}' has no {names}; found columns {_columns(columns)}: "
                             f"name the right ones with {flags}")


def _scalar(value: object) -> tuple[str | None, bool]:
    """(value as str, or None when absent; True when the value is a list/object, which is no text)."""
    if value is None:
        return None, False
    if isinstance(value, str):
        return value, False
    if isinstance(value, (dict, list)):
        return None, True
    return str(value), False


def _table_examples(path: Path, records: _Records, text_column: str, label_column: str,
                    group_column: str | None, problems: list[str]) -> list[_Example]:
    if not records and not problems:
        raise HeadstartError(f"DATA '{path}' has columns but no rows; add labelled texts")
    examples = []
    nested: list[str] = []
    for line, record in records:
        where = f"{path}:{line}"
        text, t_bad = _scalar(record.get(text_column))
        label, l_bad = _scalar(record.get(label_column))
        group, g_bad = _scalar(record.get(group_column)) if group_column is not None else (None, False)
        if t_bad or l_bad or g_bad:
            nested.append(where)
        examples.append(_Example(where, text, (label or "").strip() or None,
                                 (group or "").strip() or None))
    if nested:
        problems.append(f"{_n(nested, 'row has', 'rows have')} a list or object where text, label or group should be "
                        f"({_first(nested)}); give strings or numbers")
    return examples


def _folder_examples(root: Path) -> tuple[list[_Example], list[str]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        loose = [p for p in root.iterdir() if _is_text_file(p, root)]
        what = (f"has {plural(len(loose), '.txt file')} but no class subfolders" if loose else "is empty")
        raise HeadstartError(
            f"DATA folder '{root}' {what}; put each class's .txt files in a subfolder named after the class "
            f"(e.g. {root}/positive/1.txt, {root}/negative/2.txt)"
        )
    examples: list[_Example] = []
    empty_dirs: list[str] = []
    not_utf8: list[str] = []
    for d in subdirs:
        files = sorted(p for p in d.rglob("*") if _is_text_file(p, d))
        if not files:
            empty_dirs.append(d.name)
        for f in files:
            text = _utf8(_read_bytes(f))
            if isinstance(text, str):
                examples.append(_Example(str(f), text, d.name))
            else:
                not_utf8.append(f"{f} ({'line' if len(text) == 1 else 'lines'} {_first(text, 3)})")
    if empty_dirs:
        raise HeadstartError(
            f"DATA folder '{root}': class {'folder' if len(empty_dirs) == 1 else 'folders'} "
            f"{', '.join(repr(e) for e in empty_dirs)} {'has' if len(empty_dirs) == 1 else 'have'} "
            "no .txt files; add texts or remove the folder"
        )
    problems = []
    if not_utf8:
        problems.append(f"{_n(not_utf8, 'file is', 'files are')} not UTF-8 text ({_first(not_utf8)}); "
                        f"save {_them(not_utf8)} as UTF-8")
    return examples, problems


def _is_text_file(p: Path, base: Path) -> bool:
    return (p.is_file() and p.suffix.lower() == TEXT_SUFFIX
            and not any(part.startswith(".") for part in p.relative_to(base).parts))


def _allow_long_fields() -> None:
    """csv refuses fields over 128 KiB by default; a long document is a valid text."""
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)


# ---------------------------------------------------------------- wording


def _first(items: Sequence[object], n: int = SHOW) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f", … and {len(items) - n} more" if len(items) > n else "")


def _n(items: Sequence[object], one: str, many: str) -> str:
    """'1 row has no label' / '3 rows have no label': the count with the singular or plural wording."""
    return f"{len(items)} {one if len(items) == 1 else many}"


def _them(items: Sequence[object], one: str = "it", many: str = "them") -> str:
    return one if len(items) == 1 else many


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in columns) or "none"
