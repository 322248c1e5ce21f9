"""The Python API; the CLI is a thin layer over these functions.

    import headstart
    run = headstart.fit("data/pets", model="efficientnet_lite0", out="runs/pets")
    run.metrics["val_accuracy"], run.metrics["strategy"], run.metrics["strategy_reason"]
    headstart.evaluate(run, "data/pets-test")["accuracy"]
    headstart.load("runs/pets").predict(["cat.jpg"])
    headstart.resume("runs/pets")          # a run that was killed goes on where it stopped
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .auto import check_budget
from .cache import FeatureCache, Features, feature_key
from .console import log
from .data.detect import DEFAULT_MODEL, data_modality
from .data.images import ImageSamples, drop_bad_images, read_image_data
from .data.texts import read_text_data
from .data.splits import stratified_split
from .errors import HeadstartError
from .fileio import atomic_write_json
from .heads import HeadSpec
from .probe import HeadTraining, train_head
from .rundir import RUN_FILE, check_out_dir, run_info, run_record, save_run
from .runtime import default_batch_size, pick_device
from .strategies import BODY_EPOCHS, BODY_PATIENCE, BODY_PHASE_LR, WEIGHT_DECAY, Strategy
from .text.options import WORD_PRECISION, TextOptions
from .zoo import ModelCard, get_card, list_cards, locate
from .zoo.card import TextPreprocessing

if TYPE_CHECKING:  # torch is imported where a network is built: a linear probe on cached features needs none
    import torch

    from .run import Run
    from .text.inputs import Tokenized


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
    from .features import extract

    t0 = time.perf_counter()
    key = feature_key(body_id, card.preprocessing, samples.paths)
    cached = cache.load(key, len(samples))
    if cached is not None:
        return samples, Features(cached, cache_hit=True, seconds=time.perf_counter() - t0, key=key)
    samples = drop_bad_images(samples, skip_bad_files, log=log)
    feats = extract(body_factory, body_id, card.preprocessing, samples.paths, card.num_features, cache, device,
                    batch_size=batch_size, num_workers=num_workers, model_name=card.name)
    return samples, feats


@dataclass
class Prepared:
    """What every training command starts from: the card, the checked data and its split, a body
    built on first use, and the body's features (from the cache, or extracted on first use).
    Text DATA also carries its token ids, and for word-vector cards the record of the
    vocabulary the body was built for (saved with the run). The device is picked on first use:
    image features read from the cache need no torch."""

    card: ModelCard
    samples: Any  # ImageSamples | TextSamples
    train_idx: np.ndarray
    val_idx: np.ndarray
    device_name: str | None
    body: Callable[[], torch.nn.Module]
    features: Callable[[], Features]
    num_features: int = 0
    tokens: Tokenized | None = None
    text: dict[str, Any] | None = None
    body_id: str = ""
    cache: FeatureCache = field(default_factory=lambda: FeatureCache(None))
    _device: Any = None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = pick_device(self.device_name)
        return self._device


def prepare(
    data: str | Path,
    model: str | ModelCard | None,
    *,
    arch: str | None = None,
    allow_download: bool = False,
    val_split: float = 0.2,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    device: str | None = None,
    extract_batch_size: int | None = None,
    num_workers: int | None = None,
    text: TextOptions | None = None,
) -> Prepared:
    if not 0.0 <= val_split < 1.0:
        raise HeadstartError(f"--val-split must be in [0, 1); got {val_split}")
    text = text or TextOptions()
    kind = data_modality(data)
    _not_detection(data, kind)
    if model is None:
        model = DEFAULT_MODEL[kind]
    card = model if isinstance(model, ModelCard) else get_card(model, arch=arch, allow_download=allow_download)
    if card.modality != kind:
        others = ", ".join(c.name for c in list_cards() if c.modality == kind)
        raise HeadstartError(f"model '{card.name}' is a{'n' if card.modality == 'image' else ''} {card.modality} "
                             f"model; DATA '{data}' holds {kind}s: choose a {kind} model ({others})")
    locate(card, allow_download=allow_download)  # a missing weight package is reported before any work
    if kind == "text":
        return _prepare_text(data, card, val_split, seed, cache_dir, no_cache, device, extract_batch_size, text)
    samples = read_image_data(data)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    built: list[torch.nn.Module] = []

    def body() -> torch.nn.Module:  # built once: for extraction on a cache miss, and for the run
        if not built:
            from .surgery import split
            from .zoo import load_network

            built.append(split(load_network(card, allow_download), card.classifier)[0])
        return built[0]

    t0 = time.perf_counter()
    key = feature_key(card.fingerprint(), card.preprocessing, samples.paths)
    cached = cache.load(key, len(samples))
    if cached is None:  # every file is checked before any work starts (a cache entry proves them)
        samples = drop_bad_images(samples, skip_bad_files, log=log)
    hit_seconds = time.perf_counter() - t0
    memo: list[Features] = []

    def features() -> Features:
        if not memo:
            memo.append(Features(cached, cache_hit=True, seconds=hit_seconds, key=key) if cached is not None else
                        _features(card, card.fingerprint(), samples, cache, prepared.device, False, body,
                                  extract_batch_size, num_workers)[1])
        return memo[0]

    train_idx, val_idx = stratified_split(samples.labels, val_split, seed)
    prepared = Prepared(card, samples, train_idx, val_idx, device, body, features, card.num_features,
                        body_id=card.fingerprint(), cache=cache)
    return prepared


def read_samples(data: str | Path, kind: str | None = None, text: TextOptions | None = None, min_classes: int = 2):
    """DATA's labelled samples, images or texts (`kind`, else detected)."""
    kind = kind or data_modality(data)
    _not_detection(data, kind)
    if kind == "text":
        text = text or TextOptions()
        return read_text_data(data, text_column=text.text_column, label_column=text.label_column,
                              skip_empty=text.skip_empty, log=log, min_classes=min_classes)
    return read_image_data(data, min_classes=min_classes)


