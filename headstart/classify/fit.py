"""Fitting a classifier (images or texts): the strategy named, or measured by --strategy auto
(headstart.auto: the linear probe and trials on folds), then a head fitted on cached features
(headstart.probe) or a run of the engine (classify.body)."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..adapt import ENGINE_METHODS
from ..auto import balanced_accuracy, check_budget
from ..cache import Features
from ..console import log
from ..data.unlabelled import Unlabelled
from ..errors import HeadstartError
from ..heads import HeadSpec
from ..options import FitOptions
from ..probe import HeadTraining, train_head
from ..rundir import check_out_dir, run_record, save_run
from ..runtime import default_batch_size, is_main_rank
from ..strategies import BODY_EPOCHS, BODY_PATIENCE, BODY_PHASE_LR, WEIGHT_DECAY, Strategy
from ..text.options import WORD_PRECISION, TextOptions
from ..zoo import ModelCard
from . import contrastive
from .body import text_metrics, train_body_run
from .prepare import Prepared, prepare
from .unlabelled import ENGINE_STRATEGY, adapted_head, auto_reason, body_auto, check_adapt_options, read_for

if TYPE_CHECKING:
    import torch

    from ..run import Run


# A pretrained transformer encoder's body trains at 5e-5 (lr 1e-3 x 0.05), the top of the 2e-5..5e-5
# range usual for fine-tuning BERT-like encoders. Measured with MiniLM lp-ft on Rotten Tomatoes
# (balanced accuracy, mean of 5 seeds, benchmarks/bench_text.py): 64 per class 0.682 vs 0.666 at
# 1e-4, 8 per class 0.547 vs 0.530; all rows in a single epoch 0.794 vs 0.804 (the slower rate
# needs a second epoch there: 0.801 on two seeds).
TRANSFORMER_BODY_LR_MULT = 0.05


def fit_classifier(data: str | Path, model: str | ModelCard | None, out: str | Path, o: FitOptions,
                   measure_only: bool = False, curve: dict[Any, tuple[np.ndarray, np.ndarray]] | None = None) -> Run:
    """headstart.fit for labelled images and texts (see its docstring): the strategy chosen or measured
    (auto), then a head on cached features or a run of the engine."""
    t, h, s = o.train, o.head, o.setup
    t_start = time.perf_counter()
    Strategy.parse(t.strategy) if t.strategy.strip().lower() != "auto" else None  # a typo fails before any work
    budget_s = check_budget(h.budget, t.strategy.strip().lower() == "auto")
    if measure_only and t.strategy.strip().lower() != "auto":
        raise HeadstartError("measure_only applies to --strategy auto (its measurements); leave it out")
    spec = HeadSpec(kind=h.head, hidden=h.hidden, dropout=h.dropout)  # type: ignore[arg-type]
    out_dir = check_out_dir(out, s.overwrite)
    if Path(data).is_dir() and out_dir.resolve().is_relative_to(Path(data).expanduser().resolve()):
        raise HeadstartError(f"--out '{out}' is inside DATA '{data}', where it would become a class; put the run elsewhere")
    text = o.text
    method = check_adapt_options(o.adapt, t.strategy)
    val_split = t.val_split_for(t.strategy)
    p = prepare(data, model, arch=s.arch, allow_download=s.allow_download, val_split=val_split, seed=t.seed,
                cache_dir=s.cache_dir, no_cache=s.no_cache, skip_bad_files=s.skip_bad_files, device=s.device,
                extract_batch_size=s.extract_batch_size, num_workers=s.num_workers, text=text,
                check_card=contrastive.check_card if t.strategy.strip().lower() == "contrastive" else None)
    card, samples, train_idx, val_idx = p.card, p.samples, p.train_idx, p.val_idx
    unlabelled = read_for(p, o.adapt, s.skip_bad_files, text.text_column, text.label_column, t.strategy)  # checked first
    body_factory, features = p.body, p.features
    words = card.architecture == "word-vectors"
    if p.text:  # a word-vector network: the options as resolved for this data (encoder auto -> cnn or mean)
        text = TextOptions(**p.text["options"])
    auto = t.strategy.strip().lower() == "auto"
    if words and auto:
        chosen, reason = Strategy.parse(text.strategy()), (
            f"--embeddings {text.embeddings} with the {text.encoder} encoder" + (
                ": the new encoder and the words without a vector train, the pretrained vectors stay fixed"
                if text.strategy() == "partial:1" else
                ": random embeddings, everything trains (no transfer)" if text.embeddings == "random" else ""))
    elif auto and not measure_only and method not in ENGINE_METHODS and contrastive.by_default(card, samples):
        chosen, reason = Strategy.parse("contrastive"), contrastive.AUTO_REASON
        if h.budget is not None:
            log("--budget unused: auto takes contrastive here without trials")
    elif auto:
        chosen, reason = None, ""  # measured below (headstart.auto)
    else:
        chosen, reason = Strategy.parse(t.strategy), f"chosen with --strategy {t.strategy}"
    pairs = chosen is not None and chosen.kind == "contrastive"
    # U through the engine: the body learns from it (classify.adapt_task), or contrastive's last head does
    engine_u = (unlabelled, method) if unlabelled is not None and (method in ENGINE_METHODS or pairs) else None
    if unlabelled is not None and auto and not pairs:
        chosen = Strategy.parse(ENGINE_STRATEGY if engine_u else "linear-probe")
        reason = auto_reason(method)
    body_lr_mult = t.body_lr_mult
    if body_lr_mult is None:  # a word-vector network's encoder is new: it trains at the head's rate
        body_lr_mult = 1.0 if words else TRANSFORMER_BODY_LR_MULT if card.architecture == "transformers" else 0.1
    layer_decay = t.layer_decay
    if layer_decay is None:  # ... and its pretrained embeddings, when they train, at a tenth of it
        layer_decay = 0.1 if words and text.embeddings != "random" else 1.0
    text_info = {"options": asdict(text), "network": p.text} if samples.modality == "text" else None
    precision = WORD_PRECISION if words and t.precision == "auto" else t.precision
    epochs = t.epochs
    if words and epochs is None:  # small data gives few steps per epoch: at least ~300 optimizer steps
        per_epoch = max(1, len(train_idx) // (t.batch_size or 32))
        epochs = min(100, max(BODY_EPOCHS, math.ceil(300 / per_epoch)))
    body_options = dict(epochs=epochs, lr=t.lr, weight_decay=t.weight_decay, batch_size=t.batch_size,
                        patience=t.patience, dropout=h.dropout or None)
    training = HeadTraining(class_balance=h.class_balance, seed=t.seed, c=h.head_c)

    def config(name: str, phase_epochs: int | None = None, n_train: int | None = None, last_only: bool = False):
        """The run's configuration; `last_only`: a measurement's run, which is scored by its last epoch only (it is
        validated there alone, and never stops early on the examples it is scored on)."""
        from ..engine import TrainConfig

        batch = t.batch_size or (32 if words else default_batch_size(p.device))
        if name == "contrastive":  # its batch is the pairs it learns from, and its budget is in batches of each text
            batch = t.batch_size or contrastive.BATCH
            phase_epochs = phase_epochs or epochs or contrastive.default_epochs(n_train or len(train_idx), batch)
        n_epochs = phase_epochs or epochs or BODY_EPOCHS
        return TrainConfig(
            strategy=name, head=spec.to_dict(), epochs=n_epochs, head_epochs=1, eval_every=n_epochs if last_only else 1,
            unfreeze_every=t.unfreeze_every or 1, lr=t.lr or BODY_PHASE_LR, body_lr_mult=body_lr_mult,
            layer_decay=layer_decay, l2sp=t.l2sp, weight_decay=WEIGHT_DECAY if t.weight_decay is None else t.weight_decay,
            batch_size=batch, accumulate=t.accumulate,
            warmup=t.warmup, patience=None if last_only else t.patience or BODY_PATIENCE, augment=t.augment or "crop-flip",
            bn=t.bn,
            precision=precision, seed=t.seed, val_split=val_split, class_balance=h.class_balance, head_c=h.head_c,
            clip_grad=t.clip_grad or 0.0)

    def pretrained() -> torch.nn.Module:
        """The body as the card has it, for each of auto's runs: the one built is never trained itself."""
        import copy

        return copy.deepcopy(body_factory())

    def train_body(name: str, why: str, folder: Path, watch: Any = None, epochs: int | None = None,
                   split: tuple[np.ndarray, np.ndarray] | None = None, last_only: bool = False, u: Any = engine_u,
                   adapt_auto: dict[str, Any] | None = None) -> Run:
        """A run of strategy `name` in `folder`; auto's trials give their own `split` (train, score) and `watch`."""
        body = pretrained if chosen is None else body_factory  # auto trains several times
        tr, va = split if split is not None else (train_idx, val_idx)
        return train_body_run(folder, card, samples, tr, va, config(name, epochs, len(tr), last_only), why, features,
                              p.device,
                              body, s.num_workers, s.tracker, fresh=True, t_start=t_start,
                              skip_bad_files=s.skip_bad_files, tokens=p.tokens, text_info=text_info,
                              num_features=p.num_features, watch=watch, unlabelled=u, auto=adapt_auto)

    if (chosen is None or not chosen.trains_body) and not is_main_rank() and not measure_only:
        return None  # type: ignore[return-value]  # --processes: a head on cached features is fitted once, by rank 0
    if chosen is None:
        measured = None
        if measure_only and method not in ENGINE_METHODS and contrastive.by_default(card, samples):  # advise
            measured = measure_contrastive(p, out_dir, spec, training, train_body, curve or {})
        measured = measured or measure_auto(p, out_dir, spec, training, budget_s, train_body, epochs or BODY_EPOCHS)
        if measure_only:
            return measured  # type: ignore[return-value]
        return fit_auto(p, out_dir, spec, training, measured, train_body, text_info, t_start, s.device,
                        head_c=h.head_c, **body_options)
    if measure_only:  # auto with word vectors follows from --embeddings: nothing is measured
        raise HeadstartError("measure_only applies to --strategy auto with a network it measures (not word vectors)")
    check_probe_options(chosen, auto, head_c=h.head_c, **body_options)
    if chosen.kind == "contrastive" and auto and t.val_split is None:  # auto's data was split with VAL_SPLIT
        from ..data.splits import stratified_split

        val_split = t.val_split_for(chosen.name)  # as an explicit contrastive run's, and --resume's
        train_idx, val_idx = stratified_split(samples.labels, val_split, t.seed)
    if chosen.kind == "contrastive":
        contrastive.check_texts(samples, train_idx)
    if chosen.trains_body:
        from ..surgery import depth_groups

        chosen.check(len(depth_groups(body_factory())), card.name)
    log(f"strategy {chosen.name}: {reason}")
    if chosen.trains_body and not pairs and unlabelled is not None and method == "auto":  # with U or without U
        return body_auto(p, unlabelled, spec, training, out_dir,
                         lambda folder, u, record: train_body(chosen.name, reason, folder, u=u, adapt_auto=record))
    if chosen.trains_body:
        return train_body(chosen.name, reason, out_dir)
    return fit_probe(p, out_dir, spec, training, chosen.name, reason, text_info, t_start, s.device,
                     unlabelled=unlabelled, method=method)


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
    curve: dict[Any, np.ndarray] = field(default_factory=dict)  # advise's curve points: contrastive's predictions


