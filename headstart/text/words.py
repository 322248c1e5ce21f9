"""Words: the tokenizer and the vocabulary a text model's ids come from.

The tokenizer is deliberately simple and fully described here, so that a saved run can
be reproduced and its vocabulary read by eye:

1. the text is NFKC-normalised (full-width letters, ligatures, superscripts become
   their plain forms) and lowercased with ``str.lower``;
2. a *word* is a run of letters and digits (any script; combining marks such as
   accents or vowel signs stay inside the word), which may contain single inner
   apostrophes or hyphens: "don't", "well-made", "o'neill" are one token each;
3. every other character that is not white space is a token of its own: "!", "?",
   ",", ".", "_", "$", an emoji. So "3.5" gives "3", ".", "5" and "--" gives "-", "-";
4. an English clitic at the end of a word becomes a token of its own, the way GloVe and
   word2vec were trained (Penn Treebank style): "don't" gives "do", "n't"; "it's" gives
   "it", "'s"; also 're, 've, 'll, 'd, 'm.

Before step 2 the typographic apostrophe ’ (U+2019) is read as ' and the hyphen ‐
(U+2010, which NFKC makes of the non-breaking hyphen) as -.

Python's ``re`` module and ``unicodedata`` do the work; no third-party package is needed.

A :class:`Vocabulary` maps tokens to ids: id 0 is padding, id 1 stands for every
token it does not know. It is built from training texts only, and saved as JSON with
the run.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import HeadstartError

PAD, UNK = 0, 1
PAD_WORD, UNK_WORD = "<pad>", "<unk>"
_FORMAT = "headstart.vocabulary"
_TOKENIZER = "headstart.text.words/2"

_APOSTROPHES = "'"
_HYPHENS = "-"
_PATTERNS: tuple[re.Pattern[str], re.Pattern[str]] | None = None


def _mark_class() -> str:
    """A character-class body holding every combining mark (categories Mn, Mc, Me)."""
    spans: list[tuple[int, int]] = []
    for lo, hi in ((0x300, 0x20000), (0xE0100, 0xE01F0)):  # every mark lies in these ranges
        for cp in range(lo, hi):
            if unicodedata.category(chr(cp))[0] == "M":
                if spans and spans[-1][1] == cp - 1:
                    spans[-1] = (spans[-1][0], cp)
                else:
                    spans.append((cp, cp))
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in spans)


def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(tokens of a text without combining marks, tokens of any text).

    Both token patterns give the same tokens on a text without marks; the first is
    about three times faster, and most texts (after NFKC) hold no marks.
    """
    global _PATTERNS
    if _PATTERNS is None:
        marks = _mark_class()
        inner = re.escape(_APOSTROPHES + _HYPHENS)
        plain = r"[^\W_]"  # a letter or a digit of any script (\w without the underscore)
        full = rf"(?:[^\W_]|[{marks}])"
        _PATTERNS = (
            re.compile(rf"{plain}+(?:[{inner}]{plain}+)*|\S"),
            re.compile(rf"{full}+(?:[{inner}]{full}+)*|\S"),
        )
    return _PATTERNS


def tokenize(text: str) -> list[str]:
    """The tokens of `text`, as described in this module's docstring."""
    if not isinstance(text, str):
        raise HeadstartError(f"tokenize needs a str, got {type(text).__name__}; convert the text with str() first")
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2010", "-")
    plain, full = _patterns()
    has_mark = not text.isascii() and any(unicodedata.category(c)[0] == "M" for c in set(text))
    tokens = (full if has_mark else plain).findall(text)
    if "'" not in text:
        return tokens
    out: list[str] = []
    for t in tokens:
        m = _CLITIC.match(t) if "'" in t else None
        out += [m.group(1), m.group(2)] if m else [t]
    return out


