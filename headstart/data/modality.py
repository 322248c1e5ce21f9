"""Which kind of DATA the user gave: images, text, or a detection dataset.

  detection      a COCO JSON file, a folder holding one, or a Pascal VOC folder (read by headstart.detection.data)
  a folder       images when its class subfolders hold image files, text when they hold .txt files
  a .jsonl file  text
  a .csv / .tsv  images when its header has a `path` column, text otherwise
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from itertools import islice
from pathlib import Path

from ..errors import HeadstartError, shortlist
from .images import PATH_COLUMN, is_image_file

DEFAULT_MODEL = {"image": "efficientnet_lite0", "text": "minilm_l6"}
COCO_FILE = "annotations.json"
TEXT_SUFFIXES = (".jsonl", ".ndjson")


def data_modality(data: str | os.PathLike) -> str:
    root = Path(data).expanduser()
    if not root.exists():
        raise HeadstartError(
            f"DATA '{data}' does not exist; give a folder with one subfolder per class (of images or .txt files), "
            "a CSV (path,label for images; text,label for texts) or a JSONL file of texts")
    if is_detection_data(root):
        return "detection"
    if root.is_dir():
        files = (p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in islice(files, 200):
            if is_image_file(p):
                return "image"
            if p.suffix.lower() == ".txt":
                return "text"
        return "image"  # the image reader explains what a folder must hold
    suffix = root.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in (".csv", ".tsv"):
        return "image" if PATH_COLUMN in csv_columns(root) else "text"
    return "image"


def csv_columns(path: Path) -> list[str]:
    """The column names in the header of the CSV or TSV file `path`."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), [])
    except OSError as e:
        raise HeadstartError(f"DATA '{path}' cannot be read ({e.strerror})") from None
    return [h.strip() for h in header]


# ---------------------------------------------------------------------------------- detection layouts

def is_detection_data(data: object) -> bool:
    """Whether DATA looks like a detection dataset in one of the accepted layouts (never raises)."""
    try:
        p = Path(data).expanduser()  # type: ignore[arg-type]
        if p.is_file():
            return p.suffix.lower() == ".json" and looks_like_coco(p)
        return p.is_dir() and (find_coco_json(p, strict=False) is not None or is_voc(p))
    except Exception:  # noqa: BLE001 - a guess about any input must not fail
        return False


def is_voc(folder: Path) -> bool:
    ann = folder / "Annotations"
    return ann.is_dir() and any(voc_xmls(ann))


def voc_xmls(ann: Path) -> list[Path]:
    return sorted(p for p in ann.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith(".") and p.is_file())


def find_coco_json(folder: Path, strict: bool = True) -> Path | None:
    """folder/annotations.json, else the one COCO-looking *.json in folder/ or folder/annotations/.
    Several of them: an error (strict) or the first (for is_detection_data)."""
    if (folder / COCO_FILE).is_file():
        return folder / COCO_FILE
    found: list[Path] = []
    for d in (folder, folder / "annotations"):
        if d.is_dir():
            found += sorted(p for p in d.iterdir() if p.suffix.lower() == ".json" and not p.name.startswith(".")
                            and p.is_file() and looks_like_coco(p))
    if len(found) > 1 and strict:
        raise HeadstartError(
            f"DATA folder '{folder}' holds {len(found)} COCO annotation files ({shortlist([p.name for p in found])}); "
            "give the one to use as DATA (e.g. DATA=" + str(found[0]) + ")"
        )
    return found[0] if found else None


# Reading the keys of a JSON's top-level object without parsing it: at depth 1 every token counts
# (a key is a string followed by ':'); deeper, one regex match skips strings, scalars and whole flat
# containers (COCO's image entries), so Python only sees the brackets of nested ones. Possessive
# quantifiers (Python 3.11+) keep a failed match linear.
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
_FLAT = rb'(?:[^"{}\[\]]++|' + _STRING + rb')*+'
_TOKEN = re.compile(rb'\s*(' + _STRING + rb'|[{}\[\]:,]|[^\s"{}\[\]:,]+)')
_SKIP = re.compile(rb'(?:[^"{}\[\]]++|' + _STRING + rb'|\{' + _FLAT + rb'\}|\[' + _FLAT + rb'\])*+')
_CHUNK = 1 << 20


def _top_level_lists(path: Path, enough: Callable[[set[str]], bool]) -> set[str]:
    """Keys of the JSON file's top-level object whose value is a list, read until enough(keys)."""
    keys: set[str] = set()
    with open(path, "rb") as f:
        buf = f.read(_CHUNK)
        while True:  # the first thing but a byte-order mark or white space must be '{'
            buf = buf.removeprefix(b"\xef\xbb\xbf").lstrip()
            more = f.read(_CHUNK) if len(buf) < 3 else b""
            if not more:
                break
            buf += more
        if not buf.startswith(b"{"):
            return keys
        pos, depth, last, key, eof = 1, 1, None, None, False
        while True:
            if depth == 1:
                m = _TOKEN.match(buf, pos)
                complete = m is not None and (m.end() < len(buf) or eof or m.group(1)[:1] in b'"{}[]:,')
            else:
                m = _SKIP.match(buf, pos)
                complete = m.end() < len(buf) and buf[m.end():m.end() + 1] != b'"'
            if not complete:  # the token runs past the buffer: read on
                if depth > 1:
                    pos = m.end()  # what the skip passed over is done with
                if eof:
                    return keys
                more = f.read(_CHUNK)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            if depth > 1:
                pos = m.end() + 1
                depth += 1 if buf[m.end()] in b"[{" else -1
                continue
            tok, pos = m.group(1), m.end()
            if tok in (b"[", b"{"):
                if key is not None and tok == b"[":
                    keys.add(key)
                    if enough(keys):
                        return keys
                depth, last, key = depth + 1, None, None
            elif tok in (b"]", b"}"):
                return keys  # the top-level object ended
            elif tok == b":":
                key, last = last, None
            elif tok.startswith(b'"') and key is None:
                last = tok[1:-1].decode("utf-8", "replace")
            else:  # ',' or a scalar value
                last, key = None, None


def looks_like_coco(path: Path) -> bool:
    def enough(keys: set[str]) -> bool:
        return "images" in keys and ("annotations" in keys or "categories" in keys)
    try:
        return enough(_top_level_lists(path, enough))
    except (OSError, ValueError):
        return False