def _prepare_text(data: str | Path, card: ModelCard, val_split: float, seed: int, cache_dir: str | Path | None,
                  no_cache: bool, device: str | None, extract_batch_size: int | None, text: TextOptions) -> Prepared:
    """Text DATA: read and check it, tokenize it once. A word-vector card's body is built for a
    vocabulary of the training split's words plus the vectors' most frequent words (text.network)."""
    from .features import extract
    from .run import body_fingerprint
    from .text.inputs import Tokenizer, card_model_dir
    from .text.network import build_vocabulary, build_word_body, load_encoder_body, text_record, word_vectors

    samples = read_samples(data, "text", text)
    dev = pick_device(device)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    train_idx, val_idx = stratified_split(samples.labels, val_split, seed)
    pre = card.preprocessing
    assert isinstance(pre, TextPreprocessing)
    max_length = text.max_length or pre.max_length
    built: list[torch.nn.Module] = []
    record = None
    if card.architecture == "transformers":
        tokenizer = Tokenizer(pre, model_dir=card_model_dir(card))
        num_features, body_id = card.num_features, card.fingerprint()

        def body() -> torch.nn.Module:
            if not built:
                built.append(load_encoder_body(card))
            return built[0]
    else:
        counts = np.bincount(samples.labels[train_idx], minlength=len(samples.classes))
        text = text.resolved(int(counts.min()))
        wv = word_vectors(card)
        vocab = build_vocabulary([samples.texts[i] for i in train_idx], wv, text.min_count)
        net, stats = build_word_body(card, vocab, text.encoder, text.hidden, seed, wv=wv,
                                     pretrained=text.embeddings != "random")
        from .text.vectors import token_coverage

        coverage = token_coverage([samples.texts[i] for i in train_idx], wv)
        others = stats["new_words"] - 1  # UNK aside
        start = f"{stats['composed']:,} from their parts' vectors, the rest random" if stats["composed"] else "random"
        log(f"vocabulary: {len(vocab):,} words ({text.encoder} encoder), {100 * stats['vocab_covered']:.1f}% of them with a "
            f"pretrained vector" + (f" ({others:,} others: {start})" if others > 0 else "") +
            f"; {100 * coverage:.1f}% of the training tokens have one")
        record = text_record(vocab, net) | {
            "options": asdict(text), "vocab_covered": stats["vocab_covered"], "token_coverage": coverage}
        built.append(net)
        tokenizer = Tokenizer(pre, vocabulary=vocab)
        num_features, body_id = net.num_features, body_fingerprint(net)

        def body() -> torch.nn.Module:
            return built[0]
    tokens = tokenizer(list(samples.texts), max_length)
    tokens.say_truncated()
    memo: list[Features] = []
    textpre = TextPreprocessing(pre.tokenizer, max_length, pre.pooling, pre.normalize)

    def features() -> Features:
        if not memo:
            memo.append(extract(body, body_id, textpre, tokens, num_features, cache, dev,
                                batch_size=extract_batch_size, model_name=card.name))
        return memo[0]

    return Prepared(card, samples, train_idx, val_idx, device, body, features, num_features, tokens, record, body_id,
                    cache=cache, _device=dev)


# A pretrained transformer encoder's body trains at 5e-5 (lr 1e-3 x 0.05), the top of the 2e-5..5e-5
# range usual for fine-tuning BERT-like encoders. Measured with MiniLM lp-ft on Rotten Tomatoes
# (balanced accuracy, mean of 5 seeds, benchmarks/bench_text.py): 64 per class 0.682 vs 0.666 at
# 1e-4, 8 per class 0.547 vs 0.530; all rows in a single epoch 0.794 vs 0.804 (the slower rate
# needs a second epoch there: 0.801 on two seeds).
TRANSFORMER_BODY_LR_MULT = 0.05


