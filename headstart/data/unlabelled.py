"""Unlabelled examples (`fit --unlabelled U`): read and checked before any work.

  images   a folder of image files at any depth (their folders' names are not labels)
  texts    a CSV/TSV or JSONL file with a text column (a label column, if any, is ignored and fit says so),
           a .txt file (one text per line), or a folder of .txt files at any depth (one text per file)

Files that hold the labelled examples themselves (the same bytes, or the same text) are left out and
counted; so are repeats within U. Unreadable images are listed in one line (or left out with
--skip-bad-files); a text file that is not UTF-8 is named with its lines, and texts mostly in a writing
system the labelled texts do not use (another language) with the first place. U with fewer examples than
DATA has classes cannot help and is refused.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HeadstartError, plural
from ..fileio import sha256_file
from .images import files_fingerprint, is_image_file, readable
from .texts import read_unlabelled_texts

FOREIGN_SHARE = 0.2  # U's texts in a script the labelled texts do not use: more than this share is refused
FIX = ("give a folder of images (any depth); or, for texts, a CSV/JSONL file with a text column, a .txt file or a "
       "folder of .txt files")


@dataclass
class Unlabelled:
    """U's examples (image paths or texts), and what was left out of them."""

    source: Path
    items: list[Any]
    found: int
    duplicates: int  # the labelled examples themselves, and repeats within U
    unreadable: int
    notes: list[str]

    def record(self) -> dict[str, Any]:
        return {"source": str(self.source), "found": self.found, "used": len(self.items),
                "duplicates_left_out": self.duplicates, "unreadable_left_out": self.unreadable}

    def fingerprint(self) -> str:
        """What --resume compares: image files' names, sizes and times, or the texts themselves."""
        if self.items and isinstance(self.items[0], str):
            h = hashlib.sha256()
            for t in self.items:
                h.update(t.encode("utf-8", "surrogatepass") + b"\0")
            return h.hexdigest()
        return files_fingerprint(self.items)


def script(text: str) -> str | None:
    """The writing system most of `text`'s letters belong to (LATIN, CYRILLIC, CJK, ARABIC, ...), from their
    Unicode names; None for a text without letters."""
    counts: Counter[str] = Counter()
    for ch in text[:2000]:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            counts[name.split(" ")[0] if name else "OTHER"] += 1
    return counts.most_common(1)[0][0] if counts else None


def check_scripts(texts: list[str], places: list[str], labelled: Any, path: str | os.PathLike) -> None:
    """U's texts in a writing system the labelled texts do not use (another language, or text decoded from
    another encoding) are one line naming where the first of them is. A few such texts among many (a quoted
    title, a name) pass."""
    known = {s for s in (script(t) for t in labelled) if s is not None}
    foreign = [i for i, t in enumerate(texts) if (s := script(t)) is not None and s not in known]
    if texts and len(foreign) > FOREIGN_SHARE * len(texts):
        first = foreign[0]
        raise HeadstartError(
            f"--unlabelled '{path}': {len(foreign)} of its {len(texts)} texts {'is' if len(foreign) == 1 else 'are'} "
            f"mostly in {str(script(texts[first])).title()} script, which no labelled text uses (the first at "
            f"{places[first]}): give unlabelled texts in DATA's language, saved as UTF-8")


def read_unlabelled(path: str | os.PathLike, modality: str, labelled: Any, classes: int, *, skip_bad_files: bool = False,
                    text_column: str = "text", label_column: str = "label", log=None) -> Unlabelled:
    """U checked against the labelled samples (`labelled`: ImageSamples or TextSamples) of `classes` classes."""
    root = Path(path).expanduser()
    if not root.exists():
        raise HeadstartError(f"--unlabelled '{path}' does not exist; {FIX}")
    notes: list[str] = []
    unreadable = 0
    if modality == "image":
        if not root.is_dir():
            raise HeadstartError(f"--unlabelled '{path}' is a file; for images, {FIX.split('; ')[0]}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not files:
            raise HeadstartError(f"--unlabelled '{path}' holds no image files; {FIX}")
        found = len(files)
        keep = readable(files, skip_bad_files, where=f"--unlabelled '{path}'", log=log)
        unreadable = found - len(keep)
        files = [files[i] for i in keep]
        seen = {sha256_file(p) for p in labelled.paths}
        items: list[Any] = []
        for p in files:
            d = sha256_file(p)
            if d not in seen:
                seen.add(d)
                items.append(p)
    else:
        texts, places, ignored = read_unlabelled_texts(root, text_column=text_column, label_column=label_column)
        if ignored:
            notes.append(f"--unlabelled '{path}': its '{label_column}' column is ignored (U's labels are not used)")
        check_scripts(texts, places, labelled.texts, path)
        found = len(texts)
        seen_texts = {t.strip() for t in labelled.texts}
        items = []
        for t in texts:
            if t.strip() not in seen_texts:
                seen_texts.add(t.strip())
                items.append(t)
    duplicates = found - unreadable - len(items)
    if duplicates:
        notes.append(f"--unlabelled: {plural(duplicates, 'example')} left out, the same as a labelled one or as "
                     "another in U")
    if len(items) < classes:
        raise HeadstartError(
            f"--unlabelled '{path}' has {plural(len(items), 'example')} left to use"
            + (f" ({duplicates} were the labelled ones or repeats)" if duplicates else "")
            + f", fewer than DATA's {classes} classes: that cannot help; add more, or leave out --unlabelled")
    return Unlabelled(root, items, found, duplicates, unreadable, notes)
