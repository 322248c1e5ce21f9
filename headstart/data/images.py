"""Image DATA: a folder of class subfolders, or a CSV with `path,label` columns.

Everything about the user's files is checked before any work starts: the folder or CSV
exists, there are at least two classes, no class is empty, every path exists and every
file is a readable image (all bad files are listed at once; skip_bad_files drops them).
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .splits import class_counts
from ..errors import HeadstartError, plural
from ..fileio import path_kind

# A large image (over PIL's 89M-pixel guard) decodes slowly but is data like any other: PIL's warning lines
# would otherwise land on stderr among headstart's own. Twice that size stays an error (a decompression bomb),
# reported with the other unreadable files.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
PATH_COLUMN, LABEL_COLUMN = "path", "label"


@dataclass(frozen=True)
class ImageSamples:
    """Labelled image files: paths[i] has class classes[labels[i]]."""

    modality = "image"  # not a field: TextSamples (data/texts.py) says "text"

    paths: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        return class_counts(self.labels, self.classes)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "ImageSamples":
        idx = np.asarray(idx, dtype=np.int64)
        return replace(self, paths=tuple(self.paths[i] for i in idx), labels=self.labels[idx])

    def fingerprint(self) -> str:
        """Identity of the file list: path, size and modification time of each file, in order."""
        return files_fingerprint(self.paths)


def files_fingerprint(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(os.fsencode(p) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())  # names need not be UTF-8
    return h.hexdigest()


def is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def read_image_data(data: str | os.PathLike, *, min_classes: int = 2) -> ImageSamples:
    """Read DATA (folder of class subfolders, or CSV of path,label); labels sorted by class name."""
    root = Path(data).expanduser()
    if not root.exists():
        raise HeadstartError(
            f"DATA '{data}' does not exist; give a folder with one subfolder of images per class, "
            "or a CSV file with path,label columns"
        )
    if root.is_dir():
        paths, names = _read_folder(root)
    elif root.suffix.lower() in (".csv", ".tsv"):
        paths, names = _read_csv(root)
    else:
        raise HeadstartError(
            f"DATA '{data}' is a file but not a CSV; give a folder of class subfolders or a .csv with path,label columns"
        )
    classes = tuple(sorted(set(names)))
    if len(classes) < min_classes:
        only = f" ('{classes[0]}')" if classes else ""
        raise HeadstartError(
            f"DATA '{data}' has {plural(len(classes), 'class', 'classes')}{only}; a classifier needs at least "
            f"{min_classes}: add a subfolder (or CSV label) per class"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    return ImageSamples(paths=tuple(paths), labels=labels, classes=classes, source=str(root))


def _read_folder(root: Path) -> tuple[list[Path], list[str]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
        what = f"has {plural(len(loose), 'image')} but no class subfolders" if loose else "is empty"
        raise HeadstartError(
            f"DATA folder '{root}' {what}; put each class's images in a subfolder named after the class "
            f"(e.g. {root}/cat/1.jpg, {root}/dog/2.jpg)"
        )
    paths: list[Path] = []
    names: list[str] = []
    empty: list[str] = []
    for d in subdirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and is_image_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if not files:
            empty.append(d.name)
        paths += files
        names += [d.name] * len(files)
    if empty:
        raise HeadstartError(
            f"DATA folder '{root}': class {'folder' if len(empty) == 1 else 'folders'} "
            f"{', '.join(repr(e) for e in empty)} {'has' if len(empty) == 1 else 'have'} no images "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
        )
    return paths, names


def _read_csv(path: Path) -> tuple[list[Path], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            reader = csv.DictReader(f, dialect=dialect)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if PATH_COLUMN not in columns or LABEL_COLUMN not in columns:
                raise HeadstartError(
                    f"CSV '{path}' needs columns '{PATH_COLUMN}' and '{LABEL_COLUMN}'; "
                    f"found {', '.join(repr(c) for c in columns) or 'no header'}"
                )
            reader.fieldnames = columns
            rows = [(r[PATH_COLUMN], r[LABEL_COLUMN]) for r in reader]
    except UnicodeDecodeError as e:
        raise HeadstartError(f"CSV '{path}' is not UTF-8 text ({e.reason} at byte {e.start})") from None
    base = path.parent
    paths: list[Path] = []
    names: list[str] = []
    missing: list[str] = []
    blank: list[int] = []
    for i, (p, label) in enumerate(rows, start=2):
        p, label = (p or "").strip(), (label or "").strip()
        if not p or not label:
            blank.append(i)
            continue
        full = (base / p) if not os.path.isabs(p) else Path(p)
        if not full.is_file():
            missing.append(p)
        paths.append(full)
        names.append(label)
    if blank:
        raise HeadstartError(f"CSV '{path}': rows {_first(blank)} have an empty path or label; fill or remove them")
    if not rows:
        raise HeadstartError(f"CSV '{path}' has a header but no rows")
    if missing:
        raise HeadstartError(
            f"CSV '{path}': {plural(len(missing), 'path')} {'does' if len(missing) == 1 else 'do'} not exist (relative "
            "paths are read from "
            f"{base}): {_first(missing)}"
        )
    return paths, names


def _first(items: Sequence[object], n: int = 10) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f", … and {len(items) - n} more" if len(items) > n else "")


def check_image(path: Path) -> str | None:
    """Why `path` is not a readable image, or None when it is.

    PNG: verify() walks every chunk and checks its CRC. JPEG: decoded at 1/8 scale
    (cheap with draft mode), which still reads every entropy-coded block. Other
    formats: decoded fully.
    """
    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                im.verify()
            else:
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        return None
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        return str(e).split("\n")[0][:80] or type(e).__name__


def find_bad_images(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        reasons = list(pool.map(check_image, paths, chunksize=64))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def readable(paths: Sequence[Path], skip_bad_files: bool, where: str = "", log=None) -> list[int]:
    """Indices of the readable images in `paths`; any bad file stops with all of them listed,
    unless skip_bad_files, which drops them (and says so)."""
    bad = find_bad_images(paths)
    if not bad:
        return list(range(len(paths)))
    listing = "; ".join(f"{p} ({why})" for p, why in bad)
    one = len(bad) == 1
    if not skip_bad_files:
        raise HeadstartError(
            f"{plural(len(bad), 'file')}{' in ' + where if where else ''} "
            f"{'is not a readable image' if one else 'are not readable images'}: {listing}; fix or remove "
            f"{'it' if one else 'them'}, "
            "or pass --skip-bad-files to proceed without"
        )
    if log:
        log(f"skipping {plural(len(bad), 'unreadable file')}: {listing}")
    bad_set = {p for p, _ in bad}
    return [i for i, p in enumerate(paths) if p not in bad_set]


def drop_bad_images(samples: ImageSamples, skip_bad_files: bool, log=None) -> ImageSamples:
    """Check every file of DATA; refuse (listing all bad files) or drop them with skip_bad_files."""
    keep = readable(samples.paths, skip_bad_files, where="DATA", log=log)
    if len(keep) == len(samples):
        return samples
    out = samples.subset(keep)
    if len(set(out.labels.tolist())) < 2:
        raise HeadstartError("after skipping unreadable files fewer than 2 classes remain; fix the files")
    return out


GREY_MODES = ("L", "LA", "I", "I;16", "1", "F")


def appearance(samples: ImageSamples, limit: int = 64) -> dict:
    """Channels and sizes of a sample of DATA's images (headers only: nothing is decoded)."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(samples), size=min(limit, len(samples)), replace=False)
    modes, widths, heights = [], [], []
    for i in idx:
        with Image.open(samples.paths[i]) as im:
            modes.append(im.mode)
            widths.append(im.width)
            heights.append(im.height)
    grey = sum(m in GREY_MODES for m in modes) / len(modes)
    return {"greyscale_share": grey, "median_width": int(np.median(widths)), "median_height": int(np.median(heights)),
            "modes": sorted(set(modes))}