def fit(
    data: str | Path,
    model: str | None = None,
    out: str | Path = "runs/latest",
    *,
    strategy: str = "auto",
    head: str = "linear",
    hidden: int = HeadSpec.hidden,
    dropout: float = HeadSpec.dropout,
    epochs: int | None = None,
    head_epochs: int | None = None,
    lr: float | None = None,
    head_c: float | None = None,
    body_lr_mult: float | None = None,
    layer_decay: float | None = None,
    l2sp: float = 0.0,
    unfreeze_every: int = 1,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    accumulate: int = 1,
    warmup: float = 0.1,
    patience: int | None = None,
    augment: str | None = None,
    bn: str = "frozen",
    precision: str = "auto",
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
    tracker: str | None = None,
    text: TextOptions | None = None,
    task: str = "auto",
    detector: str = "auto",
    input_size: int | None = None,
    max_size: int | None = None,
    eval_every: int | None = None,
    budget: float | None = None,
    measure_only: bool = False,
) -> Run:
    """Transfer `model` to the labelled images or texts in `data` and write the run to `out`.

    `task` "detect" (or "auto" on DATA in COCO JSON or Pascal VOC layout) trains a detector
    instead: headstart.detection.train.fit_detector, which takes the options that apply to it
    (`detector`, `input_size`, `max_size`, `eval_every` are its own) and returns a DetectionRun.

    `model` defaults to efficientnet_lite0 for images and minilm_l6 for text. Text options
    (columns, --max-length, and for word-vector cards the encoder and --embeddings) come in
    `text` (headstart.text.network.TextOptions).

    The strategy decides what trains when (see headstart.strategies); `auto` measures the linear
    probe and trials of finetune and lp-ft on folds of the labelled examples (each trained on the
    other folds, scored on one) within `budget` seconds (headstart.auto, default 60), trains the
    best in full, and writes every measurement into
    metrics["auto"] and the reason into metrics["strategy_reason"]. Phases with a frozen body fit the head on cached features
    (headstart.probe: L-BFGS to convergence, its L2 strength `head_c` chosen by cross-validation
    unless given); phases that train the body run the training loop (headstart.train).
    With `measure_only`, auto stops after its measurements and returns them (AutoMeasurement: the
    choice, the reason, metrics["auto"], the folds and every strategy's out-of-fold predictions);
    nothing is written to `out`.
    A linear probe uses every labelled example: its folds pick C and measure the head
    (metrics["val_accuracy"] is the cross-validated accuracy, metrics["cv"] the grid), then it is
    fitted on all of them; `val_split` applies to strategies that train the body.
    `epochs`, `lr`, `weight_decay`, `patience` and `batch_size` are those of phases that train the
    body (15 epochs, head lr 1e-3 with the body at lr * body_lr_mult: 0.1, 0.05 for transformer
    encoders; weight decay 1e-4, patience 5, 16 images per batch on a CPU); a linear probe has none
    of them, and refuses them. `augment` defaults to crop-flip (detection: flip).
    `head_epochs` (the first, frozen-body phase's epochs), `detector`, `input_size`, `max_size` and
    `eval_every` (validate every this many epochs; default 4) are detection's; an option that does not
    apply to the task at hand is refused (refuse_options_of_other_tasks).
    """
    HeadTraining(c=head_c)  # --head-c's range, checked before any work
    kind = _task(task, data)
    refuse_options_of_other_tasks(kind, head=head, hidden=hidden, dropout=dropout, class_balance=class_balance,
                                  head_c=head_c, budget=budget, text=text, detector=detector, input_size=input_size,
                                  max_size=max_size, eval_every=eval_every, head_epochs=head_epochs)
    if kind == "detect":
        from .detection.train import fit_detector

        return fit_detector(  # type: ignore[return-value]
            data, model, out, strategy=strategy, detector=detector, arch=arch, epochs=epochs,
            head_epochs=head_epochs, unfreeze_every=unfreeze_every, lr=lr,
            body_lr_mult=body_lr_mult or 1.0, layer_decay=layer_decay or 1.0,
            weight_decay=WEIGHT_DECAY if weight_decay is None else weight_decay,
            batch_size=batch_size, warmup=warmup, bn=bn, augment=augment or "flip", l2sp=l2sp, accumulate=accumulate,
            patience=patience, tracker=tracker, eval_every=eval_every or 4, input_size=input_size, max_size=max_size,
            precision=precision, seed=seed, val_split=val_split, skip_bad=skip_bad_files, overwrite=overwrite,
            allow_download=allow_download, device=device, num_workers=num_workers or 0)
    augment = augment or "crop-flip"
    t_start = time.perf_counter()
    Strategy.parse(strategy) if strategy.strip().lower() != "auto" else None  # a typo fails before any work
    budget_s = check_budget(budget, strategy.strip().lower() == "auto")
    if measure_only and strategy.strip().lower() != "auto":
        raise HeadstartError("measure_only applies to --strategy auto (its measurements); leave it out")
    spec = HeadSpec(kind=head, hidden=hidden, dropout=dropout)  # type: ignore[arg-type]
    out_dir = check_out_dir(out, overwrite)
    if Path(data).is_dir() and out_dir.resolve().is_relative_to(Path(data).expanduser().resolve()):
        raise HeadstartError(f"--out '{out}' is inside DATA '{data}', where it would become a class; put the run elsewhere")
    text = text or TextOptions()
    p = prepare(data, model, arch=arch, allow_download=allow_download, val_split=val_split, seed=seed,
                cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files, device=device,
                extract_batch_size=extract_batch_size, num_workers=num_workers, text=text)
    card, samples, train_idx, val_idx = p.card, p.samples, p.train_idx, p.val_idx
    body_factory, features = p.body, p.features
    words = card.architecture == "word-vectors"
    if p.text:  # a word-vector network: the options as resolved for this data (encoder auto -> cnn or mean)
        text = TextOptions(**p.text["options"])
    auto = strategy.strip().lower() == "auto"
    if words and auto:
        chosen, reason = Strategy.parse(text.strategy()), (
            f"--embeddings {text.embeddings} with the {text.encoder} encoder" + (
                ": the new encoder and the words without a vector train, the pretrained vectors stay fixed"
                if text.strategy() == "partial:1" else ": random embeddings, everything trains (no transfer)" if text.embeddings == "random" else ""))
    elif auto:
        chosen, reason = None, ""  # measured below (headstart.auto)
    else:
        chosen, reason = Strategy.parse(strategy), f"chosen with --strategy {strategy}"
    if body_lr_mult is None:  # a word-vector network's encoder is new: it trains at the head's rate
        body_lr_mult = 1.0 if words else TRANSFORMER_BODY_LR_MULT if card.architecture == "transformers" else 0.1
    if layer_decay is None:  # ... and its pretrained embeddings, when they train, at a tenth of it
        layer_decay = 0.1 if words and text.embeddings != "random" else 1.0
    text_info = {"options": asdict(text), "network": p.text} if samples.modality == "text" else None
    if words and precision == "auto":
        precision = WORD_PRECISION
    if words and epochs is None:  # small data gives few steps per epoch: at least ~300 optimizer steps
        per_epoch = max(1, len(train_idx) // (batch_size or 32))
        epochs = min(100, max(BODY_EPOCHS, math.ceil(300 / per_epoch)))
    body_options = dict(epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, patience=patience,
                        head_epochs=head_epochs, dropout=dropout or None)
    training = HeadTraining(class_balance=class_balance, seed=seed, c=head_c)

    def config(name: str, phase_epochs: int | None = None):
        from .train import TrainConfig

        return TrainConfig(
            strategy=name, head=spec.to_dict(), epochs=phase_epochs or epochs or BODY_EPOCHS, head_epochs=1,
            unfreeze_every=unfreeze_every, lr=lr or BODY_PHASE_LR, body_lr_mult=body_lr_mult,
            layer_decay=layer_decay, l2sp=l2sp, weight_decay=WEIGHT_DECAY if weight_decay is None else weight_decay,
            batch_size=batch_size or (32 if words else default_batch_size(p.device)), accumulate=accumulate,
            warmup=warmup, patience=patience or BODY_PATIENCE, augment=augment, bn=bn,
            precision=precision, seed=seed, val_split=val_split, class_balance=class_balance, head_c=head_c)

    def pretrained() -> torch.nn.Module:
        """The body as the card has it, for each of auto's runs: the one built is never trained itself."""
        import copy

        return copy.deepcopy(body_factory())

    def train_body(name: str, why: str, folder: Path, watch: Any = None, epochs: int | None = None,
                   split: tuple[np.ndarray, np.ndarray] | None = None) -> Run:
        """A run of strategy `name` in `folder`; auto's trials give their own `split` (train, score) and `watch`."""
        body = pretrained if chosen is None else body_factory  # auto trains several times
        tr, va = split if split is not None else (train_idx, val_idx)
        return _train_body(folder, card, samples, tr, va, config(name, epochs), why, features, p.device,
                           body, num_workers, tracker, fresh=True, t_start=t_start, skip_bad_files=skip_bad_files,
                           tokens=p.tokens, text_info=text_info, num_features=p.num_features, watch=watch)

    if chosen is None:
        measured = _measure_auto(p, out_dir, spec, training, budget_s, train_body, epochs or BODY_EPOCHS)
        if measure_only:
            return measured  # type: ignore[return-value]
        return _fit_auto(p, out_dir, spec, training, measured, train_body, text_info, t_start, device,
                         head_c=head_c, **body_options)
    if measure_only:  # auto with word vectors follows from --embeddings: nothing is measured
        raise HeadstartError("measure_only applies to --strategy auto with a network it measures (not word vectors)")
    check_probe_options(chosen, auto, head_c=head_c, **body_options)
    if chosen.trains_body:
        from .surgery import depth_groups

        chosen.check(len(depth_groups(body_factory())), card.name)
    log(f"strategy {chosen.name}: {reason}")
    if chosen.trains_body:
        return train_body(chosen.name, reason, out_dir)
    return _fit_probe(p, out_dir, spec, training, chosen.name, reason, text_info, t_start, device)


@dataclass
class AutoMeasurement:
    """What `--strategy auto` measured (headstart.auto), before the chosen strategy is trained in
    full: fit(measure_only=True) returns it (advise measures its gain on the same folds)."""

    chosen: str
    reason: str
    record: dict[str, Any]  # metrics["auto"]
    labels: np.ndarray  # every labelled example's class, in DATA's order
    folds: list[tuple[np.ndarray, np.ndarray]] | None  # (train on, score on) indices into labels; None: no trials
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # out-of-fold, per strategy; -1: not decided


def _measure_auto(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining, budget: float,
                  train_body: Callable[..., Run], full_epochs: int) -> AutoMeasurement:
    """--strategy auto's measurements (headstart.auto): the linear probe and trials of the strategies
    that train the body, each trained on the other folds of the labelled examples and scored on one,
    fold after fold, within `budget` seconds. Trials write only into a folder beside `out_dir`, which
    is removed whatever happens."""
    from . import auto
    from .auto import TRIALS, Trial, TrialStopped, balanced_accuracy, describe, trial_line

    samples = p.samples
    x = p.features().array  # extracted first where the cache has none: the budget starts once they are there
    deadline = time.perf_counter() + budget
    everything = np.sort(np.concatenate([p.train_idx, p.val_idx]))
    y = samples.labels[everything]
    record: dict[str, Any] = {"budget_seconds": budget, "examples": int(len(everything)), "folds": auto.FOLDS, "trials": []}
    skipped = None
    ref = None
    folds = None
    counts = np.bincount(y, minlength=len(samples.classes))
    if counts.min() < 2:
        skipped = (f"no trials: class {samples.classes[int(counts.argmin())]!r} has a single example, which no fold "
                   "can both train on and score")
    else:
        folds = auto.folds(y, auto.FOLDS, training.seed)
        t = time.perf_counter()
        ref = np.empty(len(y), dtype=np.int64)
        for fit_on, score_on in folds:
            head = train_head(spec, x[everything[fit_on]], y[fit_on], None, None, len(samples.classes), training)
            ref[score_on] = head.predict(x[everything[score_on]])
        record["probe"] = {"strategy": "linear-probe", "val_balanced_accuracy": round(balanced_accuracy(ref, y), 4),
                           "seconds": round(time.perf_counter() - t, 2)}
        log(f"auto: linear probe {record['probe']['val_balanced_accuracy']:.3f} balanced accuracy on {len(y)} "
            f"examples, each scored by a probe fitted on the other folds ({record['probe']['seconds']:.1f} s); "
            f"then trials of {', '.join(TRIALS)} within {budget:.0f} s")
    if skipped is None and budget <= 0:
        skipped = "no trials (--budget 0)"
    if skipped is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        skipped = "no trials under several processes (name the strategy with --processes)"
    epoch_estimate = 0.0
    if skipped is None:
        scored = len(y) // auto.FOLDS
        epoch_estimate = auto.epoch_seconds(sum(t.numel() for t in p.body().parameters()), samples.modality,
                                            p.device.type, len(y) - scored, scored)
    best: dict[str, Any] = {"name": "linear-probe", "pred": ref}
    predictions = {"linear-probe": ref} if ref is not None else {}
    trials: list[dict[str, Any]] = record["trials"]
    trial_dir = out_dir.with_name(f".{out_dir.name}.auto-trial")
    try:
        for i, name in enumerate(TRIALS if skipped is None else ()):
            assert folds is not None
            known = best["pred"] >= 0  # a trial that won on some folds has predictions there only
            if not auto.can_win(best["pred"][known], y[known]):
                skipped = (f"no trial of {', '.join(TRIALS[i:])}: {best['name']} is wrong on too few examples "
                           "for anything to beat it by more than the spread")
                log(f"auto: {skipped}")
                break
            share = deadline - time.perf_counter()  # what is left of the budget
            # the whole schedule on a fold, unless one fold's run would not fit in what is left
            epochs, why_not = auto.trial_epochs(share, epoch_estimate, full_epochs, best.get("epochs"))
            if why_not:
                trials.append({"strategy": name, "against": best["name"], "outcome": "not run", "seconds": 0.0,
                               "why": why_not})
                log(f"auto: {trial_line(trials[-1])}")
                continue
            trial = Trial(name, best["name"], best["pred"], y, share, ref if best["name"] != "linear-probe" else None,
                          epoch_estimate)
            short = f", {epochs} of its {full_epochs} epochs" if epochs < full_epochs else ""
            log(f"auto: trial of {name} against {best['name']} on {auto.FOLDS} folds{short} (at most {share:.0f} s)")
            for fit_on, score_on in folds:
                if not trial.start_fold(score_on):
                    break
                try:
                    train_body(name, f"auto trial of {name}", trial_dir, watch=trial, epochs=epochs,
                               split=(everything[fit_on], everything[score_on]))
                except TrialStopped:
                    break
                finally:
                    shutil.rmtree(trial_dir, ignore_errors=True)
                trial.end_fold()
            rec = trial.record()
            rec["schedule_epochs"] = epochs
            epoch_estimate = trial.seconds_per_epoch or epoch_estimate  # measured: the next trial plans with it
            trials.append(rec)
            log("auto: " + trial_line(rec))
            predictions[name] = trial.decided()
            if trial.ahead:
                best = {"name": name, "pred": predictions[name], "epochs": epochs}
    finally:
        shutil.rmtree(trial_dir, ignore_errors=True)  # what trials wrote, whatever happened
    record["chosen"] = best["name"]
    reason = ("auto: " + describe(record["probe"], trials, best["name"], len(y), skipped) if "probe" in record
              else f"auto: {skipped}: the linear probe")
    return AutoMeasurement(best["name"], reason, record, y, folds, predictions)


def _fit_auto(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining, m: AutoMeasurement,
              train_body: Callable[..., Run], text_info: dict[str, Any] | None, t_start: float,
              device: str | None, head_c: float | None, **body_options: Any) -> Run:
    """--strategy auto after its measurements: the strategy that won by more than the spread trained in
    full, or the probe fitted on everything."""
    check_probe_options(Strategy.parse(m.chosen), True, head_c=head_c, **body_options)
    log(f"strategy {m.chosen}: {m.reason}")
    if m.chosen == "linear-probe":
        if out_dir.exists():
            shutil.rmtree(out_dir)
        return _fit_probe(p, out_dir, spec, training, "linear-probe", m.reason, text_info, t_start, device,
                          extra={"auto": m.record})
    run = train_body(m.chosen, m.reason, out_dir)
    run.metrics.update(strategy_reason=m.reason, auto=m.record, total_seconds=round(time.perf_counter() - t_start, 3))
    run.info.update(strategy_reason=m.reason)
    run.save_in_place()
    return run


def _fit_probe(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining, strategy: str, reason: str,
               text_info: dict[str, Any] | None, t_start: float, device: str | None,
               extra: dict[str, Any] | None = None) -> Run:
    """The linear-probe route: the head fitted on every example's cached features, written beside the
    body's tensors. With image features and the body's tensors both in the cache, nothing here
    imports torch: a re-fit costs reading the cache and fitting the head."""
    from .run import Run

    samples = p.samples
    feats = p.features()
    everything = np.sort(np.concatenate([p.train_idx, p.val_idx]))
    result = train_head(spec, feats.array[everything], samples.labels[everything], None, None,
                        len(samples.classes), training)
    tensors = _body_tensors(p) | {f"head.{k}": v for k, v in result.weights.items()}
    info = probe_info(samples, strategy, reason, training, text_info)
    metrics = probe_metrics(p.card.name, strategy, reason, spec, result, samples, feats, training.seed,
                            fixed=training.c is not None)
    if p.tokens is not None:
        metrics["text"] = _text_metrics(p.tokens, p.text)
    metrics.update(extra or {})
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 3)
    record = run_record(info, p.card, spec, samples.classes, p.body_id)
    save_run(out_dir, tensors, metrics, record)
    return Run(dir=out_dir, card=p.card, head=spec, classes=samples.classes, body_id=p.body_id, info=record,
               metrics=metrics, device=device)


