"""YOLO's label layout (Darknet, Ultralytics): finding and checking it as detection DATA, and writing it.

    root/images/a.jpg + root/labels/a.txt   label files in a labels/ folder beside images/ (also images/train/ +
                                            labels/train/, or train/images/ + train/labels/ as Roboflow exports)
    root/obj/a.jpg + root/obj/a.txt         Darknet: each label file beside its image
    root/classes.txt | root/obj.names       the class names, one a line: line 1 is class 0
    root/data.yaml                          Ultralytics: names: [cat, dog] or {0: cat, 1: dog}; train: and val:
                                            image folders (or .txt lists of images), relative to path: or to the
                                            YAML's folder. Without train: and val: every image under root is read

A label file holds one line per object, `class cx cy w h`: a 0-based class index, then the box's centre and
size as fractions of the image's width and height. An image without a label file, or with an empty one, is a
background image and is kept (as COCO images without annotations are). An image's label file is looked for as
Ultralytics and Darknet look for it: its path with the last images/ folder (below root) replaced by labels/ and
the suffix by .txt, then the .txt beside the image.

scan_yolo does YOLO's own checks before any work (class names, label files without an image, lines that are
not 5 numbers, class indices outside the names, coordinates outside 0..1); detection.data.read_detection_data
adds the checks all layouts share (readable images, their sizes from the file headers, boxes with area) and
builds the DetectionData. write_yolo writes a DetectionData in this layout, so that it reads back the same.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.images import is_image_file
from ..data.modality import YOLO_YAML, yolo_names_file
from ..errors import HeadstartError, plural, shortlist
from ..fileio import atomic_write_bytes
from .dataset import DetectionData

SKIP_FLAG = "--skip-bad"
NORM_TOLERANCE = 0.01  # a box may stick out of its image by 1% of a side (it is clipped); further is an error
NOT_LABELS = frozenset({"classes.txt", "train.txt", "val.txt", "valid.txt", "test.txt"})  # lists, not labels
LINE = "'class cx cy w h'"


@dataclass
class YoloBox:
    """One line of a label file: box is x0 y0 x1 y1 as fractions of the image, clipped to 0..1 (None when bad)."""
    image: int  # index into YoloScan.images
    label: int
    box: tuple[float, float, float, float] | None
    shown: str  # the line as written, quoted
    ref: str  # "line 3 of labels/a.txt"
    bad: str = ""  # why the line is not a box


@dataclass
class YoloScan:
    """A YOLO layout as found and checked: images (name for messages, file), their boxes and the classes."""
    where: str
    classes: tuple[str, ...]
    images: list[tuple[str, Path]]
    boxes: list[YoloBox]
    sha256: str  # of the names file, the YAML and every label file read


def scan_yolo(data: Path, skip_bad: bool = False, log: Callable[[str], object] = print) -> YoloScan:
    """Find and check the YOLO layout at `data` (a folder, or its data.yaml): every problem of a kind stops with
    all of them listed, unless skip_bad drops the offending label files or lines (one log line per kind)."""
    where = f"YOLO folder '{data.parent if data.is_file() else data}'"
    data = Path(os.path.abspath(data))
    yaml_file = data if data.is_file() else next((data / y for y in YOLO_YAML if (data / y).is_file()), None)
    root = data.parent if data.is_file() else data
    doc = load_yaml(yaml_file) if yaml_file is not None else {}
    classes, names_file, names_from = _classes(root, yaml_file, doc, where)
    h = hashlib.sha256()
    for f in (yaml_file, names_file):
        if f is not None:
            h.update(f.read_bytes() + b"\0")
    roots = _image_roots(doc, yaml_file, root) if yaml_file is not None else [root]
    paths = _images(roots, root)
    if not paths:
        raise HeadstartError(f"{where} holds no images (extensions .jpg, .png, ...) under "
                             f"{shortlist([_rel(r, root) for r in roots])}; put the images there")
    images = [(_rel(p, root), p) for p in paths]

    boxes: list[YoloBox] = []
    claimed: set[Path] = set()
    for k, (_name, p) in enumerate(images):
        label = next((c for c in label_candidates(p, root) if c.is_file() and c != names_file), None)
        if label is None:
            continue  # a background image
        claimed.add(label)
        raw = label.read_bytes()
        rel = _rel(label, root)
        h.update(os.fsencode(rel) + f"\0{len(raw)}\0".encode() + raw)
        for n, line in enumerate(raw.decode("utf-8-sig", errors="replace").splitlines(), start=1):
            if line.strip():
                cls, box, bad = parse_line(line)
                shown = line.strip() if len(line.strip()) <= 60 else line.strip()[:57] + "..."
                boxes.append(YoloBox(k, cls, box, f"'{shown}'", f"line {n} of {rel}", bad))
    if not claimed:
        raise HeadstartError(f"{where}: none of its {plural(len(images), 'image')} has a label file (looked for "
                             "labels/NAME.txt in a labels/ folder beside images/, and NAME.txt beside each image "
                             "NAME.jpg); put the label files there, one line 'class cx cy w h' per object")

    orphans = _orphans(roots, root, claimed, {p.parent for p in paths}, names_file)
    if orphans:
        one, listing = len(orphans) == 1, shortlist([_rel(p, root) for p in orphans])
        if not skip_bad:
            raise HeadstartError(f"{where}: {plural(len(orphans), 'label file')} {'has' if one else 'have'} no image "
                                 f"of the same name (in the images/ folder beside labels/, or beside the .txt): "
                                 f"{listing}; add the {'image' if one else 'images'} or remove the "
                                 f"{'file' if one else 'files'}, or pass {SKIP_FLAG} to ignore {'it' if one else 'them'}")
        log(f"{where}: ignoring {plural(len(orphans), 'label file')} without an image: {listing}")

    outside = [b for b in boxes if not b.bad and not 0 <= b.label < len(classes)]
    if outside:
        one = len(outside) == 1
        listing = shortlist([f"{b.ref} (class {b.label})" for b in outside])
        names = f"the {plural(len(classes), 'name')} of {names_from}"
        if not skip_bad:
            raise HeadstartError(f"{where}: {plural(len(outside), 'label line')} {'has' if one else 'have'} a class "
                                 f"index outside {names} (0 to {len(classes) - 1}): {listing}; fix the "
                                 f"{'index' if one else 'indices'} or add the class names, or pass {SKIP_FLAG} to drop "
                                 f"{'that box' if one else 'those boxes'}")
        log(f"{where}: dropping {plural(len(outside), 'box', 'boxes')} whose class index is outside {names}: {listing}")
        boxes = [b for b in boxes if b.bad or 0 <= b.label < len(classes)]
    return YoloScan(where=where, classes=classes, images=images, boxes=boxes, sha256=h.hexdigest())


def parse_line(line: str) -> tuple[int, tuple[float, float, float, float] | None, str]:
    """A label line's class index, its box (x0 y0 x1 y1 fractions, clipped to 0..1) and why it is bad ('' if not)."""
    fields = line.split()
    vals = [to_number(f) for f in fields]
    if len(fields) != 5:
        polygon = "; polygons (segmentation labels) are not read" if len(fields) >= 7 else ""
        return -1, None, f"not {LINE} (5 numbers; the line has {plural(len(fields), 'field')}){polygon}"
    if any(v is None for v in vals):
        return -1, None, f"not {LINE}: {fields[vals.index(None)]!r} is not a (finite) number"
    c, cx, cy, w, h = (float(v) for v in vals)  # type: ignore[arg-type]
    if c != int(c):
        return -1, None, f"the class index {fields[0]} is not a whole number"
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    t = NORM_TOLERANCE
    if not all(-t <= v <= 1 + t for v in (cx, cy, w, h, x0, y0, x1, y1)):
        return int(c), None, ("coordinates outside 0..1: YOLO gives the box's centre and size as fractions of the "
                              "image's width and height (divide pixels by them)")
    return int(c), (min(max(x0, 0.0), 1.0), min(max(y0, 0.0), 1.0), min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0)), ""


