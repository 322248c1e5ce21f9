"""Darknet .cfg text: read it into sections, and write sections back to text that Darknet reads.

A .cfg is a list of sections, `[net]` first and then one per layer, each with `key=value` options.
This module keeps the text level only (the section type and its options as strings, in file order),
so that a model read from a .cfg can be written back with every option it had, including the many
training options headstart never uses. What the options mean, and whether they make a network,
is headstart.darknet.spec's business (which also defines Section).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..console import warn
from ..errors import HeadstartError
from ..fileio import atomic_write_bytes
from .spec import Section, check_outline, plan_layers

_SPACE = re.compile(r"\s+")
_SECTION = re.compile(r"\[([^\[\]]*)\]")


def parse_cfg(text: str, source: str = "<cfg>") -> list[Section]:
    """Split .cfg text into sections, checking the text's form and its outline (one [net], first; layers of
    the types headstart builds). What the options say is checked by headstart.darknet.spec.plan_layers,
    whose messages name the line each section starts at (kept in Section.line).

    As Darknet does, all whitespace inside a line is dropped (`layers = -1, 61` is `layers=-1,61`),
    lines starting with `#` or `;` and blank lines are skipped, and a `#` ends a line's content. A key
    given twice in one section keeps its first value, which is the one Darknet uses (OpenCV takes the
    last, so a conflicting repeat is warned about)."""
    sections: list[Section] = []
    first_line: dict[tuple[int, str], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _SPACE.sub("", raw).split("#", 1)[0]
        if not line or line[0] == ";":
            continue
        if line[0] == "[":
            match = _SECTION.fullmatch(line)
            if not match or not match.group(1):
                raise HeadstartError(f"{source} line {number}: '{raw.strip()}' is not a section header; "
                                     "write it as [type], e.g. [convolutional]")
            sections.append(Section(match.group(1), {}, number))
            continue
        key, eq, value = line.partition("=")
        if not sections:
            raise HeadstartError(f"{source} line {number}: '{raw.strip()}' comes before any section; "
                                 "start the file with [net]")
        if not eq or not key or not value:
            raise HeadstartError(f"{source} line {number}: '{raw.strip()}' is not an option; "
                                 "write options as key=value")
        section = sections[-1]
        if key in section.options:
            if section.options[key] != value:
                warn(f"{source} line {number}: [{section.type}] sets {key} again ({value}); keeping the first "
                     f"value ({section.options[key]}, line {first_line[len(sections), key]}) as Darknet does")
            continue
        section.options[key] = value
        first_line[len(sections), key] = number
    check_outline(sections, source)
    return sections


def read_cfg(path: str | os.PathLike) -> list[Section]:
    """Read and check a Darknet .cfg file: its sections, `[net]` first, with every option checked
    against what headstart can build (headstart.darknet.spec.plan_layers), so a mistake is one
    line naming the file and line before any tensor is made."""
    text = read_text(path)
    sections = parse_cfg(text, str(path))
    plan_layers(sections, str(path))
    return sections


def read_text(path: str | os.PathLike) -> str:
    """The text of a .cfg file, with a missing or binary file as one line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise HeadstartError(f"{path}: no such .cfg file; check the path") from None
    except IsADirectoryError:
        raise HeadstartError(f"{path} is a folder, not a .cfg file; give the path of the .cfg") from None
    except OSError as e:
        raise HeadstartError(f"{path} cannot be read ({e.strerror}); check its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise HeadstartError(f"{path}: byte {e.start:,} is not text, so this is not a Darknet .cfg "
                             "(a .weights file given as the .cfg?); give the .cfg that goes with the weights") from None


def format_cfg(sections: list[Section]) -> str:
    """Sections as .cfg text that Darknet and OpenCV read: `[type]`, then `key=value` lines, a blank
    line between sections. Comments of the original file are not kept."""
    blocks = []
    for section in sections:
        lines = [f"[{section.type}]"] + [f"{key}={value}" for key, value in section.options.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write_cfg(sections: list[Section], path: str | os.PathLike) -> None:
    """Write sections as a .cfg file, atomically (a reader sees the old file or the new one)."""
    atomic_write_bytes(path, format_cfg(sections).encode())
