"""Text cards and their networks.

  transformers cards   a Hugging Face encoder folder (config.json + model.safetensors +
                       tokenizer files; sentence-transformers' pooling files when present):
                       the built-in minilm_l6, or `hf:FOLDER_OR_REPO`, always read locally
  word-vector cards    GloVe / word2vec vectors: the built-in glove_6b_50d, or `file:PATH` of a
                       GloVe text, word2vec text or word2vec binary file

A transformers card's body is fixed by the card. A word-vector card's body is built for the
target vocabulary (words of the training texts): rows of words that have a vector are
copied from the file; the others start from the vectors of their parts (compounds) or at
random with the vectors' statistics, and train even when the pretrained rows are frozen.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import HeadstartError
from ..zoo.card import ModelCard, TextPreprocessing, WeightSource
from ..zoo.weights import locate, verify_sha256
from .bodies import EncoderBody, WordVectorBody
from .options import AUTO_RNN_PER_CLASS, EMBEDDINGS, MIN_COUNT, WORD_PRECISION, TextOptions  # noqa: F401
from .inputs import card_model_dir, sentence_transformers_config

VECTOR_SUFFIXES = (".txt", ".vec", ".gz", ".bin")
COMMON_WORDS = 50_000  # most frequent pretrained words added to every vocabulary


def load_encoder_body(card: ModelCard) -> EncoderBody:
    """A transformers card's pretrained encoder with its pooling, in eval mode (safetensors only)."""
    import transformers
    from transformers import AutoConfig, AutoModel

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # headstart says what it loads
    path = locate(card)
    assert path is not None
    verify_sha256(card, path)
    model_dir = path.parent
    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
        kw = {"add_pooling_layer": False} if config.model_type in ("bert", "roberta", "xlm-roberta") else {}
        encoder = AutoModel.from_pretrained(str(model_dir), config=config, local_files_only=True, use_safetensors=True,
                                            dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise HeadstartError(f"model '{card.name}': the encoder in {model_dir} does not load ({first})") from None
    from .inputs import load_hf_tokenizer

    tok = load_hf_tokenizer(model_dir)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    pre = card.preprocessing
    assert isinstance(pre, TextPreprocessing)
    return EncoderBody(encoder, pad, pre.pooling, pre.normalize).eval()


def transformers_card(spec: str, model_dir: Path, location: str, config: dict) -> ModelCard:
    """A card for a local Hugging Face encoder folder (or a repo's snapshot in the local cache)."""
    if not (model_dir / "model.safetensors").is_file():
        found = sorted(p.name for p in model_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".safetensors"))
        raise HeadstartError(
            f"'{spec}': {model_dir} has no model.safetensors{' (found ' + ', '.join(found) + ')' if found else ''}; "
            "headstart reads weights only from safetensors (a .bin pickle can run code): convert it with "
            "transformers' save_pretrained(safe_serialization=True)")
    st = sentence_transformers_config(model_dir)
    limit = st["max_length"] or min(int(config.get("max_position_embeddings") or 512), 512)
    hidden = int(config.get("hidden_size") or config.get("d_model") or config.get("dim") or 0)
    if not hidden:
        raise HeadstartError(f"'{spec}': {model_dir / 'config.json'} says no hidden_size; is it an encoder model?")
    return ModelCard(
        name=spec, modality="text", architecture="transformers",
        weights=WeightSource(kind="hf-cache", location=location, key_map="name", source_head=False),
        preprocessing=TextPreprocessing(tokenizer="hf", max_length=limit, pooling=st["pooling"],
                                        normalize=st["normalize"]),
        num_features=hidden, classifier="", source_classes=0,
        license=str(config.get("license") or "see the model's page"),
        description=f"{config.get('model_type', 'transformer')} encoder from {model_dir}",
    )


def is_vectors_file(path: Path) -> bool:
    """A GloVe / word2vec file: by its name, or (.bin) by its word2vec header line."""
    if path.suffix.lower() in (".txt", ".vec", ".gz"):
        return True
    if path.suffix.lower() == ".bin":
        with open(path, "rb") as f:
            head = f.readline(64).split()
        return len(head) == 2 and all(h.isdigit() for h in head)
    return False


def vectors_file_card(spec: str, path: Path) -> ModelCard:
    from ..fileio import sha256_file
    from .vectors import read_vectors_file

    wv = read_vectors_file(path)
    return ModelCard(
        name=spec, modality="text", architecture="word-vectors",
        weights=WeightSource(kind="file", location=str(path.resolve()), sha256=sha256_file(path), source_head=False),
        preprocessing=TextPreprocessing(tokenizer="words", max_length=256),
        num_features=wv.dim, classifier="",
        description=f"word vectors from {path.name}: {len(wv.words):,} words, {wv.dim}-d",
        extra={"source_unit": "tokens"},
    )


