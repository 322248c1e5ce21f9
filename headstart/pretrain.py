"""`headstart pretrain`: your own source model, trained from random weights on a large labelled
dataset related to the small target task (the second route of transfer learning).

The loop is fit's (headstart.engine: AMP, DDP, a checkpoint every epoch, resume) with strategy
finetune over a randomly initialised network: every layer at the full rate, BatchNorm
statistics from the batches. Images keep about their own size (`input_size`, default: their
median side rounded up to a multiple of 32), normalised with DATA's own channel mean and std.

The result DIR is a run folder (evaluate and predict work on it) and a card folder
(card.json, headstart.zoo.user): `--model file:DIR` transfers from it, `headstart models add
NAME --from DIR` puts it in your zoo.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import HeadstartError
from .zoo.card import ModelCard, Preprocessing, WeightSource

if TYPE_CHECKING:  # the CLI reads the defaults below without importing torch
    from .data.images import ImageSamples
    from .run import Run

DEFAULT_ARCH = "resnet10t"  # timm, 4.9M parameters: a few seconds per 1,000 small images per epoch on 2 CPU cores
DEFAULTS: dict[str, Any] = dict(epochs=30, lr=2e-3, batch_size=64, patience=6, augment="crop", val_split=0.1,
                                weight_decay=0.05)


def source_preprocessing(samples: ImageSamples, input_size: int | None, limit: int = 500) -> tuple[Preprocessing, dict]:
    """Input size and DATA's own per-channel mean and std (of up to `limit` images at that size)."""
    from PIL import Image

    from .data.images import appearance
    from .data.transforms import open_rgb

    look = appearance(samples)
    side = min(look["median_width"], look["median_height"])
    size = input_size or int(min(224, max(32, 32 * math.ceil(side / 32))))
    if size < 16:
        raise HeadstartError(f"--input-size must be >= 16 pixels; got {size}")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(samples), size=min(limit, len(samples)), replace=False)
    total, total_sq, n = np.zeros(3), np.zeros(3), 0
    for i in idx:
        im = open_rgb(samples.paths[i])  # training's own conversions (EXIF, 16-bit, alpha on white)
        a = np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64) / 255
        total += a.reshape(-1, 3).sum(0)
        total_sq += (a.reshape(-1, 3) ** 2).sum(0)
        n += a.shape[0] * a.shape[1]
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 1e-6))
    pre = Preprocessing(crop=size, resize=size, interpolation="bilinear",
                        mean=tuple(round(float(v), 4) for v in mean), std=tuple(round(float(v), 4) for v in std))
    return pre, look


def scratch_card(arch: str, pre: Preprocessing, name: str, source: str, n: int, greyscale: bool) -> ModelCard:
    """A card for `arch` from random weights (nothing to load), at DATA's preprocessing."""
    from .zoo.build import meta_model, normalize_architecture
    from .zoo.registry import classifier_of, timm_cfg

    arch = normalize_architecture(arch)
    lib, _, base = arch.partition(":")
    classifier, num_features = classifier_of(meta_model(arch), timm_cfg(base).get("classifier") if lib == "timm" else None)
    return ModelCard(name=name, modality="image", architecture=arch, weights=WeightSource(kind="none", source_head=False),
                     preprocessing=pre, num_features=num_features, classifier=classifier, source_dataset=source,
                     source_size=n, license="yours", description=f"{arch} trained from random weights on {source}",
                     extra={"greyscale": greyscale, "pretrained": "headstart pretrain"})


def pretrain(
    data: str | Path,
    arch: str = DEFAULT_ARCH,
    out: str | Path = "runs/source",
    *,
    epochs: int = DEFAULTS["epochs"],
    input_size: int | None = None,
    lr: float = DEFAULTS["lr"],
    batch_size: int = DEFAULTS["batch_size"],
    weight_decay: float = DEFAULTS["weight_decay"],
    patience: int = DEFAULTS["patience"],
    augment: str = DEFAULTS["augment"],
    val_split: float = DEFAULTS["val_split"],
    seed: int = 0,
    precision: str = "auto",
    overwrite: bool = False,
    device: str | None = None,
    num_workers: int | None = None,
    tracker: str | None = None,
    skip_bad_files: bool = False,
) -> Run:
    """Train `arch` (any timm or torchvision architecture) from random weights on the labelled
    images in `data`; write a run + card folder to `out` and return the run.

        src = headstart.pretrain("digits-0-4/", out="runs/digits-source")
        headstart.fit("digits-5-9/", model=f"file:{src.dir}", out="runs/digits-target")
    """
    import torch

    from .classify.fit import fit_classifier
    from .console import log
    from .options import FitOptions
    from .data.images import drop_bad_images, read_image_data

    # DATA with one class is refused, naming it; unreadable files are listed (or left out with
    # skip_bad_files) before the statistics read them
    samples = drop_bad_images(read_image_data(data), skip_bad_files, log=log)
    pre, look = source_preprocessing(samples, input_size)
    greyscale = look["greyscale_share"] > 0.5
    card = scratch_card(arch, pre, Path(out).name, Path(str(samples.source)).name, len(samples), greyscale)
    log(f"pretrain {card.architecture} from random weights at {pre.crop} px, mean {pre.mean}, std {pre.std}")
    torch.manual_seed(seed)  # the random initial weights, built when fit first asks for the body
    run = fit_classifier(data, card, out, FitOptions.of(dict(
        strategy="finetune", body_lr_mult=1.0, layer_decay=1.0, bn="train", epochs=epochs, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, patience=patience, augment=augment, val_split=val_split, seed=seed,
        precision=precision, overwrite=overwrite, device=device, num_workers=num_workers, tracker=tracker,
        skip_bad_files=skip_bad_files, no_cache=True)))
    return _with_card(run)


def resume_pretrain(run_dir: str | Path, device: str | None = None, num_workers: int | None = None,
                    tracker: str | None = None) -> Run:
    """Continue a pretrain run that was stopped, then write its card."""
    import time

    from .classify.body import resume_classifier
    from .rundir import stopped_run

    d, info = stopped_run(run_dir)
    return _with_card(resume_classifier(d, info, None, None, cache_dir=None, no_cache=True, device=device,
                                        num_workers=num_workers, tracker=tracker, given=None,
                                        t_start=time.perf_counter()))


def _with_card(run: Run) -> Run:
    from .runtime import is_main_rank
    from .zoo.user import card_from_run, write_card_folder

    if is_main_rank():
        write_card_folder(card_from_run(run.dir, name=run.dir.name), run.dir)
    return run
