"""The Python API: each function checks what it was given, picks the task (classification of images
and texts: headstart.classify; detection: headstart.detection) and hands over. The CLI is a thin
layer over these functions.

    import headstart
    run = headstart.fit("data/pets", model="efficientnet_lite0", out="runs/pets")
    run.metrics["val_accuracy"], run.metrics["strategy"], run.metrics["strategy_reason"]
    headstart.evaluate(run, "data/pets-test")["accuracy"]
    headstart.load("runs/pets").predict(["cat.jpg"])
    headstart.resume("runs/pets")          # a run that was killed goes on where it stopped
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HeadstartError
from .options import AdaptOptions, DetectOptions, FitOptions, HeadOptions, SetupOptions, TrainOptions, refuse_other_task
from .probe import HeadTraining
from .text.options import TextOptions
from .zoo import ModelCard

if TYPE_CHECKING:
    from .run import Run

TASKS = ("auto", "classify", "detect")


def fit(
    data: str | Path,
    model: str | ModelCard | None = None,
    out: str | Path = "runs/latest",
    *,
    train: TrainOptions | None = None,
    head_options: HeadOptions | None = None,
    detect: DetectOptions | None = None,
    setup: SetupOptions | None = None,
    text: TextOptions | None = None,
    adapt_options: AdaptOptions | None = None,
    task: str = "auto",
    measure_only: bool = False,
    **options: Any,
) -> Run:
    """Transfer `model` to the labelled images or texts in `data` and write the run to `out`.

    Options come in groups (headstart.options): `train` (TrainOptions: strategy, epochs, lr, ...),
    `head_options` (HeadOptions: head, hidden, dropout, head_c, class_balance, budget), `detect`
    (DetectOptions: detector, input_size, max_size, eval_every, head_epochs), `setup` (SetupOptions:
    arch, cache_dir, device, ...), `text` (headstart.text.options.TextOptions: columns,
    --max-length, and for word-vector cards the encoder and --embeddings) and `adapt_options` (AdaptOptions:
    unlabelled examples and how the head learns from them, headstart.adapt); or one by one by name,
    as the CLI's options (`headstart.fit(data, strategy="lp-ft", epochs=10)`), laid over the groups.
    An option of a group that does not apply to the task is refused in one line, before any work.

    `task` "detect" (or "auto" on DATA in COCO JSON or Pascal VOC layout) trains a detector
    (headstart.detection.train.fit_detector) and returns a DetectionRun.

    `model` defaults to efficientnet_lite0 for images and minilm_l6 for text.

    The strategy decides what trains when (see headstart.strategies); `auto` measures the linear
    probe and trials of finetune and lp-ft on folds of the labelled examples (each trained on the
    other folds, scored on one) within `budget` seconds (headstart.auto, default 60), trains the
    best in full, and writes every measurement into metrics["auto"] and the reason into
    metrics["strategy_reason"]; with a transformer text encoder and at most 64 texts per class it
    trains `contrastive` (the encoder tuned on pairs of labelled texts, then the head on its
    embeddings: headstart.classify.contrastive), which won there at every size measured.
    Phases with a frozen body fit the head on cached features (headstart.probe: L-BFGS to
    convergence, its L2 strength `head_c` chosen by cross-validation unless given); phases that
    train the body run the engine (headstart.engine).
    With `measure_only`, auto stops after its measurements and returns them (AutoMeasurement: the
    choice, the reason, metrics["auto"], the folds and every strategy's out-of-fold predictions);
    nothing is written to `out`.
    A linear probe uses every labelled example: its folds pick C and measure the head
    (metrics["val_accuracy"] is the cross-validated accuracy, metrics["cv"] the grid), then it is
    fitted on all of them; `val_split` applies to strategies that train the body (default 0.2;
    contrastive: 0, every labelled text tunes the encoder).
    `epochs`, `lr`, `weight_decay`, `patience` and `batch_size` are those of phases that train the
    body (15 epochs, head lr 1e-3 with the body at lr * body_lr_mult: 0.1, 0.05 for transformer
    encoders; weight decay 1e-4, patience 5, 16 images per batch on a CPU); a linear probe has none
    of them, and refuses them. `augment` defaults to crop-flip (detection: flip).
    """
    o = FitOptions.of(options, train=train, head=head_options, detect=detect, setup=setup, text=text,
                      adapt=adapt_options)
    HeadTraining(c=o.head.head_c)  # --head-c's range, checked before any work
    kind = _task(task, data)
    refuse_other_task(kind, o)
    from .fileio import release_lock

    try:
        if kind == "detect":
            from .detection.train import fit_detector

            return fit_detector(data, model, out, options=o)  # type: ignore[return-value,arg-type]
        from .classify.fit import fit_classifier

        return fit_classifier(data, model, out, o, measure_only=measure_only)
    finally:
        release_lock(out)  # taken by the check of --out (rundir.check_out_dir), whichever way the fit ends


def _task(task: str, data: str | Path | None) -> str:
    """classify or detect: as given, or (auto) detect when DATA is a COCO JSON / Pascal VOC dataset."""
    if task not in TASKS:
        raise HeadstartError(f"--task must be one of {', '.join(TASKS)}; got '{task}'")
    if task == "auto":
        from .data.modality import is_detection_data

        return "detect" if data is not None and is_detection_data(data) else "classify"
    return task


def resume(
    run_dir: str | Path,
    data: str | Path | None = None,
    model: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    device: str | None = None,
    num_workers: int | None = None,
    tracker: str | None = None,
    given: dict[str, Any] | None = None,
) -> Run:
    """Continue a run that was stopped, at the phase and epoch of its last checkpoint.

    `data` and `model` default to the run's own; when given they must match it, as must
    any training option in `given` (the settings a run was started with are its own)."""
    from .classify.body import refuse_other_inputs
    from .engine import Checkpoint
    from .fileio import release_lock
    from .rundir import stopped_run

    t_start = time.perf_counter()
    d, info = stopped_run(run_dir)  # checked, and held by this process until it ends
    try:
        if Checkpoint(d).exists():
            Checkpoint(d).choose(say=False)  # every checkpoint damaged: one line now, before any work
        if info.get("task") == "detect":
            from .detection.train import resume_detector

            refuse_other_inputs(d, info, data, given)
            return resume_detector(d, info, device=device, num_workers=num_workers or 0,  # type: ignore[return-value]
                                   tracker=tracker)
        from .classify.body import resume_classifier

        return resume_classifier(d, info, data, model, cache_dir=cache_dir, no_cache=no_cache, device=device,
                                 num_workers=num_workers, tracker=tracker, given=given, t_start=t_start)
    finally:
        release_lock(d)


def load(run_dir: str | Path, device: str | None = None) -> Run:
    """Load a run folder written by `headstart fit`: a classifier (headstart.run.Run) or a detector
    (headstart.detection.run.DetectionRun).

    The network is a plain nn.Module (`run.model`: images in, or padded token ids for text
    runs; logits out), `run.preprocessing` says how to prepare its input (`run.transform()`
    builds it; `run.tokenizer()` for text), and `run.predict(files_or_texts)` does both.
    In your own code (image runs):

        run = headstart.load("runs/pets", device="cpu")
        transform = run.transform()                 # PIL image or path -> float tensor (3, H, W)
        model = run.model.eval()
        probs = model(transform(Image.open("cat.jpg")).unsqueeze(0)).softmax(dim=1)
        label = run.classes[int(probs.argmax())]
    """
    from .rundir import finished_run

    d, info = finished_run(run_dir)
    if info.get("task") == "detect":
        from .detection.run import load_detection

        return load_detection(d, info, device)  # type: ignore[return-value]
    from .run import load_classifier

    return load_classifier(d, info, device)


def _as_run(run: Run | str | Path, device: str | None = None) -> Run:
    from .detection.run import DetectionRun
    from .run import Run

    return run if isinstance(run, (Run, DetectionRun)) else load(run, device=device)  # type: ignore[return-value]


def evaluate(
    run: Run | str | Path,
    data: str | Path,
    *,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    device: str | None = None,
    extract_batch_size: int | None = None,
    num_workers: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class scores and the confusion matrix on labelled `data`
    (a detector: COCO mAP). Text runs read the columns they were trained with, unless text_column /
    label_column say otherwise."""
    r = _as_run(run, device)
    if r.modality == "detection":
        from .detection.run import evaluate_detector

        return evaluate_detector(r, data, skip_bad=skip_bad_files, device=device)  # type: ignore[arg-type]
    from .classify.evaluate import evaluate_classifier

    return evaluate_classifier(r, data, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                               device=device, extract_batch_size=extract_batch_size, num_workers=num_workers,
                               text_column=text_column, label_column=label_column)


def predict(run: Run | str | Path, files: list[str | Path], top_k: int = 5, **kw: Any) -> list[dict[str, Any]]:
    """Label and top-k scores for each image file (text runs: each text). `run` is a Run, a run
    folder, or an .onnx file written by `headstart export` (run with onnxruntime). Detection runs
    return each image's boxes instead (`out_dir=` also writes them drawn, as PNGs, and as JSON)."""
    from .export import OnnxRun, is_onnx_file

    if isinstance(run, OnnxRun) or is_onnx_file(run):
        onnx_run = run if isinstance(run, OnnxRun) else OnnxRun(run)
        return onnx_run.predict(files, top_k=top_k, **kw)
    r = _as_run(run, kw.pop("device", None))
    if r.modality == "detection":  # boxes: detections per image; out_dir=FOLDER also draws them (PNG + JSON)
        return r.predict(files, **{k: v for k, v in kw.items() if k in ("out_dir", "score_threshold", "batch_size",
                                                                         "skip_bad_files")})
    return r.predict(files, top_k=top_k, **kw)