def word_vectors(card: ModelCard):
    """The card's pretrained word vectors."""
    from .glove import builtin_glove_6b_50d
    from .vectors import read_vectors_file

    path = locate(card)
    assert path is not None
    verify_sha256(card, path)
    if card.weights.kind == "package":
        return builtin_glove_6b_50d()
    return read_vectors_file(path)


def build_vocabulary(texts, wv, min_count: int = MIN_COUNT, common: int = COMMON_WORDS):
    """The target vocabulary: every training word that has a vector, words without one that
    occur at least `min_count` times (they start random and train), then the `common` first
    words of the vector file (GloVe and word2vec files list the most frequent first), so that
    words a small training set never saw still have their vector at test time."""
    from collections import Counter

    from .words import Vocabulary, tokenize

    counts = Counter(w for t in texts for w in tokenize(t))
    index = wv.index()
    keep = [w for w, c in counts.items() if c >= min_count or w in index or (wv.lowercase and w.lower() in index)]
    keep.sort(key=lambda w: (-counts[w], w))
    seen = set(keep)
    keep += [w for w in wv.words[:common] if w not in seen and w not in ("<pad>", "<unk>")]
    return Vocabulary(["<pad>", "<unk>"] + keep)


def build_word_body(card: ModelCard, vocabulary, encoder: str, hidden: int, seed: int,
                    wv=None, pretrained: bool = True) -> tuple[WordVectorBody, dict]:
    """The network for the target vocabulary, embeddings initialised from the card's vectors
    (pretrained=False: every row random with the vectors' statistics, the no-transfer baseline).
    An order-aware encoder reads the vectors through a projection twice its width (as wide as the
    vectors if they are wider; bodies.py). GloVe 50-d kept frozen, BiLSTM, all Rotten Tomatoes
    rows (benchmarks/bench_text.py, 5 seeds): 0.736 without it, 0.751 with it (fine-tuned: 0.745,
    0.754)."""
    import numpy as np

    from .embedding import embedding_matrix
    from .words import PAD

    wv = wv if wv is not None else word_vectors(card)
    matrix, stats = embedding_matrix(vocabulary, wv, seed=seed)
    from .words import UNK

    matrix[UNK] = wv.vectors.mean(0)  # an unknown word: the average word, neutral under pooling
    new_rows = stats.pop("new_rows")
    if not pretrained:  # every row trains: no rows of their own for the new words
        rng = np.random.default_rng(seed)
        matrix = rng.normal(wv.vectors.mean(0), wv.vectors.std(0), size=matrix.shape).astype(np.float32)
        matrix[PAD] = 0.0
        new_rows = []
    torch.manual_seed(seed)
    body = WordVectorBody(len(vocabulary), wv.dim, encoder=encoder, hidden=hidden, new_words=len(new_rows),
                          project=max(2 * hidden, wv.dim) if encoder != "mean" else 0)
    with torch.no_grad():
        body.embedding.weight.copy_(torch.from_numpy(matrix))
    if new_rows:
        body.set_new_words(new_rows, torch.from_numpy(matrix[new_rows]))
    stats["new_words"] = len(new_rows)
    return body, stats


def text_record(vocabulary, body: WordVectorBody) -> dict:
    """What a run saves to rebuild its word-vector network (headstart.json's "text")."""
    return {"vocabulary": vocabulary.to_dict(), "encoder": body.kind, "hidden": body.hidden,
            "dim": body.embedding.embedding_dim,
            "new_words": 0 if body.new_words is None else body.new_words.num_embeddings,
            "project": 0 if body.project is None else body.project[0].out_features}


def word_body_from_record(record: dict) -> tuple[WordVectorBody, object]:
    from .words import Vocabulary

    vocab = Vocabulary.from_dict(record["vocabulary"])
    return WordVectorBody(len(vocab), int(record["dim"]), encoder=record["encoder"], hidden=int(record["hidden"]),
                          new_words=int(record.get("new_words", 0)), project=int(record.get("project", 0))), vocab


def read_config(model_dir: Path) -> dict | None:
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


__all__ = ["build_vocabulary", "build_word_body", "card_model_dir", "is_vectors_file", "load_encoder_body",
           "transformers_card", "vectors_file_card", "word_body_from_record", "word_vectors"]
