"""advise's first two conditions of transfer, measured for each candidate model: (1) the same kind of input
(modality; for images their channels and size against the card's, for texts their length against the
card's limit and, for word vectors, how many of DATA's words have one) and (2) far more source data (the
card's source dataset against the labelled examples per class here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data.images import ImageSamples, look_notes
from .text.network import TextOptions
from .zoo.card import ModelCard


def image_conditions(samples: ImageSamples, cards: list[ModelCard], images: dict[str, Any],
                per_class: int) -> list[dict[str, Any]]:
    out = []
    for card in cards:
        notes = look_notes(images, card.input_size, bool(card.extra.get("greyscale")))
        ratio = card.source_size / max(1, per_class * len(samples.classes)) if card.source_size else None
        out.append({
            "model": card.name,
            "same_input": {"modality": card.modality == "image", "notes": notes,
                           "verdict": "same kind of input" if not notes else "same modality, different look"},
            "more_source_data": {"source_dataset": card.source_dataset, "source_size": card.source_size,
                                 "target_per_class": per_class, "ratio": ratio,
                                 "verdict": (f"{ratio:,.0f}x more labelled source images" if ratio else "unknown")},
        })
    return out


def inspect_texts(samples, tokens) -> dict[str, Any]:
    """Length of DATA's texts in words and in the best card's tokens."""
    words = np.array([len(t.split()) for t in samples.texts])
    lengths = np.array([len(r) for r in tokens.ids]) if tokens is not None else words
    return {"median_words": int(np.median(words)), "max_words": int(words.max()),
            "median_tokens": int(np.median(lengths)), "truncated": int(tokens.truncated if tokens is not None else 0),
            "max_length": int(tokens.max_length if tokens is not None else 0)}


def text_conditions(samples, cards: list[ModelCard], texts: dict[str, Any], per_class: int,
                     text: TextOptions) -> list[dict[str, Any]]:
    from .text.embedding import token_coverage

    out = []
    for card in cards:
        notes = []
        if card.architecture == "word-vectors":
            from .text.network import word_vectors

            cov = token_coverage(samples.texts[:2000], word_vectors(card))
            notes.append(f"{100 * cov:.1f}% of DATA's words have a vector")
            if cov < 0.8:
                notes.append("low coverage: another language or domain than the vectors'?")
        elif card.preprocessing.max_length < texts["median_tokens"] * 2:
            notes.append(f"texts of ~{texts['median_tokens']} tokens against a limit of {card.preprocessing.max_length}:"
                         " longer ones are truncated")
        unit = card.extra.get("source_unit", "labelled examples")
        ratio = card.source_size / max(1, per_class * len(samples.classes)) if card.source_size else None
        out.append({
            "model": card.name,
            "same_input": {"modality": card.modality == "text", "notes": notes,
                           "verdict": "same kind of input (text)" if card.modality == "text" else "other modality"},
            "more_source_data": {"source_dataset": card.source_dataset, "source_size": card.source_size,
                                 "target_per_class": per_class, "ratio": ratio,
                                 "verdict": f"{ratio:,.0f}x more source {unit}" if ratio else "unknown"},
        })
    return out