def _body_tensors(p: Prepared) -> dict[str, np.ndarray]:
    """The frozen body's tensors under the run's names (body.*): from the cache when an earlier fit kept
    them (image cards), else from the built body (then kept for the next fit)."""
    image = p.samples.modality == "image"
    kept = p.cache.load_body(p.body_id) if image else None
    if kept is None:
        body = p.body()
        kept = {k: v.detach().cpu().contiguous().numpy() for k, v in body.state_dict().items()}
        if image:
            p.cache.store_body(p.body_id, kept)
    return {f"body.{k}": v for k, v in kept.items()}


# Options that apply to one task only, with the value that means "not given".
CLASSIFY_ONLY: dict[str, Any] = {"head": "linear", "hidden": HeadSpec.hidden, "dropout": HeadSpec.dropout,
                                 "class_balance": True, "head_c": None, "budget": None, "text": None}
DETECT_ONLY: dict[str, Any] = {"detector": "auto", "input_size": None, "max_size": None, "eval_every": None,
                               "head_epochs": None}
WHY_NOT = {
    "detect": "a detector has no classification head on features and its auto strategy is not measured",
    "classify": "a classifier's head on cached features is one exact fit, and the rest are the detector's",
}


def refuse_options_of_other_tasks(task: str, **given: Any) -> None:
    """An option given for a task it has no use for ends in one line naming the option and the task,
    before any work."""
    other = CLASSIFY_ONLY if task == "detect" else DETECT_ONLY
    named = []
    for name, value in given.items():
        if name in other and value != other[name] and not (name == "text" and value == TextOptions()):
            flag = "--no-class-balance" if name == "class_balance" else "text options (--text-column, ...)" \
                if name == "text" else f"--{name.replace('_', '-')}"
            named.append(flag)
    if named:
        words = "detection" if task == "detect" else "classification"
        raise HeadstartError(f"{', '.join(named)} {'do' if len(named) > 1 else 'does'} not apply to {words} "
                             f"({WHY_NOT[task]}); leave {'them' if len(named) > 1 else 'it'} out")


