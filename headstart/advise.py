"""`headstart advise`: should I transfer here, from which model, and how?

Transfer learning works when (1) the source and target share the same kind of input,
(2) the source had far more data, and (3) the source's features are useful for the target.
The advisor measures each on the user's own data:

  1. modality, channels and image size of DATA against each card;
  2. the card's source dataset size against the examples per class here;
  3. the ranking (headstart.rank) and a learning curve: held-out accuracy against labelled
     examples per class, for transfer (a linear probe on the best candidate's cached features)
     and for training without transfer (the same architecture from random initialisation,
     and logistic regression on pixels), over several seeds.

Then it recommends a model and a strategy: what `fit --strategy auto` measures (the linear probe,
then trials of the strategies that train the body, each example of DATA scored by a run trained on
the other folds; the winner is not trained here). The expected gain over training without transfer
is measured on the same folds and the same examples: the recommended strategy's out-of-fold
predictions against those of the better way without transfer, trained on the same folds, with the
spread of that paired difference. When the gain is within its spread, the verdict says the data
cannot tell.

With unlabelled examples (--unlabelled, as fit takes them) it also says whether they pay off: how far
they are from DATA, the head's confidence on them, what fit's --adapt auto would do and its check on
the labelled folds, and a learning curve with them (headstart.adapt).

What costs time is training from scratch (a dozen networks on a small CPU). Those runs train in
memory in this process (the images decoded once, no loader processes), one per core at a time,
and advise says how long it expects before the learning curve starts and how long it took.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import auto, baselines
from .adapt import adapt, pays_off, predict_with
from .auto import check_budget
from .conditions import image_conditions, inspect_texts, text_conditions
from .console import log, progress
from .data.images import appearance
from .data.modality import data_modality
from .data.unlabelled import read_unlabelled
from .errors import HeadstartError, plural
from .fileio import check_writable
from .heads import HeadSpec
from .options import check_value
from .probe import HeadTraining, train_head
from .rank import rank_models
from .runtime import pick_device
from .text.network import AUTO_RNN_PER_CLASS, TextOptions
from .zoo import get_card
from .zoo.card import ModelCard

DEFAULT_CURVE = (1, 2, 5, 10, 20, 50, 100)
MAX_TEST_PER_CLASS = 100  # larger DATA: the held-out part is subsampled (and the report says so)
FOLD_SEED = 1000  # the from-scratch runs of the cross-validation folds: seeds (and work folders) of their own
SCRATCH_STEPS = 200  # optimizer steps a from-scratch network gets at each curve point (at least 10 epochs)
PROBE_SECONDS = 0.3  # a linear probe with its cross-validation, on a CPU (headstart.probe)
SIMPLE_SECONDS = 0.05  # the simple baseline at one curve point


@dataclasses.dataclass
class Curve:
    points: list[int]
    transfer: dict[int, list[float]]
    scratch: dict[int, list[float]]
    simple: dict[int, list[float]]  # the simple baseline: logistic regression on pixels (images) or TF-IDF (text)
    simple_key: str = "pixels"
    unlabelled: dict[int, list[float]] = dataclasses.field(default_factory=dict)  # transfer learning from U too
    contrastive: dict[int, list[float]] = dataclasses.field(default_factory=dict)  # the encoder tuned on pairs

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for n in self.points:
            row: dict[str, Any] = {"per_class": n}
            for name, runs in (("transfer", self.transfer), ("scratch", self.scratch), (self.simple_key, self.simple),
                               ("unlabelled", self.unlabelled), ("contrastive", self.contrastive)):
                if name in ("unlabelled", "contrastive") and not runs:
                    continue
                vals = runs.get(n, [])
                row[name] = {"mean": float(np.mean(vals)) if vals else None,
                             "std": float(np.std(vals)) if vals else None, "runs": [float(v) for v in vals]}
            out.append(row)
        return out


def _split(labels: np.ndarray, seed: int, test_fraction: float, max_test: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices: each class gives test_fraction of its examples (1 to max_test) to the test set."""
    rng = np.random.default_rng(seed)
    pool, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max_test, max(1, int(round(len(idx) * test_fraction))))
        test.append(idx[:k])
        pool.append(idx[k:])
    return np.concatenate(pool), np.concatenate(test)


