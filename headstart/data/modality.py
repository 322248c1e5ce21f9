"""Which kind of DATA the user gave: images, text, or a detection dataset.

  detection      a COCO JSON file, a folder holding one, a Pascal VOC folder, or a YOLO label layout (a folder
                 or its data.yaml; read by headstart.detection.data)
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
YOLO_YAML = ("data.yaml", "data.yml")  # Ultralytics: names, and train / val image folders
YOLO_NAMES = ("classes.txt", "obj.names")  # Darknet: one class name a line
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
            if p.suffix.lower() in (".yaml", ".yml"):
                return is_yolo_yaml(p)
            return p.suffix.lower() == ".json" and looks_like_coco(p)
        return p.is_dir() and (find_coco_json(p, strict=False) is not None or is_voc(p) or is_yolo(p))
    except Exception:  # noqa: BLE001 - a guess about any input must not fail
        return False


def is_voc(folder: Path) -> bool:
    ann = folder / "Annotations"
    return ann.is_dir() and any(voc_xmls(ann))


def is_yolo(folder: Path, need_names: bool = True) -> bool:
    """A YOLO label layout: a data.yaml with names; an images/ folder with a labels/ folder of .txt files beside
    it (in `folder`, or one level down as in train/images + train/labels); or an image with its .txt label
    beside it (Darknet), which counts only with a names file (classes.txt, obj.names) unless need_names is
    False: without one it may be images with captions. Class subfolders of images or of .txt files are not it."""
    if any(is_yolo_yaml(folder / y) for y in YOLO_YAML):
        return True
    subdirs = (p for p in islice(folder.iterdir(), 200) if p.is_dir() and not p.name.startswith("."))
    for d in (folder, *subdirs):
        if (d / "images").is_dir() and (d / "labels").is_dir() and _holds(d / "images", is_image_file) \
                and _holds(d / "labels", lambda p: p.suffix.lower() == ".txt"):
            return True
    if need_names and yolo_names_file(folder) is None:
        return False
    images, texts = set(), set()
    for p in islice(folder.rglob("*"), 2000):
        if is_image_file(p):
            images.add((p.parent, p.stem))
        elif p.suffix.lower() == ".txt" and not p.name.startswith("."):
            texts.add((p.parent, p.stem))
    return bool(images & texts)


def is_yolo_yaml(path: Path) -> bool:
    """A YAML file (Ultralytics' data.yaml) with a top-level names: key."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return re.search(rb"(?m)^names[ \t]*:", head) is not None


def yolo_names_file(folder: Path) -> Path | None:
    """Darknet's class names beside a YOLO layout: classes.txt, obj.names, the one *.names, or labels/classes.txt
    (where LabelImg writes it)."""
    for name in YOLO_NAMES:
        if (folder / name).is_file():
            return folder / name
    names = sorted(p for p in folder.glob("*.names") if p.is_file() and not p.name.startswith("."))
    if len(names) == 1:
        return names[0]
    return folder / "labels" / "classes.txt" if (folder / "labels" / "classes.txt").is_file() else None


def _holds(folder: Path, want: Callable[[Path], bool]) -> bool:
    """Whether one of the first files under folder is wanted (a bounded look: never a whole dataset)."""
    return any(want(p) and p.is_file() for p in islice(folder.rglob("*"), 500))


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