def check_probe_options(chosen: Strategy, auto: bool, head_c: float | None = None, **given: Any) -> None:
    """A linear probe is fitted exactly, with its L2 strength chosen by cross-validation: options of
    iterative training do not apply to it, and --head-c applies only where a phase fits the head
    alone on cached features. Asked for with an explicit --strategy, options that do not apply are
    refused rather than ignored; when `auto` chose the strategy, fit says that they go unused."""
    if head_c is not None and not chosen.fits_head_first:
        if auto:
            log(f"--head-c unused: auto chose {chosen.name}, which fits no head alone on cached features")
        else:
            raise HeadstartError(f"--head-c does not apply to --strategy {chosen.name} (no phase fits the head alone "
                                 "on cached features); leave it out, or use linear-probe, lp-ft or gradual")
    if chosen.trains_body:
        return
    named = [k.replace("_", "-") for k, v in given.items() if v is not None]
    if named and auto:
        log(f"--{', --'.join(named)} unused: they set phases that train the body, and auto chose the linear probe")
    elif named:
        raise HeadstartError(
            f"--{', --'.join(named)} {'do' if len(named) > 1 else 'does'} not apply to the linear probe (its head is "
            "fitted to convergence by L-BFGS, the L2 strength chosen by cross-validation on every example; "
            "--head-c fixes it); leave {} out, or train the body (--strategy lp-ft, finetune, ...)".format(
                "them" if len(named) > 1 else "it"))


