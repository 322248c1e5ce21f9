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

Then it recommends a model, a strategy (the rule `fit --strategy auto` applies, so the two
agree) and states the expected gain over training from scratch at the user's data size.
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
from PIL import Image

from .console import log, progress
from .data.detect import data_modality
from .data.images import ImageSamples, appearance, look_notes, unlike_source
from .errors import HeadstartError
from .heads import HeadSpec
from .probe import HeadTraining, train_head
from .rank import rank_models
from .runtime import pick_device
from .strategies import Strategy, choose
from .text.network import AUTO_RNN_PER_CLASS, TextOptions
from .zoo import get_card
from .zoo.card import ModelCard, WeightSource

DEFAULT_CURVE = (1, 2, 5, 10, 20, 50, 100)
MAX_TEST_PER_CLASS = 100  # larger DATA: the held-out part is subsampled (and the report says so)
SCRATCH_STEPS = 200  # optimizer steps a from-scratch network gets at each curve point (at least 10 epochs)
PIXELS = 16  # side of the images the pixel baseline sees


@dataclasses.dataclass
class Curve:
    points: list[int]
    transfer: dict[int, list[float]]
    scratch: dict[int, list[float]]
    simple: dict[int, list[float]]  # the simple baseline: logistic regression on pixels (images) or TF-IDF (text)
    simple_key: str = "pixels"

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for n in self.points:
            row: dict[str, Any] = {"per_class": n}
            for name, runs in (("transfer", self.transfer), ("scratch", self.scratch), (self.simple_key, self.simple)):
                vals = runs.get(n, [])
                row[name] = {"mean": float(np.mean(vals)) if vals else None,
                             "std": float(np.std(vals)) if vals else None, "runs": [float(v) for v in vals]}
            out.append(row)
        return out