def label_candidates(image: Path, root: Path) -> list[Path]:
    """Where an image's label file may be: its path with the last images/ folder below root replaced by labels/
    (Ultralytics, Darknet), then beside the image (Darknet); both with the suffix .txt."""
    twin = twin_folder(image.parent, root, "images", "labels")
    return ([twin / image.with_suffix(".txt").name] if twin is not None else []) + [image.with_suffix(".txt")]


def twin_folder(folder: Path, root: Path, old: str, new: str) -> Path | None:
    """folder with its last folder named `old` below root renamed `new` (images/train -> labels/train), or None."""
    parts = folder.parts
    first = len(root.parts) if folder.is_relative_to(root) else 0
    for i in range(len(parts) - 1, first - 1, -1):
        if parts[i] == old:
            return Path(*parts[:i], new, *parts[i + 1:])
    return None


def load_yaml(path: Path) -> dict:
    """A YAML file's top-level mapping, read safely (no tags run) with every plain scalar kept a string:
    a class called no, 1.10 or 2024-01-01 stays what it says."""
    try:
        import yaml
    except ImportError:
        raise HeadstartError(f"reading '{path}' needs PyYAML (pip install pyyaml); or remove it and give the class "
                             "names in classes.txt beside it, one a line") from None

    class Loader(yaml.SafeLoader):
        pass
    keep = ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
    Loader.yaml_implicit_resolvers = {c: [r for r in rs if r[0] in keep]
                                      for c, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    try:
        doc = yaml.load(path.read_bytes(), Loader=Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise HeadstartError(f"'{path}' is not valid YAML{at} ({getattr(e, 'problem', None) or e}); fix the file") from None
    if not isinstance(doc, dict):
        raise HeadstartError(f"'{path}' holds no YAML mapping; give at least names: [cat, dog] (class 0 first)")
    return doc


def _classes(root: Path, yaml_file: Path | None, doc: dict, where: str) -> tuple[tuple[str, ...], Path | None, str]:
    """The class names, from the YAML's names: or else a names file; that names file (None for the YAML); and the
    name of the file they come from."""
    if doc.get("names") is not None:
        names = _yaml_names(doc["names"], f"'{yaml_file}': names:")
        source = f"'{yaml_file}'"
        if doc.get("nc") is not None and str(doc["nc"]).strip() != str(len(names)):
            raise HeadstartError(f"{source} says nc: {doc['nc']} but names: lists {len(names)}; make them agree "
                                 "(or remove nc:)")
        names_file, names_from = None, yaml_file.name  # type: ignore[union-attr]
    else:
        names_file = yolo_names_file(root)
        if names_file is None:
            also = f" (or names: in '{yaml_file}')" if yaml_file is not None else ""
            raise HeadstartError(f"{where} has no class names: add classes.txt{also}, one name a line in the order "
                                 "of the class indices (line 1 is class 0), or a data.yaml with names: [cat, dog]")
        raw = names_file.read_bytes()
        source, names_from = f"'{names_file}'", names_file.name
        lines = [s.strip() for s in raw.decode("utf-8-sig", errors="replace").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        blank = [k + 1 for k, s in enumerate(lines) if not s]
        if not lines or blank:
            what = f"has blank lines ({shortlist(blank)})" if blank else "is empty"
            raise HeadstartError(f"{source} {what}; give one class name a line, line 1 for class 0, without gaps")
        names = tuple(lines)
    dups = sorted(n for n, k in Counter(names).items() if k > 1)
    if dups:
        raise HeadstartError(f"{source} names {shortlist([repr(d) for d in dups])} more than once; give each class "
                             "index its own name (or relabel the boxes of one of them and remove it)")
    return names, names_file, names_from


def _yaml_names(names: object, where: str) -> tuple[str, ...]:
    items: list[tuple[int, object]]
    if isinstance(names, list):
        items = list(enumerate(names))
    elif isinstance(names, dict):
        keys = {k: to_number(str(k)) for k in names}
        bad = [k for k, v in keys.items() if v is None or v != int(v) or v < 0]
        if bad:
            raise HeadstartError(f"{where} keys {shortlist([repr(k) for k in bad])} are not class indices; give "
                                 "{0: cat, 1: dog} or [cat, dog]")
        items = sorted((int(keys[k]), v) for k, v in names.items())  # type: ignore[arg-type]
        if [i for i, _ in items] != list(range(len(items))):
            raise HeadstartError(f"{where} numbers the classes {shortlist([i for i, _ in items], 10)}; number them 0, "
                                 "1, 2, ... without gaps (the class index of the label lines)")
    else:
        raise HeadstartError(f"{where} is a {type(names).__name__}; give a list [cat, dog] or a mapping {{0: cat, 1: dog}}")
    bad_names = [i for i, v in items if not isinstance(v, str) or not v.strip()]
    if not items or bad_names:
        what = f"entries {shortlist(bad_names)} are not names" if items else "is empty"
        raise HeadstartError(f"{where} {what}; give one name per class, e.g. [cat, dog] (class 0 first)")
    return tuple(str(v) for _, v in items)


def _image_roots(doc: dict, yaml_file: Path, root: Path) -> list[Path]:
    """The folders (or .txt lists of images) that train: and val: name, found where Ultralytics looks, and where
    a YAML written on another machine or by Roboflow (train: ../train/images) means; none: root itself."""
    bases = []
    if isinstance(doc.get("path"), str) and doc["path"].strip():
        base = Path(doc["path"].strip()).expanduser()
        bases.append(base if base.is_absolute() else yaml_file.parent / base)
    bases.append(yaml_file.parent)
    out: list[Path] = []
    for key in ("train", "val"):
        value = doc.get(key)
        for entry in value if isinstance(value, list) else [] if value is None else [value]:
            if not isinstance(entry, str) or not entry.strip():
                raise HeadstartError(f"'{yaml_file}': {key}: holds {entry!r}; give a folder of images (or a .txt list "
                                     "of them), relative to path: or to the YAML's folder")
            e = Path(entry.strip()).expanduser()
            tries = [e] if e.is_absolute() else [b / e for b in bases]
            tail = [p for p in e.parts if p not in ("..", ".", e.anchor)]
            tries += [yaml_file.parent / Path(*tail[-k:]) for k in (3, 2) if len(tail) >= k]  # the dataset's own
            found = next((t for t in tries if t.exists()), None)
            if found is None:
                raise HeadstartError(f"'{yaml_file}': {key}: {entry.strip()} is not found (looked for "
                                     f"{shortlist([str(t) for t in dict.fromkeys(tries)], 3)}); fix the path, or "
                                     f"remove train: and val: to read every image under '{root}'")
            if found not in out:
                out.append(found)
    return out or [root]


def _images(roots: list[Path], root: Path) -> list[Path]:
    """The image files under the folders, and those the .txt lists name (once each, in order of their names)."""
    found: dict[Path, None] = {}
    for r in roots:
        if r.is_dir():
            for p in sorted(r.rglob("*")):
                if is_image_file(p) and not any(s.startswith(".") for s in p.relative_to(r).parts) and p.is_file():
                    found.setdefault(Path(os.path.abspath(p)))
        elif is_image_file(r):
            found.setdefault(Path(os.path.abspath(r)))
        else:  # a list of image files, one a line; relative ones from the list's folder (or root)
            for line in r.read_bytes().decode("utf-8-sig", errors="replace").splitlines():
                if line.strip():
                    e = Path(line.strip()).expanduser()
                    tries = [e] if e.is_absolute() else [r.parent / e, root / e]
                    found.setdefault(Path(os.path.abspath(next((t for t in tries if t.exists()), tries[0]))))
    return sorted(found, key=lambda p: _rel(p, root))


def _orphans(roots: list[Path], root: Path, claimed: set[Path], image_dirs: set[Path], names_file: Path | None
             ) -> list[Path]:
    """Label files without an image: .txt files under the image folders and their labels/ twins, in a folder of
    images or below a labels/ folder, with no image of their name beside them or in their images/ twin (an image
    that a list leaves out still has its label). Lists, names files and READMEs are not labels."""
    folders = set()
    for d in {*(r if r.is_dir() else r.parent for r in roots), *image_dirs}:
        folders |= {d, twin_folder(d, root, "images", "labels") or d}
    stems: dict[Path, set[str]] = {}

    def has_image(label: Path) -> bool:
        for d in (label.parent, twin_folder(label.parent, root, "labels", "images")):
            if d is not None and d not in stems:
                stems[d] = {q.stem for q in d.iterdir() if is_image_file(q)} if d.is_dir() else set()
            if d is not None and label.stem in stems[d]:
                return True
        return False

    out: set[Path] = set()
    for d in folders:
        if not d.is_dir() or any(o != d and d.is_relative_to(o) for o in folders):
            continue  # a folder inside another is searched with it
        for p in d.rglob("*.txt"):
            p = Path(os.path.abspath(p))
            if p in claimed or p == names_file or p in roots or p.name.lower() in NOT_LABELS \
                    or p.name.lower().startswith("readme") or any(s.startswith(".") for s in p.relative_to(d).parts) \
                    or not p.is_file():
                continue
            in_labels = twin_folder(p.parent, root, "labels", "images") is not None
            if (p.parent in image_dirs or in_labels) and not has_image(p):
                out.add(p)
    return sorted(out, key=lambda p: _rel(p, root))


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)


def to_number(s: str | None) -> float | None:
    """The finite number that s spells (white space around it is fine), else None."""
    try:
        v = float(str(s))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------- writing

def write_yolo(data: DetectionData, folder: str | os.PathLike, overwrite: bool = False,
               log: Callable[[str], object] | None = None) -> Path:
    """Write `data` in YOLO's layout: folder/images/ (copies of the images), folder/labels/NAME.txt per image (one
    line per box, empty for a background image), classes.txt and data.yaml; read back, it gives the same images,
    classes and boxes. Each file is written atomically. A folder that exists and is not empty is refused unless
    overwrite, which then also removes the images and label files there that are not part of `data` (never one
    of its images). Masks are not written: YOLO's detection labels are boxes. Returns the folder."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise HeadstartError(f"'{folder}' is a file; give a folder to write the YOLO dataset to")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise HeadstartError(f"'{folder}' is not empty; give a new or empty folder to write the YOLO dataset to, or "
                             "overwrite=True to replace the images and labels there")
    bad = [c for c in data.classes if not c.strip() or "\n" in c or "\r" in c]
    if bad:
        raise HeadstartError(f"class names {shortlist([repr(c) for c in bad])} are empty or hold a line break, which "
                             "classes.txt (one name a line) cannot hold; rename them")
    if data.has_masks and log is not None:
        log(f"writing boxes only to '{folder}': YOLO's detection labels do not hold the masks")
    sources = {Path(os.path.abspath(im.path)) for im in data.images}
    written: set[Path] = set()
    stems: set[str] = set()
    for im in data.images:
        stem, k = im.path.stem, 1
        while stem.lower() in stems:  # images of the same name from different folders
            stem, k = f"{im.path.stem}_{k}", k + 1
        stems.add(stem.lower())
        dest = folder / "images" / (stem + im.path.suffix)
        try:
            raw = None if dest.exists() and dest.samefile(im.path) else im.path.read_bytes()
        except OSError as e:
            raise HeadstartError(f"image '{im.path}' cannot be read ({e.strerror}); was it moved since the data "
                                 "was read?") from None
        if raw is not None:
            atomic_write_bytes(dest, raw)
        w, h = im.width, im.height
        lines = "".join(f"{int(c)} {_g((x0 + x1) / 2 / w)} {_g((y0 + y1) / 2 / h)} {_g((x1 - x0) / w)} {_g((y1 - y0) / h)}\n"
                        for c, (x0, y0, x1, y1) in zip(im.labels.tolist(), im.boxes.astype(float).tolist()))
        atomic_write_bytes(folder / "labels" / f"{stem}.txt", lines.encode())
        written |= {Path(os.path.abspath(dest)), Path(os.path.abspath(folder / "labels" / f"{stem}.txt"))}
    atomic_write_bytes(folder / "classes.txt", "".join(f"{c}\n" for c in data.classes).encode())
    names = "".join(f"  {i}: {_quoted(c)}\n" for i, c in enumerate(data.classes))
    atomic_write_bytes(folder / "data.yaml", (
        "# YOLO detection labels, written by headstart: labels/NAME.txt for images/NAME.jpg, one line per box,\n"
        "# 'class cx cy w h' as fractions of the image's width and height. val: is train: split them as you like\n"
        f"train: images\nval: images\nnc: {len(data.classes)}\nnames:\n{names}").encode())
    if overwrite:  # what an earlier dataset left in images/ and labels/ would be read with this one
        for sub, keep in (("images", is_image_file), ("labels", lambda p: p.suffix.lower() == ".txt")):
            for p in sorted((folder / sub).rglob("*")):
                a = Path(os.path.abspath(p))
                if keep(p) and p.is_file() and a not in written and a not in sources:
                    p.unlink()
    return folder


def _g(v: float) -> str:
    return f"{v:.10g}"


def _quoted(name: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes, and the characters YAML does not take raw escaped too)."""
    text = json.dumps(name, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                   for c in text)


__all__ = ["YoloBox", "YoloScan", "label_candidates", "load_yaml", "parse_line", "scan_yolo", "to_number",
           "twin_folder", "write_yolo"]