def probe_info(samples: Any, strategy: str, reason: str, training: HeadTraining,
               text_info: dict[str, Any] | None) -> dict[str, Any]:
    """The headstart.json record of a linear-probe run (rundir.run_record adds the card, head and classes)."""
    info: dict[str, Any] = {"task": "classify", "data": samples.source, "strategy": strategy, "strategy_reason": reason,
                            "training": {"class_balance": training.class_balance, "seed": training.seed,
                                         "head_c": training.c, "folds": training.folds}}
    if text_info:
        info["text"] = text_info
    return info


def probe_metrics(model: str, strategy: str, reason: str, spec: HeadSpec, result: Any, samples: Any,
                  feats: Features, seed: int, fixed: bool = False) -> dict[str, Any]:
    """metrics.json of a linear-probe run: the cross-validated figures at the chosen C. The head is
    fitted on the CPU (NumPy), wherever the features were computed."""
    n = len(samples)
    cv = result.cv
    validation = ("none: C fixed by --head-c" if fixed else "none: a class has a single example, C at its default"
                  if cv is None else f"{cv['folds']}-fold cross-validation" + (
                      f" on {cv['examples']:,} of the {n:,} examples" if cv["examples"] < n else ""))
    return {
        "model": model,
        "strategy": strategy,
        "strategy_reason": reason,
        "head": spec.kind,
        "val_accuracy": result.val_accuracy,
        "val_balanced_accuracy": result.val_balanced_accuracy,
        "val_loss": result.val_loss,
        "validation": validation,
        "head_c": result.c,
        "cv": result.cv,
        "n_train": n,
        "n_val": 0,
        "n_classes": len(samples.classes),
        "class_counts": samples.counts(),
        "seed": seed,
        "extract_seconds": round(feats.seconds, 3),
        "train_seconds": round(result.seconds, 3),
        "cache_hit": feats.cache_hit,
        "extract_images_per_second": round(feats.images_per_second, 1) if not feats.cache_hit else None,
        "best": {"phase": "head"},
        "phases": [{"phase": 0, "name": "head", "trainable_groups": 0, "groups": None, "from_cache": True,
                    "iterations": result.iterations, "body_forward_images": 0, "seconds": round(result.seconds, 3)}],
        "device": "cpu",
        "history": [],
        "headstart": __version__,
    }