def _conditions(samples: ImageSamples, cards: list[ModelCard], images: dict[str, Any],
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


def _pixels(samples: ImageSamples, grey: bool) -> np.ndarray:
    """Every image as a small, flattened, standardized pixel vector (the no-transfer baseline's input)."""
    from .data.transforms import open_rgb

    rows = []
    for p in samples.paths:
        im = open_rgb(p).resize((PIXELS, PIXELS), Image.Resampling.BILINEAR)
        arr = np.asarray(im.convert("L") if grey else im, dtype=np.float32) / 255.0
        rows.append(arr.ravel())
    return np.stack(rows)


def _pixel_baseline(px: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(px[train])
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(px[train]), y[train])
    return float((clf.predict(scaler.transform(px[test])) == y[test]).mean())


def _scratch(card: ModelCard, samples: ImageSamples, train: np.ndarray, test: np.ndarray, seed: int,
             size: int, steps: int, device: torch.device, work: Path) -> float:
    """Held-out accuracy of the card's architecture trained from random weights on `train` only.

    Same loop as fine-tuning (every group trains, BatchNorm statistics follow the batches), at
    `size` px so that it runs in minutes on a CPU; a fixed budget of optimizer steps."""
    from .features import run_body
    from .surgery import TransferModel, split
    from .train import Trainer, TrainConfig, _seed_everything, make_accelerator
    from .zoo.build import build_architecture

    scratch_card = dataclasses.replace(
        card, name=f"{card.name} (random init)", weights=WeightSource(kind="none"),
        preprocessing=dataclasses.replace(card.preprocessing, crop=size, resize=size))
    batch = min(16, len(train))
    steps_per_epoch = max(1, len(train) // batch)
    epochs = min(100, max(10, math.ceil(steps / steps_per_epoch)))
    cfg = TrainConfig(strategy="finetune", head={"kind": "linear", "hidden": 512, "dropout": 0.0}, epochs=epochs,
                      head_epochs=1, lr=3e-3, body_lr_mult=1.0, batch_size=batch, warmup=0.05, bn="train",
                      augment="crop", seed=seed, val_split=0.0, class_balance=True)
    _seed_everything(seed)
    body, _ = split(build_architecture(card.architecture, card.source_classes or 1000), card.classifier)
    model = TransferModel(body, HeadSpec().build(card.num_features, len(samples.classes)))
    acc = make_accelerator(cfg, work, None, cpu=device.type == "cpu")
    sub = samples.subset(train)
    trainer = Trainer(work, scratch_card, sub, np.arange(len(sub)), np.array([], dtype=np.int64),
                      lambda: None, cfg, acc, model, checkpoints=False, verbose=False)  # type: ignore[arg-type]
    trainer.run()
    net = acc.unwrap_model(trainer.model).eval()
    feats = np.empty((len(test), card.num_features), dtype=np.float32)
    run_body(net.body, scratch_card.preprocessing, [samples.paths[i] for i in test], feats, device)
    with torch.no_grad():
        pred = net.head.cpu()(torch.from_numpy(feats)).argmax(1).numpy()
    return float((pred == samples.labels[test]).mean())


def _inspect_texts(samples, tokens) -> dict[str, Any]:
    """Length of DATA's texts in words and in the best card's tokens."""
    words = np.array([len(t.split()) for t in samples.texts])
    lengths = np.array([len(r) for r in tokens.ids]) if tokens is not None else words
    return {"median_words": int(np.median(words)), "max_words": int(words.max()),
            "median_tokens": int(np.median(lengths)), "truncated": int(tokens.truncated if tokens is not None else 0),
            "max_length": int(tokens.max_length if tokens is not None else 0)}


def _conditions_text(samples, cards: list[ModelCard], texts: dict[str, Any], per_class: int,
                     text: TextOptions) -> list[dict[str, Any]]:
    from .text.vectors import token_coverage

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


def _tfidf_baseline(texts, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform([texts[i] for i in train])
    clf = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced").fit(x, y[train])
    return float((clf.predict(vec.transform([texts[i] for i in test])) == y[test]).mean())


def _text_scratch(samples, card: ModelCard, wv, text: TextOptions, train: np.ndarray, test: np.ndarray, seed: int,
                  steps: int, device: torch.device, work: Path) -> float:
    """fit's word-vector network for `--embeddings random` (encoder, width and vocabulary as fit
    builds them for this many examples, every row drawn with the statistics of `wv`, `card`'s vectors),
    trained as fit trains it, on `train` only, for about `steps` optimizer steps."""
    from .features import run_text_body
    from .strategies import BODY_PHASE_LR
    from .surgery import TransferModel
    from .text.inputs import Tokenizer
    from .text.network import WORD_PRECISION, build_vocabulary, build_word_body
    from .train import Trainer, TrainConfig, _seed_everything, make_accelerator

    k = len(samples.classes)
    per_class = int(np.bincount(samples.labels[train], minlength=k).min())
    opts = dataclasses.replace(text, embeddings="random").resolved(per_class)
    vocab = build_vocabulary([samples.texts[i] for i in train], wv, opts.min_count)
    _seed_everything(seed)
    body, _ = build_word_body(card, vocab, opts.encoder, opts.hidden, seed, wv=wv, pretrained=False)
    tokens = Tokenizer(card.preprocessing, vocabulary=vocab)(list(samples.texts), opts.max_length)
    batch = min(32, len(train))
    epochs = min(100, max(10, math.ceil(steps / max(1, len(train) // batch))))
    spec = HeadSpec()
    cfg = TrainConfig(strategy=opts.strategy(), head=spec.to_dict(), epochs=epochs, head_epochs=1, lr=BODY_PHASE_LR,
                      body_lr_mult=1.0, layer_decay=1.0, batch_size=batch, bn="train", augment="none",
                      precision=WORD_PRECISION, seed=seed, val_split=0.0, class_balance=True)
    model = TransferModel(body, spec.build(body.num_features, k))
    acc = make_accelerator(cfg, work, None, cpu=device.type == "cpu")
    sub = samples.subset(train)
    trainer = Trainer(work, card, sub, np.arange(len(sub)), np.array([], dtype=np.int64), lambda: None,
                      cfg, acc, model, checkpoints=False, verbose=False,  # type: ignore[arg-type]
                      tokens=tokens.subset(train))
    trainer.run()
    net = acc.unwrap_model(trainer.model).eval()
    feats = np.empty((len(test), body.num_features), dtype=np.float32)
    run_text_body(net.body, tokens.subset(test), feats, device)
    with torch.no_grad():
        pred = net.head.cpu()(torch.from_numpy(feats)).argmax(1).numpy()
    return float((pred == samples.labels[test]).mean())


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
) -> dict[str, Any]:
    """The advisor's report as a dict (the JSON), and as a self-contained HTML file when `out` is given.
    DATA holds images or texts; for texts the simple baseline is TF-IDF + logistic regression and
    training from scratch is fit's word-vector network with random embeddings (`--embeddings random`)."""
    t0 = time.perf_counter()
    if seeds < 1:
        raise HeadstartError(f"--seeds must be >= 1; got {seeds}")
    if not 0 < test_fraction < 1:
        raise HeadstartError(f"--test-fraction must be in (0, 1); got {test_fraction}")
    from .api import read_samples

    text = text or TextOptions()
    kind = data_modality(data)
    samples = read_samples(data, kind, text)
    counts = np.bincount(samples.labels, minlength=len(samples.classes))
    small = [samples.classes[i] for i, c in enumerate(counts) if c < 2]
    if small:
        raise HeadstartError(f"advise holds out part of every class for testing; class{'es' if len(small) > 1 else ''} "
                             f"{', '.join(repr(s) for s in small)} {'have' if len(small) > 1 else 'has'} a single "
                             f"{'image' if kind == 'image' else 'text'}: add at least one more")
    dev = pick_device(device)
    notes: list[str] = []

    # 3a. the ranking (it also fills the feature cache the learning curve reads)
    ranking = rank_models(data, models, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                          device=device, num_workers=num_workers, text=text)
    notes += ranking["notes"]
    by_name = {c.name: c for c in (m if isinstance(m, ModelCard) else get_card(m) for m in (models or []))}
    cards = [by_name.get(r["model"]) or get_card(r["model"]) for r in ranking["models"]]
    best = cards[0]

    from .api import prepare

    words = best.architecture == "word-vectors"  # its transfer curve: a linear probe on the averaged vectors
    p = prepare(data, best, val_split=0.2, seed=0, cache_dir=cache_dir, no_cache=no_cache,
                skip_bad_files=skip_bad_files, device=device, num_workers=num_workers,
                text=dataclasses.replace(text, encoder="mean") if words else text)
    samples = p.samples
    x = np.asarray(p.features().array)
    y = samples.labels
    k = len(samples.classes)

    # 1, 2. the kind of input, the amount of source data
    per_class_all = int(counts.min())
    if kind == "image":
        inputs = appearance(samples)
        conditions = _conditions(samples, cards, inputs, per_class_all)
    else:
        inputs = _inspect_texts(samples, p.tokens)
        conditions = _conditions_text(samples, cards, inputs, per_class_all, text)

    # 3b. the learning curve
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
    if kind == "image":
        grey = inputs["greyscale_share"] > 0.5
        used = np.unique(np.concatenate([*chosen.values(), *(test for _, test in splits)]))
        px = np.zeros((len(samples), PIXELS * PIXELS * (1 if grey else 3)), dtype=np.float32)
        px[used] = _pixels(samples.subset(used), grey)  # only the images the curve uses are read

        def simple(train: np.ndarray, test: np.ndarray) -> float:
            return _pixel_baseline(px, y, train, test)

        def from_scratch(train: np.ndarray, test: np.ndarray, s: int, n: int) -> float:
            return _scratch(best, samples, train, test, s, scratch_size, scratch_steps, dev, work / f"s{s}-n{n}")
    else:
        from .zoo.builtin import GLOVE_6B_50D

        from .text.network import word_vectors

        scratch_card = best if words else GLOVE_6B_50D  # the word network's vectors: their statistics, no values
        scratch_vectors = word_vectors(scratch_card) if scratch else None  # read once for every curve point

        def simple(train: np.ndarray, test: np.ndarray) -> float:
            return _tfidf_baseline(samples.texts, y, train, test)

        def from_scratch(train: np.ndarray, test: np.ndarray, s: int, n: int) -> float:
            return _text_scratch(samples, scratch_card, scratch_vectors, text, train, test, s, scratch_steps, dev,
                                 work / f"s{s}-n{n}")
    result = Curve(points, {}, {}, {}, "pixels" if kind == "image" else "tfidf")
    scratch_points = [n for n in points if n <= scratch_max_per_class] if scratch else []
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
    runs = len(points) * seeds
    work = Path(tempfile.mkdtemp(prefix="headstart-advise-"))
    try:
        with progress("learning curve", runs) as advance:
            for s, (_pool, test) in enumerate(splits):
                for n in points:
                    train = chosen[(s, n)]
                    pred = _linear_probe(x, y, train, test, k, s)
                    result.transfer.setdefault(n, []).append(float((pred == y[test]).mean()))
                    result.simple.setdefault(n, []).append(simple(train, test))
                    if n in scratch_points:
                        result.scratch.setdefault(n, []).append(from_scratch(train, test, s, n))
                    advance(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # the recommended model on all of the first split's pool: its confusion matrix
    pool, test = splits[0]
    pred = _linear_probe(x, y, pool, test, k, 0)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y[test], pred), 1)

    # the recommendation: the auto rule of `fit`, for the data as fit would split it
    n_params = sum(t.numel() for t in p.body().parameters())
    train_counts = np.bincount(y[p.train_idx], minlength=k)
    if words:  # what fit does with word vectors follows from --embeddings (and the auto encoder)
        m = int(train_counts.min())
        embeddings = "frozen" if m < 100 else "frozen-then-finetune"
        strategy = Strategy.parse(TextOptions(embeddings=embeddings).resolved(m).strategy())
        reason = (f"{m} examples in the smallest class: " + (
            "keep the pretrained vectors fixed and train what is new" if embeddings == "frozen" else
            "enough to adapt the vectors once the new encoder has learned"))
        command_options = f"--embeddings {embeddings}"
    else:
        strategy, reason = choose(int(train_counts.min()), n_params, dev, len(p.train_idx),
                                  unlike_source(inputs, best.input_size, bool(best.extra.get("greyscale"))) if kind == "image" else [],
                                  cost=0.01 if kind == "image" else 0.001)
        command_options = f"--strategy {strategy.name}"
    summary = result.summary()
    top = summary[-1]
    baselines = [v for v in (top["scratch"]["mean"], top[result.simple_key]["mean"]) if v is not None]
    gain = top["transfer"]["mean"] - max(baselines) if baselines else None
    verdict = ("transfer" if gain is not None and gain > 0.02 else
               "no clear gain from transfer" if gain is not None and gain > -0.02 else "train without transfer")
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
                                             else "TF-IDF + logistic regression")},
        "conditions": conditions,
        "ranking": ranking["models"],
        "ranking_metric": ranking["metric"],
        "learning_curve": summary,
        "seeds": seeds,
        "test_fraction": test_fraction,
        "recommended_model": best.name,
        "recommended_strategy": strategy.name,
        "recommended_command": f"headstart fit {samples.source} --model {best.name} {command_options} --out RUN",
        "strategy_reason": reason,
        "verdict": verdict,
        "transfer_gain": gain,
        "gain_at_per_class": top["per_class"],
        "transfer_accuracy": top["transfer"]["mean"],
        "confusion": {"classes": list(samples.classes), "matrix": confusion.tolist(),
                      "accuracy": float(np.trace(confusion) / confusion.sum())},
        "notes": notes,
        "seconds": None,
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        from .report import write_html

        report["html"] = str(write_html(report, Path(out)))
    log(f"advise: {verdict}; {best.name} with {strategy.name}"
        + (f", {gain:+.3f} accuracy over no transfer at {top['per_class']} per class" if gain is not None else ""))
    return report

