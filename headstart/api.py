"""The Python API; the CLI is a thin layer over these functions.

    import headstart
    run = headstart.fit("data/pets", model="efficientnet_lite0", out="runs/pets")
    run.metrics["val_accuracy"]
    headstart.evaluate(run, "data/pets-test")["accuracy"]
    headstart.load("runs/pets").predict(["cat.jpg"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .console import log
from .data.images import ImageSamples, drop_bad_images, read_image_data
from .data.splits import stratified_split
from .errors import HeadstartError
from .features import FeatureCache, Features, extract, feature_key
from .heads import HeadSpec
from .probe import HeadTraining, train_head
from .run import Run, check_out_dir, load
from .runtime import pick_device
from .surgery import TransferModel, split
from .zoo import ModelCard, get_card, load_network, locate

STRATEGIES = ("linear-probe",)


def _features(
    card: ModelCard,
    body_id: str,
    samples: ImageSamples,
    cache: FeatureCache,
    device: torch.device,
    skip_bad_files: bool,
    body_factory: Callable[[], torch.nn.Module],
    batch_size: int | None,
    num_workers: int | None,
) -> tuple[ImageSamples, Features]:
    """Features for every sample. A cache hit needs no file checks (the entry exists only if
    every file decoded); a miss checks every file first, then runs the body."""
    t0 = time.perf_counter()
    key = feature_key(body_id, card.preprocessing, samples.paths)
    cached = cache.load(key, len(samples))
    if cached is not None:
        return samples, Features(cached, cache_hit=True, seconds=time.perf_counter() - t0, key=key)
    samples = drop_bad_images(samples, skip_bad_files, log=log)
    feats = extract(body_factory, body_id, card.preprocessing, samples.paths, card.num_features, cache, device,
                    batch_size=batch_size, num_workers=num_workers, model_name=card.name)
    return samples, feats


def fit(
    data: str | Path,
    model: str = "efficientnet_lite0",
    out: str | Path = "runs/latest",
    *,
    strategy: str = "linear-probe",
    head: str = "linear",
    hidden: int = HeadSpec.hidden,
    dropout: float = HeadSpec.dropout,
    epochs: int = HeadTraining.epochs,
    lr: float = HeadTraining.lr,
    weight_decay: float = HeadTraining.weight_decay,
    batch_size: int = HeadTraining.batch_size,
    patience: int = HeadTraining.patience,
    seed: int = 0,
    val_split: float = 0.2,
    class_balance: bool = True,
    arch: str | None = None,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    overwrite: bool = False,
    allow_download: bool = False,
    device: str | None = None,
    extract_batch_size: int | None = None,
    num_workers: int | None = None,
) -> Run:
    """Transfer `model` to the images in `data` and write the result to `out`.

    linear-probe: the body stays frozen, its features are computed once (and cached),
    and a new head trains on them with early stopping on a stratified validation split.
    """
    t_start = time.perf_counter()
    if strategy not in STRATEGIES:
        raise HeadstartError(f"--strategy must be one of {', '.join(STRATEGIES)}; got '{strategy}'")
    spec = HeadSpec(kind=head, hidden=hidden, dropout=dropout)  # type: ignore[arg-type]
    training = HeadTraining(epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                            patience=patience, class_balance=class_balance, seed=seed)
    if not 0.0 <= val_split < 1.0:
        raise HeadstartError(f"--val-split must be in [0, 1); got {val_split}")
    out_dir = check_out_dir(out, overwrite)
    card = get_card(model, arch=arch, allow_download=allow_download)
    if card.modality != "image":
        raise HeadstartError(f"model '{card.name}' is a {card.modality} model; DATA here is images")
    locate(card, allow_download=allow_download)  # a missing weight package is reported before any work
    samples = read_image_data(data)
    if Path(data).is_dir() and out_dir.resolve().is_relative_to(Path(data).resolve()):
        raise HeadstartError(f"--out '{out}' is inside DATA '{data}', where it would become a class; put the run elsewhere")
    dev = pick_device(device)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    body_id = card.fingerprint()

    built: list[torch.nn.Module] = []

    def body_factory() -> torch.nn.Module:  # built once: for extraction on a cache miss, and for the saved run
        if not built:
            built.append(split(load_network(card, allow_download), card.classifier)[0])
        return built[0]

    samples, feats = _features(card, body_id, samples, cache, dev, skip_bad_files, body_factory,
                               extract_batch_size, num_workers)
    train_idx, val_idx = stratified_split(samples.labels, val_split, seed)
    x = feats.array
    result = train_head(spec, x[train_idx], samples.labels[train_idx],
                        x[val_idx] if len(val_idx) else None, samples.labels[val_idx] if len(val_idx) else None,
                        len(samples.classes), training)
    body = body_factory()
    network_model = TransferModel(body.cpu().to(memory_format=torch.contiguous_format), result.head)
    metrics: dict[str, Any] = {
        "model": card.name,
        "strategy": strategy,
        "head": spec.kind,
        "val_accuracy": result.val_accuracy,
        "val_balanced_accuracy": result.val_balanced_accuracy,
        "val_loss": result.val_loss,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_classes": len(samples.classes),
        "class_counts": samples.counts(),
        "seed": seed,
        "epochs": epochs,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "extract_seconds": round(feats.seconds, 3),
        "train_seconds": round(result.seconds, 3),
        "cache_hit": feats.cache_hit,
        "extract_images_per_second": round(feats.images_per_second, 1) if not feats.cache_hit else None,
        "device": str(dev),
        "history": result.history,
        "headstart": __version__,
    }
    run = Run(dir=out_dir, card=card, head=spec, classes=samples.classes, body_id=body_id, model=network_model,
              info={"task": "classify", "data": samples.source, "strategy": strategy,
                    "training": {"lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                                 "val_split": val_split, "class_balance": class_balance, "patience": patience}},
              metrics=metrics)
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 3)
    run.save(replace=True)
    return run


def _as_run(run: Run | str | Path, device: str | None = None) -> Run:
    return run if isinstance(run, Run) else load(run, device=device)


def evaluate(
    run: Run | str | Path,
    data: str | Path,
    *,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    device: str | None = None,
    extract_batch_size: int | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class scores and the confusion matrix on labelled `data`."""
    # imported here: scikit-learn's start-up costs a second that fit does not need
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    t0 = time.perf_counter()
    r = _as_run(run, device)
    samples = read_image_data(data, min_classes=1)
    unknown = sorted(set(samples.classes) - set(r.classes))
    if unknown:
        raise HeadstartError(
            f"DATA '{data}' has {'a class' if len(unknown) == 1 else 'classes'} the run was not trained on: "
            f"{', '.join(unknown)}; the run knows {', '.join(r.classes)}"
        )
    dev = pick_device(device)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    samples, feats = _features(r.card, r.body_id, samples, cache, dev, skip_bad_files, lambda: r.model.body,
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


def predict(run: Run | str | Path, files: list[str | Path], top_k: int = 5, **kw: Any) -> list[dict[str, Any]]:
    """Label and top-k scores for each image file."""
    return _as_run(run, kw.pop("device", None)).predict(files, top_k=top_k, **kw)