TASKS = ("auto", "classify", "detect")


def _not_detection(data: str | Path, kind: str) -> None:
    if kind == "detection":
        raise HeadstartError(f"DATA '{data}' is a detection dataset (boxes in COCO JSON / Pascal VOC), and this command "
                             "takes labelled images or texts (class folders, CSV, JSONL); train a detector with "
                             "`headstart fit DATA --task detect`")


def _task(task: str, data: str | Path | None) -> str:
    """classify or detect: as given, or (auto) detect when DATA is a COCO JSON / Pascal VOC dataset."""
    if task not in TASKS:
        raise HeadstartError(f"--task must be one of {', '.join(TASKS)}; got '{task}'")
    if task == "auto":
        from .detection.data import is_detection_data

        return "detect" if data is not None and is_detection_data(data) else "classify"
    return task


def _text_metrics(tokens: Tokenized, network: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"max_length": tokens.max_length, "truncated": tokens.truncated}
    if network:
        out.update(vocabulary=len(network["vocabulary"]["words"]), token_coverage=network["token_coverage"],
                   vocab_covered=network["vocab_covered"], encoder=network["encoder"])
    return out


def _train_body(out_dir: Path, card: ModelCard, samples: ImageSamples, train_idx: np.ndarray, val_idx: np.ndarray,
                cfg, reason: str, get_features: Callable[[], Features], dev: torch.device,
                body_factory: Callable[[], torch.nn.Module], num_workers: int | None, tracker: str | None,
                fresh: bool, t_start: float, skip_bad_files: bool = False, tokens: Tokenized | None = None,
                text_info: dict[str, Any] | None = None, num_features: int | None = None, watch: Any = None) -> Run:
    """Strategies that train the body: the loop in headstart.train, checkpointed in out_dir. `watch`:
    an auto trial (headstart.auto.Trial), which sees every epoch's held-out predictions and may stop
    the run (TrialStopped); a trial's run returns None."""
    from .engine import Callback, Engine, make_accelerator, seed_everything, start_trackers
    from .surgery import TransferModel
    from .train import ClassificationTask, finish, start_record

    acc = make_accelerator(cfg, out_dir, tracker, cpu=dev.type == "cpu")
    if fresh and acc.is_main_process:
        if out_dir.exists():
            shutil.rmtree(out_dir)  # check_out_dir allowed it: a finished run, or --overwrite
        out_dir.mkdir(parents=True)
        atomic_write_json(out_dir / RUN_FILE, start_record(card, samples, cfg, reason, skip_bad_files, text_info))
    acc.wait_for_everyone()
    start_trackers(acc, cfg, tracker,
                   on_failure=lambda: shutil.rmtree(out_dir, ignore_errors=True) if fresh and acc.is_main_process else None)
    seed_everything(cfg.seed)  # the new head's initial weights
    model = TransferModel(body_factory(), HeadSpec.from_dict(cfg.head).build(num_features or card.num_features,
                                                                              len(samples.classes)))
    feats: list[Features] = []

    def features() -> Features:  # only head-only phases need them; the main process fills the cache first
        if not feats:
            with acc.main_process_first():
                feats.append(get_features())
        return feats[0]

    class Watched(Callback):
        """An auto trial as the engine's callback: it sees each epoch's held-out predictions and whether
        the epoch trained the body, and stops the run (TrialStopped) by returning False."""

        def on_epoch_end(self, engine: Engine, record: dict[str, Any]) -> None:
            pred = engine.val_predictions
            if pred is not None and not watch(engine.state.global_epoch, pred, not record.get("head_only")):
                from .auto import TrialStopped

                raise TrialStopped()

    task = ClassificationTask(card, samples, train_idx, val_idx, features, cfg, model, num_workers, tokens=tokens)
    engine = Engine(out_dir, task, cfg, acc, callbacks=[Watched()] if watch is not None else ())
    if not fresh:
        engine.resume()
    engine.run()
    if watch is not None:  # an auto trial: its predictions are what it leaves (headstart.auto.Trial)
        return None  # type: ignore[return-value]
    s = engine.state
    best = next((h for h in s.history if h["epoch"] == s.best_epoch), s.history[-1] if s.history else {})
    best_phase = s.phases[best["phase"]]["name"] if best and best.get("phase", 99) < len(s.phases) else None
    extracted = feats[0] if feats else None
    metrics: dict[str, Any] = {
        "model": card.name,
        "strategy": cfg.strategy,
        "strategy_reason": reason,
        "head": cfg.head["kind"],
        "val_accuracy": best.get("val_accuracy"),
        "val_balanced_accuracy": best.get("val_balanced_accuracy"),
        "val_loss": best.get("val_loss"),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_classes": len(samples.classes),
        "class_counts": samples.counts(),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "epochs_run": s.global_epoch,
        "best_epoch": s.best_epoch,
        "best": {"phase": best_phase, "phase_epoch": best.get("phase_epoch")} if best else None,
        "stopped_early": s.stopped_early,
        "extract_seconds": round(extracted.seconds, 3) if extracted else 0.0,
        "train_seconds": round(sum(p["seconds"] for p in s.phases), 3),
        "cache_hit": extracted.cache_hit if extracted else None,
        "images_per_second": round(s.images / s.body_seconds, 2) if s.body_seconds else None,
        "phases": s.phases,
        "device": str(acc.device),
        "processes": acc.num_processes,
        "precision": acc.mixed_precision,
        "history": s.history,
        "config": cfg.to_dict(),
        "headstart": __version__,
        "total_seconds": round(time.perf_counter() - t_start, 3),
    }
    if tokens is not None:
        metrics["text"] = _text_metrics(tokens, (text_info or {}).get("network"))
    info = {k: v for k, v in (run_info(out_dir) or {}).items()}
    info.update(strategy=cfg.strategy, strategy_reason=reason, data=samples.source)
    if text_info:
        info["text"] = text_info
    return finish(engine, info, metrics)


