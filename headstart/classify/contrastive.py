"""--strategy contrastive: a transformer encoder tuned on pairs of the labelled texts, then a head on its tuned
embeddings (SetFit's idea, Tunstall et al., 2022). What it is, its defaults, its checks and when --strategy auto
takes it live here, without torch; the engine's task is classify.contrastive_task.

  pairs phase   each step takes a class-balanced batch of labelled texts through the encoder once and uses
                every pair in it: a same-class pair's cosine similarity is pulled to 1, an other-class pair's
                to 0 (squared error, the two kinds weighted equally). A batch of B texts gives B(B-1)/2 pairs
                for B forward passes, where SetFit passes both texts of each pair: the budget is in steps,
                never all O(N^2) pairs. Every group of the encoder but its token embeddings trains
                (strategies.plan). With a validation split (--val-split; none by default: options.
                CONTRASTIVE_VAL_SPLIT), each validation embeds the training and validation texts with the
                encoder as it is, fits the head on the training ones (headstart.probe), scores the validation
                ones and keeps that head: every epoch's weights are a whole classifier, and the best is the run.
  head phase    the head fitted on the last encoder's embeddings; with --unlabelled, the head learns from U's
                tuned embeddings too (headstart.adapt: self-training, CORAL; classify.unlabelled.head_from).

Batches are drawn from (seed, epoch): each class gives the same number of texts to a batch (a class with
thousands of texts as many as one with 8), each class's texts in a shuffled cycle, so that every text is
used evenly. A class needs two training texts to form a same-class pair (checked before any work).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import HeadstartError
from ..zoo import ModelCard

BATCH = 16  # texts per step, on any device: the batch is also the set of pairs each step learns from
PASSES = 15  # the default budget: about this many batches of each labelled text (the body's 15 epochs)
# An epoch of the pairs phase ends in a checkpoint: MiniLM's weights and AdamW's state, about half a second on
# 2 CPU cores, as long as a step. With 8 texts per class an epoch of single steps spent as long checkpointing
# as training, so an epoch is at least this many steps.
MIN_STEPS_PER_EPOCH = 8


def steps_per_epoch(n_train: int, batch: int) -> int:
    return max(MIN_STEPS_PER_EPOCH, math.ceil(n_train / batch))


def default_epochs(n_train: int, batch: int) -> int:
    """Epochs of PASSES batches of each text: 2 of 8 steps for 16 texts in batches of 16, 15 of 8 for 128."""
    return max(1, round(PASSES * math.ceil(n_train / batch) / steps_per_epoch(n_train, batch)))


def steps(n_train: int, batch: int = BATCH) -> int:
    """Steps of the pairs phase by default: what its time goes with (advise's estimate)."""
    return default_epochs(n_train, batch) * steps_per_epoch(n_train, batch)


def check_pairs(labels: np.ndarray, train_idx: np.ndarray, classes: tuple[str, ...]) -> str | None:
    """Why the training split cannot form a same-class pair of every class (None: it can)."""
    counts = np.bincount(labels[train_idx], minlength=len(classes))
    if counts.min() >= 2:
        return None
    c = int(counts.argmin())
    total = int((labels == c).sum())
    if total < 2:
        return f"class {classes[c]!r} has {total} labelled text, and a same-class pair needs two"
    return (f"class {classes[c]!r} has {int(counts[c])} training text ({total} labelled, the rest in the validation "
            "split), and a same-class pair needs two: --val-split 0 trains on all of them")


def batch_shape(n_classes: int, batch: int) -> tuple[int, int]:
    """(texts of each class, classes) in a batch of at most `batch` texts (at least 2 x 2)."""
    per = max(2, batch // n_classes)
    return per, min(n_classes, max(2, batch // per))


# --strategy auto with a transformer text encoder and at most this many labelled texts in the smallest class:
# contrastive. Movie reviews, MiniLM, 5 seeds (benchmarks/bench_fewshot.py): 8 per class 0.617 against the
# linear probe's 0.592 and lp-ft's 0.561; 16 per class 0.660 against 0.627 and 0.615; 64 per class 0.731 against
# the probe's 0.674 (lp-ft 0.682 on the same splits, benchmarks/bench_text.py). Checked on convention speeches
# (bench_fewshot.py --task political, 5 seeds, never tuned on): 8 per class 0.669 against the probe's 0.652, 16
# per class 0.666 against 0.664. Above 64 contrastive was not measured, and auto measures as for images.
AUTO_PER_CLASS = 64
AUTO_REASON = (f"auto: a transformer encoder and at most {AUTO_PER_CLASS} labelled texts in the smallest class: contrastive "
               "(above the linear probe and lp-ft at 8, 16 and 64 reviews per class, benchmarks/bench_fewshot.py)")


def by_default(card: ModelCard, samples: Any) -> bool:
    """Whether --strategy auto trains contrastive without measuring (AUTO_PER_CLASS); a class of one text
    cannot form a pair, and auto measures instead."""
    if card.architecture != "transformers" or samples.modality != "text":
        return False
    counts = np.bincount(samples.labels, minlength=len(samples.classes))
    return 2 <= int(counts.min()) <= AUTO_PER_CLASS


def check_card(card: ModelCard, modality: str) -> None:
    """--strategy contrastive tunes a transformer encoder on texts (checked as soon as the card is known)."""
    if card.architecture != "transformers":
        what = "word vectors" if card.architecture == "word-vectors" else f"an {modality} model"
        raise HeadstartError(f"--strategy contrastive tunes a transformer text encoder (minilm_l6, hf:FOLDER) on pairs "
                             f"of labelled texts; '{card.name}' is {what}: choose another --model or --strategy")


def check_texts(samples: Any, train_idx: np.ndarray) -> None:
    """--strategy contrastive needs two training texts of every class."""
    why = check_pairs(samples.labels, train_idx, samples.classes)
    if why:
        raise HeadstartError(f"--strategy contrastive: {why}; add texts to that class, or use --strategy linear-probe")


