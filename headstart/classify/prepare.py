"""What every classification command starts from: DATA read and checked (images or texts), its split,
the card's body built on first use, and the body's features from the cache (or extracted on first use).
Text DATA is tokenized once; a word-vector card's body is built for the training split's vocabulary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import FeatureCache, Features, feature_key
from ..console import log
from ..data.images import LABEL_COLUMN, PATH_COLUMN, ImageSamples, drop_bad_images, read_image_data
from ..data.modality import DEFAULT_MODEL, csv_columns, data_modality
from ..data.splits import stratified_split
from ..data.texts import read_text_data
from ..errors import HeadstartError
from ..runtime import pick_device
from ..text.options import TextOptions
from ..zoo import ModelCard, get_card, list_cards, locate
from ..zoo.card import TextPreprocessing

if TYPE_CHECKING:  # torch is imported where a network is built: a linear probe on cached features needs none
    import torch

    from ..text.inputs import Tokenized


def not_detection(data: str | Path, kind: str) -> None:
    if kind == "detection":
        raise HeadstartError(f"DATA '{data}' is a detection dataset (boxes in COCO JSON / Pascal VOC), and this command "
                             "takes labelled images or texts (class folders, CSV, JSONL); train a detector with "
                             "`headstart fit DATA --task detect`")


def features_of(
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
    from ..features import extract

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
    embed: Callable[[Any], Features] | None = None  # the same body's features of other inputs (unlabelled ones)

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
    check_card: Callable[[ModelCard, str], None] | None = None,
) -> Prepared:
    """DATA read and checked, its train / validation split, and the card's body and cached features, built
    when first asked for. `check_card(card, modality)`: a refusal that needs only the card, before any work."""
    if not 0.0 <= val_split < 1.0:
        raise HeadstartError(f"--val-split must be in [0, 1); got {val_split}")
    text = text or TextOptions()
    kind = data_modality(data)
    not_detection(data, kind)
    if model is None:
        model = DEFAULT_MODEL[kind]
    card = model if isinstance(model, ModelCard) else get_card(model, arch=arch, allow_download=allow_download)
    if card.modality != kind:
        others = ", ".join(c.name for c in list_cards() if c.modality == kind)
        if card.modality == "image" and Path(data).suffix.lower() in (".csv", ".tsv"):  # a CSV of images, misnamed
            found = ", ".join(f"'{c}'" for c in csv_columns(Path(data).expanduser()))
            raise HeadstartError(f"model '{card.name}' is an image model, and DATA '{data}' has no '{PATH_COLUMN}' "
                                 f"column (found columns {found}), so it holds texts: choose a text model ({others}), "
                                 f"or give a CSV of images the columns {PATH_COLUMN},{LABEL_COLUMN}")
        raise HeadstartError(f"model '{card.name}' is a{'n' if card.modality == 'image' else ''} {card.modality} "
                             f"model; DATA '{data}' holds {kind}s: choose a {kind} model ({others})")
    locate(card, allow_download=allow_download)  # a missing weight package is reported before any work
    if check_card is not None:
        check_card(card, kind)
    if kind == "text":
        return prepare_text(data, card, val_split, seed, cache_dir, no_cache, device, extract_batch_size, text)
    samples = read_image_data(data)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    built: list[torch.nn.Module] = []

    def body() -> torch.nn.Module:  # built once: for extraction on a cache miss, and for the run
        if not built:
            from ..surgery import split
            from ..zoo import load_network

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
                        features_of(card, card.fingerprint(), samples, cache, prepared.device, False, body,
                                  extract_batch_size, num_workers)[1])
        return memo[0]

    def embed(paths: list[Path]) -> Features:  # files checked by the caller (headstart.data.unlabelled)
        from ..features import extract

        return extract(body, card.fingerprint(), card.preprocessing, paths, card.num_features, cache, prepared.device,
                       batch_size=extract_batch_size, num_workers=num_workers, model_name=card.name)

    train_idx, val_idx = stratified_split(samples.labels, val_split, seed)
    prepared = Prepared(card, samples, train_idx, val_idx, device, body, features, card.num_features,
                        body_id=card.fingerprint(), cache=cache, embed=embed)
    return prepared


def read_samples(data: str | Path, kind: str | None = None, text: TextOptions | None = None, min_classes: int = 2):
    """DATA's labelled samples, images or texts (`kind`, else detected)."""
    kind = kind or data_modality(data)
    not_detection(data, kind)
    if kind == "text":
        text = text or TextOptions()
        return read_text_data(data, text_column=text.text_column, label_column=text.label_column,
                              skip_empty=text.skip_empty, log=log, min_classes=min_classes)
    return read_image_data(data, min_classes=min_classes)


def prepare_text(data: str | Path, card: ModelCard, val_split: float, seed: int, cache_dir: str | Path | None,
                  no_cache: bool, device: str | None, extract_batch_size: int | None, text: TextOptions) -> Prepared:
    """Text DATA: read and check it, tokenize it once. A word-vector card's body is built for a
    vocabulary of the training split's words plus the vectors' most frequent words (text.network)."""
    from ..features import extract
    from ..run import body_fingerprint
    from ..text.inputs import Tokenizer, card_model_dir
    from ..text.network import build_vocabulary, build_word_body, load_encoder_body, text_record, word_vectors

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
        from ..text.embedding import token_coverage

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

    def embed(texts: list[str]) -> Features:
        return extract(body, body_id, textpre, tokenizer(list(texts), max_length), num_features, cache, dev,
                       batch_size=extract_batch_size, model_name=card.name)

    return Prepared(card, samples, train_idx, val_idx, device, body, features, num_features, tokens, record, body_id,
                    cache=cache, _device=dev, embed=embed)