def resume(
    run_dir: str | Path,
    data: str | Path | None = None,
    model: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    device: str | None = None,
    num_workers: int | None = None,
    tracker: str | None = None,
    given: dict[str, Any] | None = None,
) -> Run:
    """Continue a run that was stopped, at the phase and epoch of its last checkpoint.

    `data` and `model` default to the run's own; when given they must match it, as must
    any training option in `given` (the settings a run was started with are its own)."""
    from .train import TrainConfig

    t_start = time.perf_counter()
    d = Path(run_dir).expanduser()
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"--resume '{d}' is not a headstart run; give the --out folder of a fit that was stopped")
    if info.get("status") != "training":
        raise HeadstartError(f"--resume '{d}': the run already finished; evaluate it, or fit again with --out")
    if info.get("task") == "detect":
        from .detection.train import resume_detector

        _refuse_other_inputs(d, info, data, given)
        return resume_detector(d, info, device=device, num_workers=num_workers or 0)  # type: ignore[return-value]
    cfg = TrainConfig.from_dict(info["config"])
    card = ModelCard.from_dict(info["card"])
    _refuse_other_inputs(d, info, data, given, model, card.name)
    source = data if data is not None else info["data"]["source"]
    text_info = info.get("text")
    p = prepare(source, card, val_split=cfg.val_split, seed=cfg.seed, cache_dir=cache_dir, no_cache=no_cache,
                skip_bad_files=info["data"].get("skip_bad_files", False), device=device, num_workers=num_workers,
                text=TextOptions(**text_info["options"]) if text_info else None)
    if p.samples.fingerprint() != info["data"]["fingerprint"]:
        raise HeadstartError(f"--resume '{d}': the files in {source} changed since the run started "
                             f"({len(p.samples)} files now, {info['data']['n']} then); start a new run with --out")
    log(f"resuming {d} ({cfg.strategy})")
    return _train_body(d, card, p.samples, p.train_idx, p.val_idx, cfg, info.get("strategy_reason", ""), p.features,
                       p.device, p.body, num_workers, tracker, fresh=False, t_start=t_start, tokens=p.tokens,
                       text_info=text_info, num_features=p.num_features)


def _refuse_other_inputs(d: Path, info: dict[str, Any], data: str | Path | None, given: dict[str, Any] | None,
                         model: str | None = None, run_model: str | None = None) -> None:
    """--resume continues a run with its own settings: DATA, --model or a training option that
    differs from the run's is refused, all of them named in one line."""
    differences = []
    if model is not None and run_model is not None and model != run_model:
        differences.append(f"--model {model} (the run used {run_model})")
    saved_head = info["config"].get("head") or {}
    for key, value in (given or {}).items():
        saved = saved_head.get("kind" if key == "head" else key) if key in ("head", "hidden", "dropout") \
            else info["config"].get(key)
        if saved is not None and value is not None and value != saved:
            differences.append(f"--{key.replace('_', '-')} {value} (the run used {saved})")
    if data is not None and Path(data).expanduser().resolve() != Path(info["data"]["source"]).resolve():
        differences.append(f"DATA {data} (the run used {info['data']['source']})")
    if differences:
        raise HeadstartError(f"--resume '{d}' refuses to continue with other inputs: {'; '.join(differences)}; "
                             "drop those options, or start a new run with --out")


def _as_run(run: Run | str | Path, device: str | None = None) -> Run:
    from .detection.run import DetectionRun
    from .run import Run, load

    return run if isinstance(run, (Run, DetectionRun)) else load(run, device=device)  # type: ignore[return-value]


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
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class scores and the confusion matrix on labelled `data`.
    Text runs read the columns they were trained with, unless text_column / label_column say otherwise."""
    # imported here: scikit-learn's start-up costs a second that fit does not need
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    t0 = time.perf_counter()
    r = _as_run(run, device)
    if r.modality == "detection":
        from .detection.run import evaluate_detector

        return evaluate_detector(r, data, skip_bad=skip_bad_files, device=device)  # type: ignore[arg-type]
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
        from .features import extract

        tokenizer = r.tokenizer()
        tokens = tokenizer(list(samples.texts))
        tokens.say_truncated()
        feats = extract(lambda: r.model.body, r.body_id, tokenizer.pre, tokens, r.head_inputs, cache, dev,
                        batch_size=extract_batch_size, model_name=r.card.name)
    else:
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
    """Label and top-k scores for each image file (text runs: each text). `run` is a Run, a run
    folder, or an .onnx file written by `headstart export` (run with onnxruntime). Detection runs
    return each image's boxes instead (`out_dir=` also writes them drawn, as PNGs, and as JSON)."""
    from .export import OnnxRun, is_onnx_file

    if isinstance(run, OnnxRun) or is_onnx_file(run):
        onnx_run = run if isinstance(run, OnnxRun) else OnnxRun(run)
        return onnx_run.predict(files, top_k=top_k, **kw)
    r = _as_run(run, kw.pop("device", None))
    if r.modality == "detection":  # boxes: detections per image; out_dir=FOLDER also draws them (PNG + JSON)
        return r.predict(files, **{k: v for k, v in kw.items() if k in ("out_dir", "score_threshold", "batch_size",
                                                                         "skip_bad_files")})
    return r.predict(files, top_k=top_k, **kw)