_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def texts_of(texts: Iterable[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise HeadstartError(f"{what} needs a list of texts, got a single str; wrap it in a list: [text]")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise HeadstartError(f"{what}: text #{i} is a {type(t).__name__}, not a str; convert the texts with str() first")
    return out


def _check_max_length(max_length: int | None) -> None:
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise HeadstartError(f"max_length must be a whole number of at least 1 (or None for no limit), got {max_length!r}")


@dataclass(eq=False)
class Vocabulary:
    """Token <-> id. ``words[i]`` is the token of id i; words[0] is "<pad>", words[1] is "<unk>"."""

    words: list[str]
    _ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        words = self.words
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise HeadstartError("a vocabulary's words must be a list of str; rebuild it with Vocabulary.build(texts)")
        if words[:2] != [PAD_WORD, UNK_WORD]:
            raise HeadstartError(
                f"a vocabulary must start with {PAD_WORD!r}, {UNK_WORD!r} (ids {PAD} and {UNK}), this one starts with "
                f"{words[:2]!r}; rebuild it with Vocabulary.build(texts)"
            )
        self._ids = {}
        for i, w in enumerate(words):
            if self._ids.setdefault(w, i) != i:
                raise HeadstartError(f"the vocabulary lists {w!r} twice (ids {self._ids[w]} and {i}); each word must appear once")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 2, max_size: int = 50_000) -> Vocabulary:
        """The vocabulary of the training `texts`.

        A token is kept when it occurs at least `min_count` times; the most frequent come
        first (ties in alphabetical order), and at most `max_size` ids are handed out,
        the two special ones included.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise HeadstartError(f"min_count must be a whole number of at least 1, got {min_count!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 3:
            raise HeadstartError(
                f"max_size must be a whole number of at least 3 (it counts {PAD_WORD} and {UNK_WORD}), got {max_size!r}"
            )
        counts: Counter[str] = Counter()
        for t in texts_of(texts, "Vocabulary.build"):
            counts.update(tokenize(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD_WORD, UNK_WORD, *kept[: max_size - 2]])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids of the tokens of `text`, cut to the first `max_length`; [UNK] for a text without tokens."""
        return self.encode_tokens(tokenize(text), max_length)

    def encode_tokens(self, tokens: list[str], max_length: int | None = None) -> list[int]:
        """Ids of already tokenized text (see encode)."""
        _check_max_length(max_length)
        get = self._ids.get
        ids = [get(t, UNK) for t in tokens] or [UNK]
        return ids if max_length is None else ids[:max_length]

    def encode_batch(self, texts: Iterable[str], max_length: int | None = None) -> tuple[torch.Tensor, int]:
        """(B, L) int64 ids padded with PAD to the longest text, and how many texts were cut to `max_length`."""
        _check_max_length(max_length)
        rows = [self.encode(t) for t in texts_of(texts, "encode_batch")]
        truncated = 0
        if max_length is not None:
            truncated = sum(len(r) > max_length for r in rows)
            rows = [r[:max_length] for r in rows]
        width = max((len(r) for r in rows), default=1)
        out = np.full((len(rows), width), PAD, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return torch.from_numpy(out), truncated

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (saved in a run folder; read back with from_dict)."""
        return {"format": _FORMAT, "version": 1, "tokenizer": _TOKENIZER, "words": list(self.words)}

    @classmethod
    def from_dict(cls, d: Any) -> Vocabulary:
        if not isinstance(d, dict) or d.get("format") != _FORMAT or not isinstance(d.get("words"), list):
            raise HeadstartError(
                "this is not a saved headstart vocabulary (expected a JSON object with format "
                f"{_FORMAT!r} and a list of words); save one with Vocabulary.to_dict()"
            )
        if d.get("version") != 1 or d.get("tokenizer", _TOKENIZER) != _TOKENIZER:
            raise HeadstartError(
                f"the saved vocabulary is version {d.get('version')!r} with tokenizer {d.get('tokenizer')!r}, this "
                f"headstart reads version 1 with {_TOKENIZER!r}; upgrade headstart or retrain the run"
            )
        return cls(list(d["words"]))
