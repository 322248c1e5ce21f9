"""The ways without transfer that `headstart advise` measures transfer against: logistic regression on
pixels, TF-IDF for texts, and the same architecture trained from random weights (on the engine, in memory,
one run per core), with the time a step takes here, for advise's estimate."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from .data.images import ImageSamples
from .errors import HeadstartError
from .heads import HeadSpec
from .text.network import TextOptions
from .zoo import get_card
from .zoo.card import ModelCard, Preprocessing

SCRATCH_LR, SCRATCH_WARMUP, WEIGHT_DECAY = 3e-3, 0.05, 1e-4
TRAINER_EPOCH_SECONDS = 0.05  # fit's loop's own cost per epoch (the text baseline trains through it)
PIXELS = 16  # side of the images the pixel baseline sees


def pixels(samples: ImageSamples, grey: bool) -> np.ndarray:
    """Every image as a small, flattened, standardized pixel vector (the no-transfer baseline's input)."""
    from .data.transforms import open_rgb

    rows = []
    for p in samples.paths:
        im = open_rgb(p).resize((PIXELS, PIXELS), Image.Resampling.BILINEAR)
        arr = np.asarray(im.convert("L") if grey else im, dtype=np.float32) / 255.0
        rows.append(arr.ravel())
    return np.stack(rows)


def pixel_baseline(px: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Logistic regression on standardized pixels, trained on `train`: its predictions for `test`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .probe import one_thread

    with one_thread():  # small products: a second BLAS thread only spins (see probe.one_thread)
        scaler = StandardScaler().fit(px[train])
        clf = LogisticRegression(max_iter=2000).fit(scaler.transform(px[train]), y[train])
        return clf.predict(scaler.transform(px[test]))


class ScratchImages:
    """The images the from-scratch baseline trains and tests on, decoded once for all its runs.

    Training images are kept as decoded (a large photo at no more than the resolution the
    smallest random crop needs): every epoch crops and resizes them anew, as fit's TrainLoader
    does with augment="crop". Test images are kept as their eval crops (`pre`)."""

    def __init__(self, paths: tuple[Path, ...], train: np.ndarray, test: np.ndarray, pre: Preprocessing) -> None:
        from .data.transforms import MIN_CROP_AREA, ImageLoader, TrainLoader, open_rgb

        self.pre = pre
        self.crops = TrainLoader(pre, "crop")
        need = math.ceil(pre.resize / MIN_CROP_AREA**0.5)  # the smallest crop still has `resize` px
        self.train: dict[int, Image.Image] = {}
        for i in map(int, np.unique(train)):
            im = open_rgb(paths[i], draft_to=need)
            short = min(im.size)
            if short > 2 * need:  # a large photo: kept at the size the crops need, not at full size
                im = im.resize((round(im.width * need / short), round(im.height * need / short)),
                               Image.Resampling.BILINEAR, reducing_gap=3.0)
            self.train[i] = im
        load = ImageLoader(pre)
        self.test = {int(i): load(paths[i]) for i in np.unique(test)}

    def crop(self, i: int, seed: int) -> torch.Tensor:
        """A random resized crop of image i (uint8 HWC), from `seed` (TrainLoader's crop, in memory)."""
        from .data.transforms import RESAMPLE

        im = self.train[i]
        rng = np.random.default_rng(seed)
        top, left, h, w = self.crops.crop_box(im.width, im.height, rng)
        c = self.pre.crop
        return torch.from_numpy(np.array(im.resize((c, c), RESAMPLE[self.pre.interpolation],
                                                    box=(left, top, left + w, top + h))))


def scratch_schedule(n_train: int, steps: int) -> tuple[int, int, int]:
    """(batch size, optimizer steps per epoch, epochs) of a from-scratch run on n_train images:
    about `steps` steps, at least 10 epochs and at most 100."""
    batch = min(16, n_train)
    per_epoch = max(1, n_train // batch)
    return batch, per_epoch, min(100, max(10, math.ceil(steps / per_epoch)))


STOP = threading.Event()  # set: the from-scratch runs in progress stop at their next step
BUILD = threading.Lock()  # the random initialisation reads the global generators: one network at a time


def scratch_model(card: ModelCard, k: int, seed: int, device: torch.device):
    from .surgery import TransferModel, split
    from .engine import seed_everything
    from .zoo.build import build_architecture

    with BUILD:
        seed_everything(seed)
        body, _ = split(build_architecture(card.architecture, card.source_classes or 1000), card.classifier)
        model = TransferModel(body, HeadSpec().build(card.num_features, k))
    return model.to(device, memory_format=torch.channels_last).train()


def scratch_config(epochs: int, batch: int, seed: int, warmup: float = SCRATCH_WARMUP):
    """fit's recipe for `--strategy finetune` from random weights: every layer at one learning rate (AdamW,
    warm-up then cosine decay, class-balanced loss), BatchNorm statistics following the batches, random
    resized crops, no validation."""
    from .engine import TrainConfig

    return TrainConfig(strategy="finetune", head=HeadSpec().to_dict(), epochs=epochs, lr=SCRATCH_LR,
                       body_lr_mult=1.0, layer_decay=1.0, weight_decay=WEIGHT_DECAY, batch_size=batch, warmup=warmup,
                       bn="train", augment="crop", val_split=0.0, seed=seed, patience=None)


def scratch_engine(task, cfg, device: torch.device):
    """A throwaway run on the engine: nothing written, nothing said per epoch."""
    from .engine import Engine, make_accelerator

    with BUILD:  # Accelerate's state is one per process: set up one run at a time
        acc = make_accelerator(cfg, Path(tempfile.gettempdir()), None, cpu=device.type == "cpu")
    return Engine(Path(tempfile.gettempdir()), task, cfg, acc, checkpoints=False, verbose=False)


def scratch_task(model, images: "ScratchImages", labels: np.ndarray, train: np.ndarray, k: int, batch: int,
                  seed: int):
    """The from-scratch baseline as the engine's task: images decoded once, in memory (ScratchImages),
    each epoch's order and crops following from (seed, epoch) as fit's loader makes them."""
    from torch import nn

    from .data.transforms import normalize
    from .engine import PhaseData, Task, epoch_seed
    from .probe import class_weights
    from .surgery import depth_groups

    class Scratch(Task):
        optimizer_options: ClassVar[dict[str, Any]] = {"fused": True}  # one kernel for all parameters (-7 ms of ~130 a step)

        def __init__(self) -> None:
            self.model, self.groups = model, depth_groups(model.body)
            self.y = torch.as_tensor(labels[train], dtype=torch.int64)
            weight = torch.as_tensor(class_weights(labels[train], k), dtype=torch.float32)
            self.loss_fn = nn.CrossEntropyLoss(weight=weight)

        def start_phase(self, index, phase, of, acc) -> PhaseData:
            self.device = acc.device
            self.loss_fn.to(acc.device)
            return PhaseData(None, steps_per_epoch=len(train) // batch)

        def batches(self, data: PhaseData, global_epoch: int):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch_seed(seed, global_epoch)))
            for b in range(data.steps_per_epoch):
                if STOP.is_set():
                    raise HeadstartError("stopped")
                pos = order[b * batch:(b + 1) * batch].tolist()
                yield torch.stack([images.crop(int(train[j]), item_seed(seed, global_epoch, j)) for j in pos]), \
                    self.y[pos]

        def loss(self, net, batch_):
            x, y = batch_
            return self.loss_fn(net(normalize(x, images.pre, self.device)), y.to(self.device)), len(y)

    return Scratch()


def scratch(card: ModelCard, images: ScratchImages, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
             seed: int, steps: int, k: int, device: torch.device) -> np.ndarray:
    """Predictions for `test` of the card's architecture trained from random weights on `train` only:
    fit's recipe for finetune from random weights (scratch_config) on the engine, at images.pre's size,
    for a fixed budget of about `steps` optimizer steps. It runs in memory in this process: the images
    were decoded once (ScratchImages), there are no loader processes, checkpoints or validation."""
    from .data.transforms import normalize

    batch, _, epochs = scratch_schedule(len(train), steps)
    engine = scratch_engine(scratch_task(scratch_model(card, k, seed, device), images, labels, train, k, batch, seed),
                     scratch_config(epochs, batch, seed), device)
    engine.run()
    model = engine.acc.unwrap_model(engine.model).eval()
    pred = []
    with torch.no_grad(), engine.acc.autocast():
        for b in range(0, len(test), 64):
            x = torch.stack([images.test[int(i)] for i in test[b:b + 64]])
            pred.append(model(normalize(x, images.pre, device)).float().argmax(1).cpu())
    return torch.cat(pred).numpy()


def parallelism(runs: int, device: torch.device) -> tuple[int, int]:
    """(from-scratch runs at once, threads each). On a CPU, one run per core on one thread: these
    small networks gain little from a second thread per operation, and threads that spin-wait on
    each other lose badly when the cores are shared; on a GPU, one run at a time."""
    from .runtime import cpu_count

    if device.type != "cpu" or runs <= 1:
        return 1, torch.get_num_threads()
    workers = min(runs, cpu_count())
    return workers, max(1, cpu_count() // workers)


def run_all(jobs: dict[Any, Any], fn, workers: int, threads: int, advance) -> dict[Any, float]:
    """fn(job) for every job, `workers` at a time (in threads: the work is in torch, which lets go
    of the GIL), each on `threads` intra-op threads, in the order given. When one fails or the
    user interrupts, the others stop at their next step (STOP)."""
    if workers <= 1:
        out = {}
        for key, job in jobs.items():
            out[key] = fn(job)
            advance(1)
        return out
    from concurrent.futures import ThreadPoolExecutor, as_completed

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    pool = ThreadPoolExecutor(workers)
    try:
        futures = {pool.submit(fn, job): key for key, job in jobs.items()}
        out = {}
        for f in as_completed(futures):
            out[futures[f]] = f.result()
            advance(1)
        return out
    except BaseException:
        STOP.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        STOP.clear()
        torch.set_num_threads(before)


def step_seconds(card: ModelCard, size: int, k: int, device: torch.device, threads: int, workers: int = 1,
                  batch: int = 16) -> float:
    """Seconds one from-scratch optimizer step takes on this device on `threads` threads while
    `workers` runs step at once, as the curve runs them (throwaway networks, 2 timed steps each):
    cores that share caches or a physical core slow each other down, and timed alone, a step on 2
    cores had promised half the time advise then took."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models = [scratch_model(card, k, 0, device) for _ in range(workers)]
        if workers == 1:
            return time_steps(models[0], size, k, device, batch)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            return float(np.mean(list(pool.map(lambda m: time_steps(m, size, k, device, batch), models))))
    finally:
        torch.set_num_threads(before)


def time_steps(model, size: int, k: int, device: torch.device, batch: int) -> float:
    """Seconds per optimizer step of `model` on the engine, with the from-scratch recipe, on random images."""
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    return seconds_per_step(model, lambda m: torch.nn.functional.cross_entropy(m(x), torch.arange(batch,
                             device=device) % k), device, fused=True)


def seconds_per_step(model, loss_of, device: torch.device, fused: bool = False) -> float:
    """Mean seconds of the 2nd and 3rd of three optimizer steps of `model` trained whole on the engine
    (the first allocates); `loss_of(model)` is a batch's loss."""
    from .engine import Callback, PhaseData, Task

    class Timed(Task):
        optimizer_options = {"fused": True} if fused else {}

        def __init__(self) -> None:
            self.model, self.groups = model.to(device), []

        def start_phase(self, index, phase, of, acc) -> PhaseData:
            return PhaseData(None, steps_per_epoch=3)

        def batches(self, data: PhaseData, global_epoch: int):
            return range(3)

        def loss(self, net, batch_):
            return loss_of(net), 1

    class Clock(Callback):
        def __init__(self) -> None:
            self.times = [time.perf_counter()]

        def on_step_end(self, engine, loss) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    engine = scratch_engine(Timed(), scratch_config(1, 1, 0, warmup=0.0), device)
    clock = Clock()
    engine.callbacks.append(clock)
    phase = engine.phases[0]
    data, wrapped, optimizer, scheduler = engine.start_phase(0, phase)
    clock.times = [time.perf_counter()]
    engine.train_epoch(wrapped, optimizer, scheduler, engine.task.batches(data, 0), phase, 0, 3)
    return float(np.mean(np.diff(clock.times)[1:]))


def text_step_seconds(wv, train: np.ndarray, samples, k: int, device: torch.device) -> float:
    """Seconds a step of the word network from random embeddings takes here, approximately: its
    cost is mostly the embedding table's (a dense gradient and AdamW over every row), timed on a
    table of the vocabulary's size (`train`'s words and the vectors' most frequent) under a mean
    encoder, plus fit's loop's cost per epoch (one step per epoch on small DATA)."""
    from .text.network import build_vocabulary

    rows = len(build_vocabulary([samples.texts[i] for i in train], wv))
    model = torch.nn.ModuleDict({"e": torch.nn.Embedding(rows, wv.dim), "fc": torch.nn.Linear(wv.dim, k)})
    ids = torch.randint(0, rows, (min(32, len(train)), 64), device=device)
    y = torch.arange(len(ids), device=device) % k
    return seconds_per_step(model, lambda m: torch.nn.functional.cross_entropy(m["fc"](m["e"](ids).mean(1)), y),
                             device) + TRAINER_EPOCH_SECONDS


def extraction_seconds(samples: ImageSamples, models: list[Any] | None, cache_dir: str | Path | None,
                        no_cache: bool, device: torch.device) -> tuple[int, int, float]:
    """(candidate image models, those without cached features for DATA, seconds to extract theirs):
    each missing one's forward pass is timed on a few random images at its input size."""
    from .features import FeatureCache, feature_key
    from .surgery import split
    from .zoo import is_installed, list_cards
    from .zoo.build import build_architecture

    try:
        cards = ([m if isinstance(m, ModelCard) else get_card(m) for m in models] if models else
                 [c for c in list_cards() if c.modality == "image" and is_installed(c)])
    except HeadstartError:
        return 0, 0, 0.0  # the ranking says what is wrong
    cards = [c for c in cards if c.modality == "image"]
    cache = FeatureCache.from_options(cache_dir, no_cache)
    missing = [c for c in cards if not (cache.enabled and (cache.entry(
        feature_key(c.fingerprint(), c.preprocessing, samples.paths)) / "meta.json").is_file())]
    seconds = 0.0
    for card in missing:
        body = split(build_architecture(card.architecture, card.source_classes or 1000), card.classifier)[0]
        body = body.eval().to(device, memory_format=torch.channels_last)
        x = torch.randn(8, 3, card.preprocessing.crop, card.preprocessing.crop, device=device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            body(x)
            t = time.perf_counter()
            body(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
        seconds += 1.0 + (time.perf_counter() - t) / 8 * len(samples) * 1.3  # + loading, decoding
    return len(cards), len(missing), seconds


def item_seed(seed: int, epoch: int, i: int) -> int:
    """The crop seed of the i-th training image in an epoch (as fit's LabelledImages derives it)."""
    return int(np.random.SeedSequence([seed, epoch, i]).generate_state(1)[0])


def tfidf_baseline(texts, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """TF-IDF of words and word pairs + logistic regression, trained on `train`: its predictions for `test`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform([texts[i] for i in train])
    clf = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced").fit(x, y[train])
    return clf.predict(vec.transform([texts[i] for i in test]))


def text_scratch(samples, card: ModelCard, wv, text: TextOptions, train: np.ndarray, test: np.ndarray, seed: int,
                  steps: int, device: torch.device, work: Path) -> np.ndarray:
    """fit's word-vector network for `--embeddings random` (encoder, width and vocabulary as fit
    builds them for this many examples, every row drawn with the statistics of `wv`, `card`'s vectors),
    trained as fit trains it, on `train` only, for about `steps` optimizer steps."""
    from .features import run_text_body
    from .strategies import BODY_PHASE_LR
    from .surgery import TransferModel
    from .text.inputs import Tokenizer
    from .text.network import WORD_PRECISION, build_vocabulary, build_word_body
    from .engine import Engine, TrainConfig, make_accelerator, seed_everything
    from .classify.task import ClassificationTask

    k = len(samples.classes)
    per_class = int(np.bincount(samples.labels[train], minlength=k).min())
    opts = dataclasses.replace(text, embeddings="random").resolved(per_class)
    vocab = build_vocabulary([samples.texts[i] for i in train], wv, opts.min_count)
    seed_everything(seed)
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
    task = ClassificationTask(card, sub, np.arange(len(sub)), np.array([], dtype=np.int64), lambda: None,  # type: ignore[arg-type]
                              cfg, model, tokens=tokens.subset(train))
    engine = Engine(work, task, cfg, acc, checkpoints=False, verbose=False)
    engine.run()
    net = acc.unwrap_model(engine.model).eval()
    feats = np.empty((len(test), body.num_features), dtype=np.float32)
    run_text_body(net.body, tokens.subset(test), feats, device)
    with torch.no_grad():
        pred = net.head.cpu()(torch.from_numpy(feats)).argmax(1).numpy()
    return pred