def _take(labels: np.ndarray, pool: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7919 * per_class)
    return np.concatenate([rng.permutation(pool[labels[pool] == c])[:per_class] for c in np.unique(labels)])


def _linear_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, classes: int, seed: int):
    return train_head(HeadSpec(), x[train], y[train], None, None, classes, HeadTraining(seed=seed)).predict(x[test])


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _gain(pred: np.ndarray, without: dict[str, np.ndarray], y: np.ndarray,
          on: np.ndarray) -> tuple[float, float, str, dict[str, float]]:
    """(gain, spread, against, scores): `pred`'s balanced accuracy on the examples `on` minus that of
    the better way without transfer measured on all of them, and the spread of the paired difference."""
    scores = {name: auto.balanced_accuracy(p[on], y[on]) for name, p in without.items() if (p[on] >= 0).all()}
    key = max(scores, key=lambda name: scores[name])
    gain, spread = auto.paired(pred[on], without[key][on], y[on])
    return gain, spread, key, scores


def _verdict(gain: float, spread: float, probe: dict[str, Any] | None) -> str:
    """Transfer when the recommended strategy, or the linear probe measured on more examples, beats
    training without transfer by more than its spread (and 0.02); no transfer when both lose by that much."""
    def ahead(g: float, s: float) -> int:
        return 1 if g > max(0.02, s) else -1 if g < -max(0.02, s) else 0

    votes = [ahead(gain, spread)] + ([ahead(probe["gain"], probe["spread"])] if probe else [])
    if max(votes) == 1 and min(votes) >= 0:
        return "transfer"
    if all(v == -1 for v in votes):
        return "train without transfer"
    return "no clear gain from transfer (within its spread)"


