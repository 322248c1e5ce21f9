"""Nothing wrong, nothing lost: a run records the sha256 of its files when it is written, and every reader
(evaluate, predict, export, load, a run used as a source model) checks them. A changed or damaged file is
one line naming it, exit 2, and nothing written; never the old score or one label for every image."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from headstart.cli import main
from headstart.rundir import FILES_KEY, METRICS_FILE, RUN_FILE, WEIGHTS_FILE


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_weights, shapes_dir):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["fit", str(shapes_dir), "--model", f"file:{tiny_weights}", "--arch", "timm:test_efficientnet",
                 "--out", str(out), "--strategy", "finetune", "--epochs", "1", "--quiet"]) == 0
    return out


def _damage(path, name: str) -> None:
    if name == WEIGHTS_FILE:  # a few bytes of the last tensor's data (the header stays valid)
        data = bytearray(path.read_bytes())
        data[-8:] = bytes(b ^ 0x5A for b in data[-8:])
        path.write_bytes(bytes(data))
    else:  # an edited figure
        metrics = json.loads(path.read_text())
        metrics["val_accuracy"] = 1.0 if metrics.get("val_accuracy") != 1.0 else 0.0
        path.write_text(json.dumps(metrics))


def test_a_run_records_the_sha256_of_its_files(tiny_run):
    from headstart.fileio import sha256_file

    files = json.loads((tiny_run / RUN_FILE).read_text())[FILES_KEY]
    assert files == {n: sha256_file(tiny_run / n) for n in (WEIGHTS_FILE, METRICS_FILE)}
    modes = {(tiny_run / n).stat().st_mode & 0o777 for n in (WEIGHTS_FILE, METRICS_FILE, RUN_FILE)}
    assert len(modes) == 1  # the weights too have the umask's mode (safetensors alone writes 0600)


@pytest.mark.parametrize("name", [WEIGHTS_FILE, METRICS_FILE])
def test_every_reader_refuses_a_changed_run_file_in_one_line(name, tiny_run, shapes_test_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _damage(run / name, name)
    image = sorted(shapes_test_dir.rglob("*.png"))[0]
    for args in (["evaluate", run, shapes_test_dir], ["predict", run, image], ["export", run, "--out", tmp_path / "x.onnx"],
                 ["models", "add", "mine", "--from", run]):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and name in err and "changed" in err, (args, err)
    assert not (tmp_path / "x.onnx").exists()
    assert main(["models", "--json"]) == 0 and "mine" not in {r["name"] for r in json.loads(capsys.readouterr().out)}


def test_a_run_without_recorded_hashes_still_loads(tiny_run, tmp_path):
    """Runs written by headstart 0.2 recorded no hashes: they load as they did."""
    import headstart

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    info = json.loads((run / RUN_FILE).read_text())
    del info[FILES_KEY]
    (run / RUN_FILE).write_text(json.dumps(info))
    assert headstart.load(run).classes == headstart.load(tiny_run).classes
    # nothing records what its weights were: its body's identity (the key of its cached features) comes from
    # the tensors read, so a changed body never reuses the features of the one it replaced
    from safetensors.numpy import load_file, save_file

    before = headstart.load(run).body_id
    tensors = load_file(str(run / WEIGHTS_FILE))
    conv = next(k for k in tensors if k.startswith("body.") and k.endswith("weight") and tensors[k].ndim == 4)
    tensors[conv] = tensors[conv] * 0.5
    save_file(tensors, str(run / WEIGHTS_FILE))
    assert headstart.load(run).body_id != before


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture()
def stopped(data_dir, tiny_weights, tmp_path):
    """A straight finetune run of 3 epochs and the same run stopped after its second epoch (checkpoint
    after epoch 2, checkpoint.previous after epoch 1)."""
    import headstart
    from conftest import stopped_after_checkpoint

    kw = dict(model=f"file:{tiny_weights}", arch="timm:test_efficientnet", strategy="finetune", epochs=3,
              batch_size=8, augment="none", num_workers=0)
    headstart.fit(data_dir, out=tmp_path / "straight", **kw)
    with stopped_after_checkpoint(lambda state: state.global_epoch == 2):
        headstart.fit(data_dir, out=tmp_path / "stopped", **kw)
    return tmp_path / "straight", tmp_path / "stopped"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("ckpt") / "data", per_class=6, seed=5, size=48)


def _same_weights(a, b) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a / WEIGHTS_FILE)), load_file(str(b / WEIGHTS_FILE))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("damage", ["truncated weights", "edited state", "optimizer replaced by a pickle"])
def test_a_damaged_checkpoint_gives_way_to_the_previous_one(damage, stopped, capsys):
    """The newest checkpoint damaged: --resume goes on from the one before it (one epoch more to train)
    and ends with the weights of the run that was never stopped."""
    import pickle

    straight, run = stopped
    ckpt = run / "checkpoint"
    assert (run / "checkpoint.previous" / "manifest.json").is_file()
    if damage == "truncated weights":
        w = ckpt / "weights.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif damage == "edited state":
        state = json.loads((ckpt / "state.json").read_text())
        state["epoch"] = "two"
        (ckpt / "state.json").write_text(json.dumps(state))
    else:
        (ckpt / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": "payload"}))
    assert main(["fit", "--resume", str(run)]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert _same_weights(straight, run)
    assert not any(run.glob("checkpoint*"))


def test_both_checkpoints_damaged_is_one_line(stopped, capsys):
    _, run = stopped
    for folder in ("checkpoint", "checkpoint.previous"):
        w = run / folder / "weights.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    assert main(["fit", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" in err and "weights.safetensors" in err and "--out" in err, err


def test_a_checkpoint_without_a_manifest_is_still_checked_as_it_is_read(stopped, capsys):
    """headstart 0.2 wrote no manifest: a pickle in its optimizer state is refused (never run), in one line."""
    import pickle

    _, run = stopped
    for folder in ("checkpoint", "checkpoint.previous"):
        (run / folder / "manifest.json").unlink()
    shutil.rmtree(run / "checkpoint.previous")
    (run / "checkpoint" / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": "payload"}))
    assert main(["fit", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optimizer.pt" in err, err


# ------------------------------------------------------------------------------------------ outputs
def test_check_writable_names_a_full_disk(tmp_path, monkeypatch):
    import errno
    import tempfile

    from headstart.errors import HeadstartError
    from headstart.fileio import check_writable

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(HeadstartError, match="--out .* cannot be written .No space left on device"):
        check_writable(tmp_path / "run")


def test_a_full_disk_under_the_feature_cache_costs_the_cache_not_the_run(tiny_weights, shapes_dir, tmp_path,
                                                                        monkeypatch, capsys):
    """The entry's space is reserved before the memory-mapped writes (a full disk used to end in a bus
    error): no space is one warning, and the run goes on without caching."""
    import errno

    import headstart
    from headstart import features

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features, "reserve", full)
    run = headstart.fit(shapes_dir, model=f"file:{tiny_weights}", arch="timm:test_efficientnet", out=tmp_path / "run",
                        strategy="linear-probe", cache_dir=tmp_path / "cache")
    assert run.metrics["cache_hit"] is False and (tmp_path / "run" / WEIGHTS_FILE).is_file()
    err = capsys.readouterr().err
    assert "could not write the feature cache entry" in err and "No space left on device" in err and "MB" in err
    assert not list((tmp_path / "cache").rglob("features.npy"))


# ------------------------------------------------------------------------------------------ odd files
def test_file_names_that_are_not_utf8_are_data_like_any_other(tiny_weights, shapes_dir, tmp_path, capsys):
    import os

    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    first = sorted((data / "circle").glob("*.png"))[0]
    odd = os.fsdecode(bytes(data / "circle") + b"/caf\xe9-" + os.fsencode(first.name))
    os.rename(first, odd)
    args = ["--model", f"file:{tiny_weights}", "--arch", "timm:test_efficientnet"]
    assert main(["fit", str(data), *args, "--out", str(tmp_path / "run"), "--strategy", "linear-probe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_train"] > 0
    assert main(["predict", str(tmp_path / "run"), odd, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] in ("circle", "square", "triangle")
    assert main(["evaluate", str(tmp_path / "run"), str(data), "--json"]) == 0


def test_removing_a_zoo_entry_that_is_a_link_removes_the_link_only(tiny_weights, tmp_path, capsys):
    from headstart.zoo.user import zoo_root
    from headstart.zoo.manage import add_card

    add_card("kept", tiny_weights, arch="timm:test_efficientnet")
    real = tmp_path / "kept-elsewhere"
    shutil.move(str(zoo_root() / "kept"), real)
    (zoo_root() / "linked").symlink_to(real, target_is_directory=True)
    assert main(["models", "remove", "linked"]) == 0
    assert not (zoo_root() / "linked").exists() and (real / "card.json").is_file()


def test_two_fits_into_the_same_out_the_second_is_refused(tiny_weights, shapes_dir, tmp_path, capsys):
    import os
    import subprocess

    from headstart.fileio import _lock_file

    lock = _lock_file(tmp_path / "run")
    lock.parent.mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen(["sleep", "60"])  # a live process that holds the lock
    try:
        lock.write_text(f"{other.pid} {tmp_path / 'run'}")
        args = ["fit", str(shapes_dir), "--model", f"file:{tiny_weights}", "--arch", "timm:test_efficientnet",
                "--out", str(tmp_path / "run"), "--strategy", "linear-probe"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"another headstart process (pid {other.pid})" in err, err
        assert not (tmp_path / "run").exists()
    finally:
        other.kill()
        other.wait()
    assert main(args + ["--quiet"]) == 0  # a lock left by a process that died is taken over
    assert not lock.exists() and os.listdir(tmp_path) == ["run"]  # let go when the run is written; nothing beside it


@pytest.mark.parametrize("edit, field", [
    (lambda i: i.pop("classes"), "classes"), (lambda i: i.update(classes="circle"), "classes"),
    (lambda i: i["card"].pop("architecture"), "card"), (lambda i: i["head"].update(kind="deep"), "head.kind"),
    (lambda i: i["card"]["preprocessing"].update(crop=0), "card.preprocessing.crop"),
])
def test_an_edited_run_record_is_one_line_naming_the_field(edit, field, tiny_run, shapes_test_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    info = json.loads((run / RUN_FILE).read_text())
    edit(info)
    (run / RUN_FILE).write_text(json.dumps(info))
    for args in (["evaluate", run, shapes_test_dir], ["export", run, "--out", tmp_path / "x.onnx"]):
        assert main([str(a) for a in args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and RUN_FILE in err and f"'{field}" in err, err


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert main(["export", str(tiny_run), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.pop("classes"), "'classes' is a required property"),
    (lambda m: m["preprocessing"].update(crop=0), "'preprocessing.crop'"),
    (lambda m: m.update(classes=m["classes"][:-1]), "names 2 classes but the model's output"),
])
def test_edited_export_metadata_is_one_line(edit, words, exported, shapes_test_dir, tmp_path, capsys):
    import onnx

    from headstart.onnxio import METADATA_KEY

    model = onnx.load(str(exported))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(entry.value)
    edit(meta)
    entry.value = json.dumps(meta)
    onnx.save(model, str(tmp_path / "edited.onnx"))
    image = sorted(shapes_test_dir.rglob("*.png"))[0]
    assert main(["predict", str(tmp_path / "edited.onnx"), str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "edited.onnx" in err and words in err, err


def test_a_run_whose_architecture_was_edited_names_the_run_and_the_fix(tiny_run, shapes_test_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    info = json.loads((run / RUN_FILE).read_text())
    info["card"]["architecture"] = "timm:resnet18"
    (run / RUN_FILE).write_text(json.dumps(info))
    assert main(["evaluate", str(run), str(shapes_test_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run) in err and "edited" in err and "headstart fit" in err, err


@pytest.mark.parametrize("code", ["ENOSPC", "EACCES"])
@pytest.mark.parametrize("where", ["checkpoint", "run weights", "export", "report", "cache"])
def test_a_write_that_fails_during_the_work_is_one_line(where, code, tiny_weights, tiny_run, shapes_dir, tmp_path,
                                                        monkeypatch, capsys):
    """Fault injection at each write: the disk fills up (ENOSPC), or the folder stops letting this user write
    (EACCES), where the bytes go to disk, after the checks before the work passed. One line naming the file,
    exit 2, nothing half-written; the feature cache is the exception: the run goes on without it."""
    import errno
    import importlib
    import tempfile

    import safetensors.numpy
    import safetensors.torch

    from headstart import features, fileio

    out = tmp_path / "w"  # every output of the command is under it; the feature cache is not
    number = getattr(errno, code)

    def refusing(real, argument):
        def write(*args, **kw):
            path = kw.get(argument, args[1] if argument == "filename" and len(args) > 1 else None)
            if str(path).startswith(str(out)):
                raise OSError(number, os.strerror(number), str(path))
            return real(*args, **kw)
        return write

    if where in ("checkpoint", "run weights"):  # the weights (a linear probe's run is written from NumPy)
        monkeypatch.setattr(safetensors.torch, "save_file", refusing(safetensors.torch.save_file, "filename"))
        monkeypatch.setattr(safetensors.numpy, "save_file", refusing(safetensors.numpy.save_file, "filename"))
    else:  # the file itself (export, report), or every file of the cache entry
        monkeypatch.setattr(fileio.tempfile, "mkstemp", refusing(tempfile.mkstemp, "dir"))
    for module in ("headstart.rundir", "headstart.export", "headstart.advise"):  # the checks before the work pass
        monkeypatch.setattr(importlib.import_module(module), "check_writable", lambda *a, **k: None, raising=False)
    model = ["--model", f"file:{tiny_weights}", "--arch", "timm:test_efficientnet"]
    args, named = {
        "checkpoint": (["fit", shapes_dir, *model, "--out", out / "run", "--strategy", "finetune", "--epochs", "1"],
                       "checkpoint"),
        "run weights": (["fit", shapes_dir, *model, "--out", out / "run", "--strategy", "linear-probe"], WEIGHTS_FILE),
        "export": (["export", tiny_run, "--out", out / "m.onnx"], "m.onnx"),
        "report": (["advise", shapes_dir, "--models", "tiny", "--curve", "1,2", "--seeds", "1", "--no-scratch",
                    "--out", out / "advice.html"], "advice.html"),
        "cache": (["fit", shapes_dir, *model, "--out", tmp_path / "run", "--strategy", "linear-probe", "--cache-dir",
                   out / "cache"], "cache"),
    }[where]
    if where == "report":
        assert main(["models", "add", "tiny", "--from", str(tiny_weights), "--arch", "timm:test_efficientnet"]) == 0
    if where == "cache":
        monkeypatch.setattr(features, "reserve", refusing(features.reserve, "path"))
    code_ = main([str(a) for a in args + ["--quiet"]])
    err = capsys.readouterr().err.strip().splitlines()
    if where == "cache":
        assert code_ == 0 and (tmp_path / "run" / WEIGHTS_FILE).is_file(), err
        assert any("could not write the feature cache entry" in line for line in err), err
        return
    errors = [line for line in err if line.startswith("error:")]  # (a warning may come first: the body's cache)
    assert code_ == 2 and errors == err[-1:] and named in err[-1] and ".tmp" not in err[-1], err
    assert ("no space left" if code == "ENOSPC" else "cannot write") in err[-1], err
    assert code == "EACCES" or "it needs about" in err[-1], err  # roughly how much space
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not left, left  # nothing half-written