def look_notes(look: dict, input_size: int, source_greyscale: bool = False) -> list[str]:
    """How DATA's images differ from the colour photos of a card's source, at its input size
    (`source_greyscale`: a source model trained on greyscale images, e.g. with `headstart pretrain`)."""
    side = min(look["median_width"], look["median_height"])
    scale = input_size / max(side, 1)
    notes = []
    if look["greyscale_share"] > 0.5 and not source_greyscale:
        notes.append("DATA is greyscale, the source photos were colour: the grey is copied to 3 channels")
    if scale >= 2:
        notes.append(f"images ({side} px) are upscaled {scale:.0f}x to the card's {input_size} px")
    elif scale <= 0.25:
        notes.append(f"images ({side} px) are shrunk {1 / scale:.0f}x to {input_size} px: fine detail is lost")
    return notes


def expand_files(files: list[str | Path]) -> list[Path]:
    """The image files named, and those inside the folders named (any depth), in order."""
    paths: list[Path] = []
    missing: list[str] = []
    for f in files:
        p = Path(f).expanduser()
        kind = path_kind(p)
        if kind == "dir":
            paths += sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
        elif kind == "file":
            paths.append(p)
        else:
            missing.append(str(f))
    if missing:
        raise HeadstartError(f"{plural(len(missing), 'file')} not found: {', '.join(missing)}")
    if not paths:
        raise HeadstartError("no image files to predict; give image files or folders holding images")
    return paths
