"""From strings to what a text body takes: token ids, padded per batch to the longest text.

A `Tokenizer` belongs to a card (its Hugging Face tokenizer files) or to a run (the
word vocabulary built from its training texts). Texts are tokenized once; batches are
padded dynamically (to the longest text in the batch, not to max_length), and
extraction sorts texts by length so that little padding is computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..console import warn
from ..errors import HeadstartError
from ..zoo.card import ModelCard, TextPreprocessing


@dataclass
class Tokenized:
    """Token ids of each text, and how many texts were cut at max_length."""

    ids: list[list[int]]
    truncated: int
    max_length: int
    pad_id: int

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for row in self.ids:
            h.update(np.asarray(row, dtype=np.int64).tobytes())
            h.update(b"\n")
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Tokenized":
        return Tokenized([self.ids[i] for i in idx], 0, self.max_length, self.pad_id)

    def say_truncated(self, what: str = "texts") -> None:
        if self.truncated:
            warn(f"{self.truncated} of {len(self.ids)} {what} are longer than {self.max_length} tokens and were "
                 f"truncated (--max-length {self.max_length})")


class Tokenizer:
    """Strings -> Tokenized, the way a card (or a run's vocabulary) wants them."""

    def __init__(self, pre: TextPreprocessing, model_dir: Path | None = None, vocabulary=None) -> None:
        self.pre = pre
        self.vocabulary = vocabulary
        self.hf = None
        if pre.tokenizer == "hf":
            assert model_dir is not None
            self.hf = load_hf_tokenizer(model_dir)
            pad = self.hf.pad_token_id
            self.pad_id = int(pad if pad is not None else (self.hf.eos_token_id or 0))
        else:
            from .words import PAD

            if vocabulary is None:
                raise ValueError("a word tokenizer needs the run's vocabulary")
            self.pad_id = PAD

    def __call__(self, texts: Sequence[str], max_length: int | None = None) -> Tokenized:
        limit = max_length or self.pre.max_length
        ids: list[list[int]] = []
        truncated = 0
        if self.hf is not None:
            for start in range(0, len(texts), 1024):
                enc = self.hf(list(texts[start:start + 1024]), add_special_tokens=True, truncation=False)["input_ids"]
                for row in enc:
                    if len(row) > limit:
                        truncated += 1
                        row = row[: limit - 1] + row[-1:]  # keep the closing special token ([SEP])
                    ids.append(row)
        else:
            from .words import tokenize

            for t in texts:
                words = tokenize(t)
                truncated += len(words) > limit
                ids.append(self.vocabulary.encode_tokens(words, max_length=limit))
        return Tokenized(ids, truncated, limit, self.pad_id)


def load_hf_tokenizer(model_dir: Path):
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # headstart reports truncation itself, once
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise HeadstartError(f"no usable tokenizer in {model_dir} ({first}); the folder needs the model's "
                             "tokenizer files (tokenizer.json or vocab.txt + tokenizer_config.json)") from None


def sentence_transformers_config(model_dir: Path) -> dict:
    """Pooling, normalisation and max length from a sentence-transformers folder (defaults otherwise:
    mean pooling, no normalisation, the tokenizer's limit up to 512)."""
    out = {"pooling": "mean", "normalize": False, "max_length": None}
    modules = model_dir / "modules.json"
    try:
        if modules.is_file():
            mods = json.loads(modules.read_text())
            out["normalize"] = any(str(m.get("type", "")).endswith("Normalize") for m in mods)
            for m in mods:
                if str(m.get("type", "")).endswith("Pooling"):
                    cfg = json.loads((model_dir / m.get("path", "") / "config.json").read_text())
                    if cfg.get("pooling_mode_cls_token"):
                        out["pooling"] = "cls"
                    elif cfg.get("pooling_mode_max_tokens"):
                        out["pooling"] = "max"
        st = model_dir / "sentence_bert_config.json"
        if st.is_file():
            out["max_length"] = int(json.loads(st.read_text()).get("max_seq_length") or 0) or None
    except (OSError, ValueError, TypeError) as e:
        raise HeadstartError(f"{model_dir}: its sentence-transformers files are unreadable ({e}); "
                             "repair or remove modules.json") from None
    return out


def collate(pad_id: int, multiple: int = 1, cap: int | None = None):
    """A DataLoader collate_fn: (ids, label) pairs -> (B, L) ids padded to the longest, labels.

    `multiple` > 1 rounds L up to a multiple of it (not past `cap`, unless the longest already
    is): fewer distinct batch shapes. The trainer asks for 8 on a GPU, where cuDNN's attention
    kernels under bf16 are built once per shape. MiniLM lp-ft on 3,600 reviews, one epoch on an
    H100: padded to the longest, the first bf16 run trained at 1,201 texts/s (a new shape for
    nearly every length), a second one over the same shapes at 3,855, fp32 at 3,882; padded to
    a multiple of 8, 1,970 and 4,703 texts/s, fp32 4,944."""

    def fn(batch):
        longest = max(len(ids) for ids, _ in batch)
        if multiple > 1:
            rounded = -(-longest // multiple) * multiple
            longest = max(longest, min(rounded, cap)) if cap else rounded
        x = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        for i, (ids, _) in enumerate(batch):
            x[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        return x, torch.as_tensor([y for _, y in batch], dtype=torch.long)

    return fn


class LabelledTokens(torch.utils.data.Dataset):
    def __init__(self, tokens: Tokenized, labels: np.ndarray) -> None:
        self.tokens, self.labels = tokens, labels

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        return self.tokens.ids[i], int(self.labels[i])

    def set_epoch(self, epoch: int) -> None:  # text has no augmentation; the loop calls this for images
        pass


def card_model_dir(card: ModelCard) -> Path:
    """The folder holding a transformers card's weights, config and tokenizer."""
    from ..zoo.weights import locate

    path = locate(card)
    assert path is not None
    return path.parent