def advise(
    data: str | Path,
    models: list[Any] | None = None,
    *,
    curve: list[int] | None = None,
    seeds: int = 3,
    test_fraction: float = 0.3,
    scratch: bool = True,
    scratch_size: int = 64,
    scratch_steps: int = SCRATCH_STEPS,
    scratch_max_per_class: int = 50,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    device: str | None = None,
    num_workers: int | None = None,
    text: TextOptions | None = None,
    budget: float | None = None,
    unlabelled: str | Path | None = None,
    curve_contrastive: bool = False,
) -> dict[str, Any]:
    """The advisor's report as a dict (the JSON), and as a self-contained HTML file when `out` is given.
    DATA holds images or texts; for texts the simple baseline is TF-IDF + logistic regression and
    training from scratch is fit's word-vector network with random embeddings (`--embeddings random`).
    With `unlabelled` (fit's --unlabelled): how far U is from DATA, the head's confidence on it, auto's
    method and its check, and the learning curve with U (headstart.adapt). With `curve_contrastive`, where fit's
    auto tunes a transformer encoder on pairs (classify.contrastive), a curve of that too: a run at each point."""
    t0 = time.perf_counter()
    for name, value in (("seeds", seeds), ("test_fraction", test_fraction), ("scratch_size", scratch_size),
                        ("scratch_max_per_class", scratch_max_per_class)):
        check_value(name, value)
    check_budget(budget, True)
    if out is not None:
        check_writable(out, folder=False)
    from .classify.prepare import read_samples

    text = text or TextOptions()
    kind = data_modality(data)
    if curve_contrastive and kind != "text":
        raise HeadstartError(f"--curve-contrastive tunes a text encoder; '{data}' holds images: leave it out")
    samples = read_samples(data, kind, text)
    counts = np.bincount(samples.labels, minlength=len(samples.classes))
    small = [samples.classes[i] for i, c in enumerate(counts) if c < 2]
    if small:
        raise HeadstartError(f"advise holds out part of every class for testing; class{'es' if len(small) > 1 else ''} "
                             f"{', '.join(repr(s) for s in small)} {'have' if len(small) > 1 else 'has'} a single "
                             f"{'image' if kind == 'image' else 'text'}: add at least one more")
    u = (read_unlabelled(unlabelled, kind, samples, len(samples.classes), skip_bad_files=skip_bad_files,
                         text_column=text.text_column, label_column=text.label_column, log=log)
         if unlabelled is not None else None)  # checked before any work
    dev = pick_device(device)
    notes: list[str] = list(u.notes) if u is not None else []
    if kind == "image":
        n_cards, n_missing, extract_seconds = baselines.extraction_seconds(samples, models, cache_dir, no_cache, dev)
        if n_missing:
            log(f"advise: {plural(n_cards, 'candidate model')}, {n_missing} without cached features for DATA: "
                f"extracting them takes about {_duration(extract_seconds)} on {dev.type}; then a learning curve "
                "(its time is estimated once the best model is known)")

    # 3a. the ranking (it also fills the feature cache the learning curve reads)
    ranking = rank_models(data, models, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                          device=device, num_workers=num_workers, text=text)
    notes += ranking["notes"]
    by_name = {c.name: c for c in (m if isinstance(m, ModelCard) else get_card(m) for m in (models or []))}
    cards = [by_name.get(r["model"]) or get_card(r["model"]) for r in ranking["models"]]
    best = cards[0]

    from .classify.prepare import prepare

    words = best.architecture == "word-vectors"  # its transfer curve: a linear probe on the averaged vectors
    p = prepare(data, best, val_split=0.2, seed=0, cache_dir=cache_dir, no_cache=no_cache,
                skip_bad_files=skip_bad_files, device=device, num_workers=num_workers,
                text=dataclasses.replace(text, encoder="mean") if words else text)
    samples = p.samples
    x = np.asarray(p.features().array)
    y = samples.labels
    k = len(samples.classes)
    xu, adapted = None, None
    if u is not None:  # what fit --unlabelled would do with all of DATA, then the curve with U
        xu = np.asarray(p.embed(u.items).array)  # type: ignore[misc]
        adapted = adapt(HeadSpec(), x, y, xu, k, HeadTraining(), "auto", log=log)

    # 1, 2. the kind of input, the amount of source data
    per_class_all = int(counts.min())
    if kind == "image":
        inputs = appearance(samples)
        conditions = image_conditions(samples, cards, inputs, per_class_all)
    else:
        inputs = inspect_texts(samples, p.tokens)
        conditions = text_conditions(samples, cards, inputs, per_class_all, text)

    # the learning curve's points (3c), drawn first: contrastive's curve runs beside auto's measurements (3b)
    splits = [_split(y, s, test_fraction, MAX_TEST_PER_CLASS) for s in range(seeds)]
    pool_min = min(int(np.bincount(y[pool], minlength=k).min()) for pool, _ in splits)
    wanted = sorted(set(curve or DEFAULT_CURVE))
    points = [n for n in wanted if n <= pool_min]
    if not curve and pool_min not in points and pool_min < max(wanted):
        points.append(pool_min)  # the most DATA allows: the user's own size, less the test part
    if not points:
        points = [pool_min]
    dropped = [n for n in wanted if n > pool_min]
    if dropped:
        notes.append(f"curve points {', '.join(map(str, dropped))} per class need more {kind}s than DATA holds "
                     f"outside the test part ({pool_min} per class); the curve stops at {max(points)}")
    if int(counts.max() * test_fraction) > MAX_TEST_PER_CLASS:
        notes.append(f"the held-out part is subsampled to {MAX_TEST_PER_CLASS} {kind}s per class")
    chosen = {(s, n): _take(y, pool, n, s) for s, (pool, _) in enumerate(splits) for n in points}
    # 3b. the recommendation: what `fit --strategy auto` chooses, measured the way fit measures it (the
    # linear probe, then trials of the strategies that train the body, each example scored by a run
    # trained on the other folds). The gain at the user's size is measured on the same folds.
    folds, measured, contrastive_curve = auto.folds(y, auto.FOLDS, 0), None, {}
    if words:  # what fit does with word vectors follows from --embeddings (and the auto encoder)
        m = int(np.bincount(y[p.train_idx], minlength=k).min())
        embeddings = "frozen" if m < 100 else "frozen-then-finetune"
        strategy = TextOptions(embeddings=embeddings).resolved(m).strategy()
        reason = (f"{m} examples in the smallest class: " + (
            "keep the pretrained vectors fixed and train what is new" if embeddings == "frozen" else
            "enough to adapt the vectors once the new encoder has learned"))
        command_options = f"--embeddings {embeddings}"
        rec_pred = np.empty(len(y), dtype=np.int64)  # its transfer: a probe on the averaged vectors
        for tr, te in folds:
            rec_pred[te] = _linear_probe(x, y, tr, te, k, 0)
        probe_oof = rec_pred
    else:
        from .classify.fit import fit_classifier
        from .options import FitOptions

        log(f"advise: fit --strategy auto's measurements with {best.name} (the linear probe, then trials within "
            f"{check_budget(budget, True):.0f} s)")
        where = Path(tempfile.mkdtemp(prefix="headstart-advise-auto-"))
        try:
            am = fit_classifier(data, best, where / "run", FitOptions.of(
                dict(strategy="auto", budget=budget, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                     device=device, num_workers=num_workers), text=text), measure_only=True,
                curve={(s, n): (chosen[(s, n)], splits[s][1]) for s in range(seeds) for n in points if n >= 2}
                if curve_contrastive else None)
        finally:
            shutil.rmtree(where, ignore_errors=True)
        assert np.array_equal(am.labels, y) and am.folds is not None  # the same examples, each class twice at least
        strategy, reason, measured, folds = am.chosen, am.reason, am.record, am.folds
        rec_pred, probe_oof = am.predictions[strategy], am.predictions["linear-probe"]
        command_options = f"--strategy {strategy}"
        for (s, n), pred in am.curve.items():
            contrastive_curve.setdefault(n, []).append(float((pred == y[splits[s][1]]).mean()))
    if curve_contrastive and not contrastive_curve:
        notes.append(f"no contrastive curve (--curve-contrastive): fit --strategy auto does not take contrastive "
                     f"with {best.name} here" + ("" if max(points) >= 2 else "; the curve has no point of 2 per class"))
    decided = np.flatnonzero(rec_pred >= 0)  # a trial that stopped early decided on the folds that ran

    # 3c. the learning curve
    result = Curve(points, {}, {}, {}, "pixels" if kind == "image" else "tfidf", contrastive=contrastive_curve)
    scratch_points = [n for n in points if n <= scratch_max_per_class] if scratch else []
    scratch_runs = [(s, n) for s in range(seeds) for n in scratch_points]
    # the ways without transfer on the folds the recommended strategy was scored on
    full = int(np.bincount(y[folds[0][0]], minlength=k).min())  # per class in a fold's training part
    for j, (tr, te) in enumerate(folds):
        chosen[("fold", j)] = tr
    scratch_runs += [("fold", j) for j in range(len(folds))] if scratch and full <= scratch_max_per_class else []
    tests = {r: (splits[r[0]][1] if r[0] != "fold" else folds[r[1]][1]) for r in scratch_runs}
    scratch_steps_all = sum(math.prod(baselines.scratch_schedule(len(chosen[r]), scratch_steps)[1:]) for r in scratch_runs)
    # the confusion matrix is the probe on all of split 0's pool: a curve point's probe when that
    # point takes the whole pool (the usual case on small DATA), else one more fit
    pool0, test0 = splits[0]
    confusion_point = next((n for n in points if np.array_equal(np.sort(chosen[(0, n)]), np.sort(pool0))), None)
    probes = len(points) * seeds + (confusion_point is None)
    if kind == "image":
        grey = inputs["greyscale_share"] > 0.5
        px = baselines.pixels(samples, grey)
        scratch_pre = dataclasses.replace(best.preprocessing, crop=scratch_size, resize=scratch_size)
        workers, threads = baselines.parallelism(len(scratch_runs), dev)
        step_seconds = baselines.step_seconds(best, scratch_size, k, dev, threads, workers) if scratch_runs else 0.0
        images = (baselines.ScratchImages(samples.paths, np.concatenate([chosen[r] for r in scratch_runs]),
                                np.concatenate([tests[r] for r in scratch_runs]), scratch_pre)
                  if scratch_runs else None)

        def simple(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return baselines.pixel_baseline(px, y, train, test)

        def from_scratch(train: np.ndarray, test: np.ndarray, s: int, n: int) -> np.ndarray:
            assert images is not None
            return baselines.scratch(best, images, y, train, test, s, scratch_steps, k, dev)
    else:
        from .zoo.builtin import GLOVE_6B_50D

        from .text.network import word_vectors

        scratch_card = best if words else GLOVE_6B_50D  # the word network's vectors: their statistics, no values
        scratch_vectors = word_vectors(scratch_card) if scratch else None  # read once for every curve point
        workers, threads = 1, torch.get_num_threads()  # the engine for every run, one at a time
        step_seconds = (baselines.text_step_seconds(scratch_vectors, chosen[max(scratch_runs, key=lambda r: len(chosen[r]))],
                                           samples, k, dev) if scratch_runs else 0.0)

        def simple(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return baselines.tfidf_baseline(samples.texts, y, train, test)

        def from_scratch(train: np.ndarray, test: np.ndarray, s: int, n: int) -> np.ndarray:
            return baselines.text_scratch(samples, scratch_card, scratch_vectors, text, train, test, s, scratch_steps, dev,
                                 work / f"s{s}-n{n}")
    if scratch and len(scratch_points) < len(points):
        notes.append(f"training from scratch is measured up to {scratch_max_per_class} per class "
                     "(--scratch-max-per-class); larger points would take long on this device")
    if scratch and kind == "image":
        notes.append(f"from scratch: {best.name}'s architecture from random weights, every layer trained, at "
                     f"{scratch_size} px (--scratch-size) for about {scratch_steps} steps (at least 10 epochs)")
    elif scratch:
        encoder = (f"its encoder chosen as fit chooses it: mean pooling below {AUTO_RNN_PER_CLASS} per class"
                   if text.encoder == "auto" else f"the {text.encoder} encoder")
        notes.append(f"from scratch: fit's word-vector network with --embeddings random ({encoder}), every layer "
                     f"trained for about {scratch_steps} steps (at least 10 epochs)")
    if words:
        notes.append(f"transfer with {best.name}: a linear probe on the averaged word vectors; fit's BiLSTM over them "
                     "usually does better from 200 examples per class")
    estimate = (scratch_steps_all * step_seconds / workers + probes * PROBE_SECONDS
                + (len(points) * seeds + len(folds)) * SIMPLE_SECONDS)
    log(f"advise: learning curve of {len(points)} point{'s' if len(points) > 1 else ''} x {plural(seeds, 'seed')} "
        f"and the ways without transfer on auto's {len(folds)} folds: "
        f"{plural(probes, 'linear probe')}"
        + (f", {plural(len(scratch_runs), 'training')} from scratch ({scratch_steps_all:,} steps at "
           f"~{1000 * step_seconds:.0f} ms on {dev.type}" + (f", {workers} at once" if workers > 1 else "") + ")"
           if scratch_runs else "")
        + f"; about {_duration(estimate)}")
    t_curve = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="headstart-advise-"))
    probe_pred: dict[tuple[int, int], np.ndarray] = {}
    without = {name: np.full(len(y), -1, dtype=np.int64) for name in ("scratch", result.simple_key)}
    try:
        with progress("learning curve", len(points) * seeds + len(folds) + len(scratch_runs)) as advance:
            for s, (_pool, test) in enumerate(splits):
                for n in points:
                    train = chosen[(s, n)]
                    pred = probe_pred[(s, n)] = _linear_probe(x, y, train, test, k, s)
                    result.transfer.setdefault(n, []).append(float((pred == y[test]).mean()))
                    result.simple.setdefault(n, []).append(float((simple(train, test) == y[test]).mean()))
                    if adapted is not None and adapted.method != "none":
                        with_u = predict_with(adapted.method, HeadSpec(), x[train], y[train], xu, x[test], k,
                                              HeadTraining(seed=s))
                        result.unlabelled.setdefault(n, []).append(float((with_u == y[test]).mean()))
                    advance(1)
            for tr, te in folds:
                without[result.simple_key][te] = simple(tr, te)
                advance(1)
            # the longest runs first, so that the last ones to finish are short
            jobs = {r: (chosen[r], tests[r], r[0] if r[0] != "fold" else FOLD_SEED + r[1], r[1] if r[0] != "fold" else full)
                    for r in sorted(scratch_runs, key=lambda r: -math.prod(baselines.scratch_schedule(len(chosen[r]),
                                                                                             scratch_steps)[1:]))}
            predicted = baselines.run_all(jobs, lambda job: from_scratch(*job), workers, threads, advance)
            for r in scratch_runs:
                if r[0] == "fold":
                    without["scratch"][tests[r]] = predicted[r]
                else:
                    result.scratch.setdefault(r[1], []).append(float((predicted[r] == y[tests[r]]).mean()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    curve_seconds = time.perf_counter() - t_curve

    # the recommended model on all of the first split's pool: its confusion matrix
    pred = probe_pred[(0, confusion_point)] if confusion_point is not None else _linear_probe(x, y, pool0, test0, k, 0)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y[test0], pred), 1)

    # the gain over no transfer at the user's size: the recommended strategy's out-of-fold predictions
    # against the better way without transfer on the same examples (each scored by runs trained on the
    # other folds), and the spread of that paired difference (headstart.auto.paired). A trial that ran on
    # fewer folds than the probe is measured on fewer examples: the probe's own gain on every example
    # is the more precise evidence that transfer pays, and the verdict weighs both.
    summary = result.summary()
    top = summary[-1]
    gain, spread, key, scores = _gain(rec_pred, without, y, decided)
    probe_gain = None
    if len(decided) < len(y):
        every = np.arange(len(y))
        g, s_, k_, sc = _gain(probe_oof, without, y, every)
        probe_gain = {"gain": round(g, 4), "spread": round(s_, 4), "against": k_, "examples": len(y),
                      "balanced_accuracy": {"linear-probe": round(auto.balanced_accuracy(probe_oof, y), 4)}
                      | {name: round(v, 4) for name, v in sc.items()}}
    labels = {"scratch": "from scratch", "pixels": "logistic regression on pixels", "tfidf": "TF-IDF"}
    gain_note = (f"balanced accuracy of {'a linear probe on the averaged word vectors' if words else strategy} "
                 f"against {labels[key]}, the better way without transfer, on {len(decided)} {kind}s, each scored by "
                 f"runs trained on the other {len(folds) - 1} of {len(folds)} folds ({full} per class)"
                 + (f"; {strategy} itself is not measured" if words and strategy != "linear-probe" else ""))
    verdict = _verdict(gain, spread, probe_gain)
    report: dict[str, Any] = {
        "data": str(samples.source),
        "n": len(samples),
        "classes": list(samples.classes),
        "per_class": {c: int(v) for c, v in zip(samples.classes, counts)},
        "modality": kind,
        "inputs": inputs,
        "curve_labels": {"transfer": f"transfer (linear probe on {best.name}'s cached features)",
                         "scratch": ("same architecture from random weights" if kind == "image"
                                     else "word network from random embeddings"),
                         result.simple_key: ("logistic regression on pixels" if kind == "image"
                                             else "TF-IDF + logistic regression")}
        | ({"unlabelled": f"transfer learning from U too ({adapted.method})"} if result.unlabelled and adapted else {})
        | ({"contrastive": f"{best.name} tuned on pairs, then the head (contrastive)"} if contrastive_curve else {}),
        "conditions": conditions,
        "ranking": ranking["models"],
        "ranking_metric": ranking["metric"],
        "learning_curve": summary,
        "seeds": seeds,
        "test_fraction": test_fraction,
        "recommended_model": best.name,
        "recommended_strategy": strategy,
        "strategy_measurements": measured,
        "recommended_command": f"headstart fit {samples.source} --model {best.name} {command_options} --out RUN",
        "strategy_reason": reason,
        "verdict": verdict,
        "transfer_gain": gain,
        "gain_spread": spread,
        "gain_at_per_class": full,
        "gain_measured": {"strategy": strategy, "examples": int(len(decided)),
                          "folds": sum(bool(np.isin(te, decided).any()) for _tr, te in folds), "per_class": full,
                          "balanced_accuracy": {"transfer": round(auto.balanced_accuracy(rec_pred[decided],
                                                                                      y[decided]), 4)}
                          | {name: round(v, 4) for name, v in scores.items()}},
        "gain_note": gain_note,
        "probe_gain": probe_gain,
        "transfer_accuracy": top["transfer"]["mean"],
        "confusion": {"classes": list(samples.classes), "matrix": confusion.tolist(),
                      "accuracy": float(np.trace(confusion) / confusion.sum())},
        "notes": notes,
        "unlabelled": None if u is None or adapted is None else
        {"verdict": pays_off(adapted.record)} | adapted.record | {"unlabelled": u.record()},
        "seconds": None,
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        from .report import write_html

        report["html"] = str(write_html(report, Path(out)))
    log(f"advise: {verdict}; {best.name} with {strategy}"
        + f", {gain:+.3f} +- {spread:.3f} over no transfer ({gain_note})")
    if report["unlabelled"]:
        log(f"advise: {report['unlabelled']['verdict']}")
    log(f"advise: took {_duration(report['seconds'])} (the learning curve {_duration(curve_seconds)}, "
        f"estimated {_duration(estimate)})")
    return report

