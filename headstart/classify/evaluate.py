"""A classifier run scored on labelled DATA: accuracy, balanced accuracy, macro F1, per-class scores and the
confusion matrix, from the run's body features (cached) and its head."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import FeatureCache
from ..data.images import read_image_data
from ..data.texts import read_text_data
from ..errors import HeadstartError
from ..runtime import pick_device
from .prepare import features_of

if TYPE_CHECKING:
    from ..run import Run


def evaluate_classifier(r: Run, data: str | Path, *, cache_dir: str | Path | None, no_cache: bool,
                        skip_bad_files: bool, device: str | None, extract_batch_size: int | None,
                        num_workers: int | None, text_column: str | None, label_column: str | None) -> dict[str, Any]:
    """headstart.evaluate for a classifier run. Text runs read the columns they were trained with, unless
    text_column / label_column say otherwise."""
    # imported here: scikit-learn's start-up costs a second that fit does not need
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    t0 = time.perf_counter()
    if r.modality == "text":
        options = (r.info.get("text") or {}).get("options") or {}
        samples = read_text_data(data, text_column=text_column or options.get("text_column", "text"),
                                 label_column=label_column or options.get("label_column", "label"), min_classes=1)
    else:
        samples = read_image_data(data, min_classes=1)
    unknown = sorted(set(samples.classes) - set(r.classes))
    if unknown:
        raise HeadstartError(
            f"DATA '{data}' has {'a class' if len(unknown) == 1 else 'classes'} the run was not trained on: "
            f"{', '.join(unknown)}; the run knows {', '.join(r.classes)}"
        )
    dev = pick_device(device)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    if r.modality == "text":
        from ..features import extract

        tokenizer = r.tokenizer()
        tokens = tokenizer(list(samples.texts))
        tokens.say_truncated()
        feats = extract(lambda: r.model.body, r.body_id, tokenizer.pre, tokens, r.head_inputs, cache, dev,
                        batch_size=extract_batch_size, model_name=r.card.name)
    else:
        samples, feats = features_of(r.card, r.body_id, samples, cache, dev, skip_bad_files, lambda: r.model.body,
                                   extract_batch_size, num_workers)
    index = {c: i for i, c in enumerate(r.classes)}
    y = np.array([index[samples.classes[i]] for i in samples.labels], dtype=np.int64)
    pred = r.head_probabilities(feats.array).argmax(1)
    labels = list(range(len(r.classes)))
    confusion = confusion_matrix(y, pred, labels=labels)
    support = confusion.sum(1)
    p, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = sorted(set(y.tolist()) | set(pred.tolist()))  # macro F1 over classes seen in truth or prediction
    return {
        "accuracy": float(np.trace(confusion) / len(y)),
        "balanced_accuracy": float(np.mean([rec[i] for i in labels if support[i] > 0])),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "n": int(len(y)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(r.classes)
        },
        "classes": list(r.classes),
        "confusion": confusion.tolist(),
        "extract_seconds": round(feats.seconds, 3),
        "cache_hit": feats.cache_hit,
        "seconds": round(time.perf_counter() - t0, 3),
    }
