"""Word vectors put to use: the embedding matrix of a vocabulary (known words copied, compounds from
their parts, the rest drawn to match), and how many of a text's tokens have a vector."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import HeadstartError
from .vectors import WordVectors
from .words import PAD, UNK, Vocabulary, texts_of, tokenize

_PARTS = re.compile(r"[-/]")  # what joins the words of a compound: "by-the-numbers", "and/or"



def _check_wv(wv: Any) -> None:
    if not isinstance(wv, WordVectors):
        raise HeadstartError(f"expected WordVectors (from read_vectors_file or builtin_glove_6b_50d), got {type(wv).__name__}")
    if len(wv) == 0:
        raise HeadstartError("the word vectors hold no words; read a non-empty vector file")


def embedding_matrix(vocab: Vocabulary, wv: WordVectors, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Initial embedding weights for `vocab`: (float32 len(vocab) x d, stats).

    Row i is the pretrained vector of word i (an exact match, else a lowercase one);
    the PAD row is zeros. A word without a vector that is made of words with one
    ("by-the-numbers", "and/or") starts at the average of their vectors; UNK and the
    other words without a vector are drawn, with `seed`, from a normal distribution with
    the pretrained vectors' per-dimension mean and std, so they look like the rest.
    stats = {"vocab_size", "vocab_covered" (share of the vocabulary's words, PAD and UNK
    aside, that have a vector), "composed" (how many of the others started from their
    parts), "missing_examples" (up to 10, most frequent first), "new_rows" (UNK and the
    words without a vector: the rows that train even when the pretrained ones stay frozen)}.
    """
    if not isinstance(vocab, Vocabulary):
        raise HeadstartError(f"expected a Vocabulary (from Vocabulary.build), got {type(vocab).__name__}")
    _check_wv(wv)
    mean = wv.vectors.mean(axis=0, dtype=np.float64)
    std = wv.vectors.std(axis=0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    matrix = rng.normal(mean, std, size=(len(vocab), wv.dim)).astype(np.float32)
    matrix[PAD] = 0.0
    targets, sources, missing, new_rows, composed = [], [], [], [UNK], 0
    for i, w in enumerate(vocab.words):
        if i in (PAD, UNK):
            continue
        row = wv.row(w)
        if row is not None:
            targets.append(i)
            sources.append(row)
            continue
        missing.append(w)
        new_rows.append(i)
        parts = [r for r in (wv.row(p) for p in _PARTS.split(w) if p) if r is not None]
        if len(parts) > 1:
            matrix[i] = wv.vectors[parts].mean(0)
            composed += 1
    if targets:
        matrix[targets] = wv.vectors[sources]
    n_words = len(vocab) - 2
    stats = {
        "vocab_size": len(vocab),
        "vocab_covered": len(targets) / n_words if n_words else 0.0,
        "composed": composed,
        "missing_examples": missing[:10],
        "new_rows": new_rows,
    }
    return matrix, stats


def token_coverage(texts: Iterable[str], wv: WordVectors) -> float:
    """Share of the tokens of `texts` (see tokenize) that have a pretrained vector; 0.0 without tokens."""
    _check_wv(wv)
    counts: Counter[str] = Counter()
    for t in texts_of(texts, "token_coverage"):
        counts.update(tokenize(t))
    total = sum(counts.values())
    found = sum(c for w, c in counts.items() if wv.row(w) is not None)
    return found / total if total else 0.0
