"""Options of text DATA and of word-vector networks, without torch (the CLI reads them before any work)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import HeadstartError

ENCODERS = ("cnn", "bilstm", "mean")  # the networks over word vectors (headstart.text.bodies)
MIN_COUNT = 2  # words without a vector join the vocabulary from this many occurrences in the training texts
EMBEDDINGS = ("frozen", "finetune", "frozen-then-finetune", "random")
AUTO_RNN_PER_CLASS = 200
# --precision auto for a word-vector network: fp32 on a GPU too. Its BiLSTM trained slower in bf16 and
# scored lower (benchmarks/gpu_text.py, all Rotten Tomatoes rows, frozen GloVe, 3 seeds: 0.737 vs
# 0.745 in fp32; 33.7 vs 32.1 s on an H100, 31.6 vs 28.1 s on an H200). Transformer encoders keep bf16.
WORD_PRECISION = "fp32"


@dataclass(frozen=True)
class TextOptions:
    """Options that only text DATA uses (the CLI's --text-column ... --embeddings)."""

    text_column: str = "text"
    label_column: str = "label"
    max_length: int | None = None  # tokens per text; default the card's
    encoder: str = "auto"  # word-vector cards: cnn, bilstm, mean; auto: mean below AUTO_RNN_PER_CLASS, else bilstm
    hidden: int = 100  # word-vector cards: the encoder's width
    min_count: int = MIN_COUNT
    embeddings: str = "frozen"  # word-vector cards: frozen, finetune, frozen-then-finetune; random = no transfer
    skip_empty: bool = False  # leave out empty texts instead of stopping

    def __post_init__(self) -> None:
        if self.encoder not in ("auto", *ENCODERS):
            raise HeadstartError(f"--encoder must be one of auto, {', '.join(ENCODERS)}; got '{self.encoder}'")
        if self.embeddings not in EMBEDDINGS:
            raise HeadstartError(f"--embeddings must be one of {', '.join(EMBEDDINGS)}; got '{self.embeddings}'")
        if self.max_length is not None and self.max_length < 4:
            raise HeadstartError(f"--max-length must be >= 4 tokens; got {self.max_length}")
        if self.min_count < 1 or self.hidden < 1:
            raise HeadstartError("--min-count and --hidden must be >= 1")

    def resolved(self, per_class: int) -> "TextOptions":
        """`auto` encoder: with few examples a new encoder over the vectors cannot learn much, and
        the average of the vectors (a linear model on them, when they stay frozen) is the
        sturdier choice; with more, a BiLSTM. Measured on Rotten Tomatoes (frozen vectors, balanced
        accuracy, mean of 5 seeds, benchmarks/bench_text.py's splits): 64 per class mean 0.632,
        bilstm 0.613, cnn 0.594; all ~4,500 rows bilstm 0.751, cnn 0.738."""
        if self.encoder != "auto":
            return self
        return replace(self, encoder="mean" if per_class < AUTO_RNN_PER_CLASS else "bilstm")

    def strategy(self) -> str:
        """A word-vector network's strategy: the encoder is new, so it always trains; the
        embeddings train or not as --embeddings says. Mean pooling has no encoder: with frozen
        embeddings that is a linear probe on the cached averaged vectors, and when they train,
        the same probe first (lp-ft): a head learning from scratch next to moving vectors learned
        too slowly to beat chance on 64 reviews per class (measured)."""
        if self.encoder == "mean" and self.embeddings != "random":
            # nothing new but the head: fit it on the cached averages first, then train the vectors with it
            return "linear-probe" if self.embeddings == "frozen" else "lp-ft"
        if self.embeddings == "frozen":
            return "partial:1"
        return "frozen-then-finetune" if self.embeddings == "frozen-then-finetune" else "finetune"
