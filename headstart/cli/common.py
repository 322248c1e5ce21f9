"""What every subcommand of `headstart` shares: the group, output helpers, and the options that several
commands take (they map onto headstart.options)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from ..console import set_quiet  # noqa: F401  (the commands' --quiet)
from ..errors import HeadstartError
from ..heads import HeadSpec

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages on stderr.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
cache_options = [
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Feature cache folder (default: $HEADSTART_CACHE or ~/.cache/headstart)."),
    click.option("--no-cache", is_flag=True, help="Compute features without reading or writing the cache."),
    click.option("--skip-bad-files", "--skip-bad", "skip_bad_files", is_flag=True,
                 help="Leave out files that are not readable images (detection: also boxes outside their image or "
                      "of zero area, and annotations of unknown categories)."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)."),
]
# Options of detection (fit --task detect).
detect_options = [
    click.option("--task", default="auto", show_default=True, type=click.Choice(["auto", "classify", "detect"]),
                 help="auto: detect when DATA is a COCO JSON file (or a folder holding one) or a Pascal VOC folder."),
    click.option("--detector", default="auto", show_default=True, type=click.Choice(["auto", "faster", "mask", "yolo"]),
                 help="Detection: faster (Faster R-CNN), mask (Mask R-CNN; auto: when DATA has masks), or yolo (a "
                      "one-stage YOLO, several times faster to train and to run; on a zoo card's body, or the network of "
                      "--model darknet:CFG[,WEIGHTS[,NAMES]])."),
    click.option("--input-size", default=None, type=int,
                 help="Detection: shorter image side in pixels (default DATA's median, within 256..800)."),
    click.option("--max-size", default=None, type=int, help="Detection: longest image side (default 5/3 x input size)."),
    click.option("--eval-every", default=None, type=int,
                 help="Detection: epochs between validation mAP measurements (the best one is kept; default 4)."),
]


extract_options = [  # reading DATA through a frozen body: fit, rank, evaluate
    click.option("--extract-batch-size", default=None, type=int, help="Batch size of feature extraction."),
    click.option("--workers", default=None, type=int, help="Image-decoding worker processes."),
]


def with_options(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return wrap


class Checked(click.Command):
    """A command whose numeric options are checked against their ranges (headstart.options.RANGES) before it
    runs: one line and exit 2, never a default taken for 0 nor a traceback."""

    def invoke(self, ctx: click.Context):
        from ..options import check_value

        for name, value in ctx.params.items():
            check_value(name, value)
        return super().invoke(ctx)


class CheckedGroup(click.Group):
    command_class = Checked


CheckedGroup.group_class = CheckedGroup


@click.group(cls=CheckedGroup, context_settings=CONTEXT)
@click.version_option(package_name="headstart")
def cli() -> None:
    """headstart: transfer learning in one command.

    \b
    headstart models                      the pretrained models on this machine
    headstart fit DATA --model M --out R  transfer M to the labelled images or texts in DATA
    headstart fit --resume R              continue a run that was stopped
    headstart lr-find DATA --model M      the learning-rate range test
    headstart rank DATA                   which pretrained model suits DATA
    headstart advise DATA                 should you transfer, from what, how (a report)
    headstart pretrain DATA --out DIR     your own source model, from random weights
    headstart models add NAME --from DIR  add it (or any run or weights file) to your zoo
    headstart evaluate R DATA             accuracy and friends on labelled DATA
    headstart predict R FILE...           labels for images (texts: strings or text files)
    headstart export R --format onnx      one file (ONNX, TorchScript) for serving
    headstart demo                        few-shot MNIST from ImageNet, end to end
    """


training_options = [
    click.option("--model", "-m", default=None,
                 help="A card from `headstart models` (default efficientnet_lite0 for images, minilm_l6 for text), "
                      "or file:PATH (with --arch; word vectors need none), timm:NAME, torchvision:NAME, hf:REPO; "
                      "detection also a torchvision detector checkpoint file or darknet:CFG[,WEIGHTS[,NAMES]]."),
    click.option("--arch", default=None, help="Architecture of a file: model (timm or torchvision name)."),
    click.option("--allow-download", is_flag=True, help="Allow fetching weights from the network."),
    click.option("--head", "head", default="linear", show_default=True, type=click.Choice(["linear", "mlp"])),
    click.option("--hidden", default=HeadSpec.hidden, show_default=True, type=int, help="Hidden units of the mlp head."),
    click.option("--dropout", default=HeadSpec.dropout, show_default=True, type=float,
                 help="Dropout in the head while the body trains (a head on cached features: --head-c instead)."),
    click.option("--body-lr-mult", default=None, type=float,
                 help="Body learning rate = --lr x this (phases that train the body; default 0.1, transformer "
                      "encoders 0.05, word-vector networks 1: their encoder is new)."),
    click.option("--layer-decay", default=None, type=float,
                 help="Each body group lower down learns at this fraction of the one above it (default 1; "
                      "word-vector networks 0.1: the embeddings learn slower than the encoder)."),
    click.option("--bn", default="frozen", show_default=True, type=click.Choice(["frozen", "train"]),
                 help="BatchNorm statistics of the layers that train: kept fixed, or updated from the batches "
                      "(frozen layers always keep theirs)."),
    click.option("--augment", default=None, type=click.Choice(["crop-flip", "crop", "flip", "none"]),
                 help="Augmentation in phases that train the body: random resized crop, horizontal flip (default "
                      "crop-flip; detection: flip, and no crops)."),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--val-split", default=None, type=float,
                 help="Stratified validation fraction of runs that train the body (default 0.2; --strategy contrastive: "
                      "0, every labelled text trains the encoder)."),
    click.option("--no-class-balance", is_flag=True, help="Weigh examples equally instead of classes."),
]

# Options of text DATA (fit, rank, advise); headstart.text.network.TextOptions holds them.
text_options = [
    click.option("--text-column", default="text", show_default=True, help="Text DATA (CSV/JSONL): the text column."),
    click.option("--label-column", default="label", show_default=True, help="Text DATA: the label column."),
    click.option("--max-length", default=None, type=int,
                 help="Tokens kept per text (default the model's: 256); longer texts are truncated, and fit says so."),
    click.option("--skip-empty", is_flag=True, help="Text DATA: leave out empty texts instead of stopping."),
]
word_options = [
    click.option("--encoder", default="auto", show_default=True, type=click.Choice(["auto", "cnn", "bilstm", "mean"]),
                 help="Word-vector models: the network over the embeddings (auto: the vectors' mean below 200 "
                      "examples per class, else bilstm)."),
    click.option("--embeddings", default="frozen", show_default=True,
                 type=click.Choice(["frozen", "finetune", "frozen-then-finetune", "random"]),
                 help="Word-vector models: keep the pretrained embeddings fixed, train them, or train them once "
                      "the rest has learned (at a tenth of the rate); random: the same network without transfer."),
    click.option("--min-count", default=2, show_default=True, type=int,
                 help="Word-vector models: words without a vector join the vocabulary from this many occurrences "
                      "(they train with the cnn or bilstm encoder, even with frozen embeddings)."),
]


def text_options_of(text_column: str, label_column: str, max_length: int | None, skip_empty: bool, encoder: str = "auto",
          embeddings: str = "frozen", min_count: int = 2):
    from ..text.options import TextOptions

    return TextOptions(text_column=text_column, label_column=label_column, max_length=max_length,
                       skip_empty=skip_empty, encoder=encoder, embeddings=embeddings, min_count=min_count)


def relaunch_for(ctx: click.Context, processes: int) -> None:
    """--processes N: this same command again in N processes (unless already one of them)."""
    if processes < 1:
        raise HeadstartError(f"--processes must be >= 1; got {processes}")
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        from ..launch import relaunch

        ctx.exit(relaunch(processes, sys.argv[1:]))


STRATEGY_HELP = ("auto (measures the linear probe, then trials of finetune and lp-ft, each trained on two of three "
                 "folds of DATA and scored on the third, within --budget; a transformer text encoder with at most 64 "
                 "texts per class: contrastive), linear-probe, finetune, partial:N (top N depth groups), gradual "
                 "(unfreeze one group at a time), lp-ft (linear probe, then fine-tune all), contrastive (a transformer "
                 "text encoder tuned on pairs of labelled texts, then the head on its embeddings).")