def measure_auto(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining, budget: float,
                  train_body: Callable[..., Run], full_epochs: int) -> AutoMeasurement:
    """--strategy auto's measurements (headstart.auto): the linear probe and trials of the strategies
    that train the body, each trained on the other folds of the labelled examples and scored on one,
    fold after fold, within `budget` seconds. Trials write only into a folder beside `out_dir`, which
    is removed whatever happens."""
    from .. import auto
    from ..auto import TRIALS, Trial, TrialStopped, describe, trial_line
    from ..engine import Diverged

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
        ref, record["probe"] = probe_folds(x[everything], y, folds, spec, training, len(samples.classes))
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
                except Diverged as e:  # the trial is left out; the probe (or an earlier winner) stands
                    trial.diverge(e.where)
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


def probe_folds(x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], spec: HeadSpec,
                training: HeadTraining, k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The linear probe's out-of-fold predictions (a head fitted on the other folds' features), and its record."""
    t = time.perf_counter()
    ref = np.empty(len(y), dtype=np.int64)
    for fit_on, score_on in folds:
        ref[score_on] = train_head(spec, x[fit_on], y[fit_on], None, None, k, training).predict(x[score_on])
    return ref, {"strategy": "linear-probe", "val_balanced_accuracy": round(balanced_accuracy(ref, y), 4),
                 "seconds": round(time.perf_counter() - t, 2)}


def measure_contrastive(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining,
                        train_body: Callable[..., Run], curve: dict[Any, tuple[np.ndarray, np.ndarray]]
                        ) -> AutoMeasurement | None:
    """What advise measures where fit's auto takes contrastive without measuring (classify.contrastive.by_default):
    its out-of-fold predictions, each fold scored by a run trained on the others, beside the probe's, on auto's
    folds; then a run for each of advise's `curve` points (train, test), its predictions of test in .curve. None
    where a fold's training part has a class of one text (auto measures then)."""
    from .. import auto

    everything = np.sort(np.concatenate([p.train_idx, p.val_idx]))
    y, k = p.samples.labels[everything], len(p.samples.classes)
    folds = auto.folds(y, auto.FOLDS, training.seed)
    if any(contrastive.check_pairs(y, fit_on, p.samples.classes) for fit_on, _ in folds):
        return None
    ref, probe = probe_folds(p.features().array[everything], y, folds, spec, training, k)
    folder = out_dir.with_name(f".{out_dir.name}.auto-trial")

    def predict(split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The second part's predictions by a run trained on the first (its last epoch's, whatever it scored)."""
        last: dict[str, np.ndarray] = {}

        def watch(epoch: int, pred: np.ndarray, trains_body: bool) -> bool:
            last["pred"] = pred
            return True

        try:
            train_body("contrastive", "measured on folds", folder, watch=watch, split=split, last_only=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return last["pred"]

    t = time.perf_counter()
    log(f"auto: contrastive on {auto.FOLDS} folds, each scored by a run trained on the others")
    oof = np.full(len(y), -1, dtype=np.int64)
    for fit_on, score_on in folds:
        oof[score_on] = predict((everything[fit_on], everything[score_on]))
    trial = {"strategy": "contrastive", "val_balanced_accuracy": round(balanced_accuracy(oof, y), 4),
             "seconds": round(time.perf_counter() - t, 2)}
    record = {"examples": int(len(y)), "folds": auto.FOLDS, "probe": probe, "trials": [trial], "chosen": "contrastive"}
    m = AutoMeasurement("contrastive", contrastive.AUTO_REASON, record, y, folds, {"linear-probe": ref, "contrastive": oof})
    if curve:  # about as long as a fold's run for each of its steps (contrastive.steps)
        per_step = trial["seconds"] / sum(contrastive.steps(len(fit_on)) for fit_on, _ in folds)
        total = per_step * sum(contrastive.steps(len(tr)) for tr, _ in curve.values())
        log(f"advise: contrastive at {len(curve)} curve points, about {total:.0f} s")
        m.curve = {key: predict((everything[tr], everything[te])) for key, (tr, te) in curve.items()}
    return m


def fit_auto(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining, m: AutoMeasurement,
              train_body: Callable[..., Run], text_info: dict[str, Any] | None, t_start: float,
              device: str | None, head_c: float | None, **body_options: Any) -> Run:
    """--strategy auto after its measurements: the strategy that won by more than the spread trained in
    full, or the probe fitted on everything."""
    check_probe_options(Strategy.parse(m.chosen), True, head_c=head_c, **body_options)
    log(f"strategy {m.chosen}: {m.reason}")
    if m.chosen == "linear-probe":
        if out_dir.exists():
            shutil.rmtree(out_dir)
        return fit_probe(p, out_dir, spec, training, "linear-probe", m.reason, text_info, t_start, device,
                          extra={"auto": m.record})
    run = train_body(m.chosen, m.reason, out_dir)
    run.metrics.update(strategy_reason=m.reason, auto=m.record, total_seconds=round(time.perf_counter() - t_start, 3))
    run.info.update(strategy_reason=m.reason)
    run.save_in_place()
    return run


def fit_probe(p: Prepared, out_dir: Path, spec: HeadSpec, training: HeadTraining, strategy: str, reason: str,
               text_info: dict[str, Any] | None, t_start: float, device: str | None,
               extra: dict[str, Any] | None = None, unlabelled: Unlabelled | None = None, method: str = "auto") -> Run:
    """The linear-probe route: the head fitted on every example's cached features, written beside the
    body's tensors. With image features and the body's tensors both in the cache, nothing here
    imports torch: a re-fit costs reading the cache and fitting the head. With `unlabelled`, the head
    learns from them too (classify.unlabelled); the figures of validation stay those without them."""
    from ..run import Run

    samples = p.samples
    feats = p.features()
    everything = np.sort(np.concatenate([p.train_idx, p.val_idx]))
    result = train_head(spec, feats.array[everything], samples.labels[everything], None, None,
                        len(samples.classes), training)
    weights, adapted, body, body_id = result.weights, None, None, p.body_id
    if unlabelled is not None:
        weights, adapted, body = adapted_head(p, unlabelled, method, spec, training, result, feats.array[everything],
                                              samples.labels[everything])
    if body is not None:  # AdaBN: the body with U's BatchNorm statistics is the run's
        from ..run import body_fingerprint

        body_id = body_fingerprint(body)
        tensors = {f"body.{k}": v.detach().cpu().contiguous().numpy() for k, v in body.state_dict().items()}
    else:
        tensors = body_tensors(p)
    tensors |= {f"head.{k}": v for k, v in weights.items()}
    info = probe_info(samples, strategy, reason, training, text_info)
    if adapted is not None:
        info["adapt"] = {"method": adapted["method"], "unlabelled": adapted["unlabelled"]}
    metrics = probe_metrics(p.card.name, strategy, reason, spec, result, samples, feats, training.seed,
                            fixed=training.c is not None)
    if p.tokens is not None:
        metrics["text"] = text_metrics(p.tokens, p.text)
    if adapted is not None:
        metrics["adapt"] = adapted
    metrics.update(extra or {})
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 3)
    record = run_record(info, p.card, spec, samples.classes, body_id)
    save_run(out_dir, tensors, metrics, record)
    return Run(dir=out_dir, card=p.card, head=spec, classes=samples.classes, body_id=body_id, info=record,
               metrics=metrics, device=device)


def body_tensors(p: Prepared) -> dict[str, np.ndarray]:
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
