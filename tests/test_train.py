"""Runs that train the body: phases, frozen parts, resume after SIGKILL, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import headstart
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.run import RUN_FILE, WEIGHTS_FILE
from headstart.surgery import depth_groups, split
from headstart.zoo import get_card, load_network

from conftest import make_image_folder

EXE = str(Path(sys.executable).parent / "headstart")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes x 10 images: 24 train / 6 validation."""
    return make_image_folder(tmp_path_factory.mktemp("ft") / "data", per_class=10, seed=3, size=56)


@pytest.fixture()
def tiny(tiny_model):
    return dict(model=tiny_model["model"], arch=tiny_model["arch"])


def test_finetune_run(data, tiny, tmp_path):
    run = headstart.fit(data, out=tmp_path / "run", strategy="finetune", epochs=2, batch_size=8, **tiny)
    m = run.metrics
    assert m["strategy"] == "finetune" and m["strategy_reason"] == "chosen with --strategy finetune"
    assert m["epochs_run"] == 2 and m["images_per_second"] > 0 and m["device"] == "cpu"
    assert [p["trainable_groups"] for p in m["phases"]] == [6] and not m["phases"][0]["from_cache"]
    for h in m["history"]:
        assert {"train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy"} <= set(h)
    assert m["n_train"] == 24 and m["n_val"] == 6
    info = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert info["status"] == "finished" and info["config"]["strategy"] == "finetune"
    assert not (tmp_path / "run" / "checkpoint").exists()
    card = get_card(tiny["model"], arch=tiny["arch"])
    assert run.body_id != card.fingerprint()  # a trained body gets features cached apart from the card's
    loaded = headstart.load(tmp_path / "run")
    res = headstart.evaluate(loaded, data)
    assert res["n"] == 30 and 0 <= res["accuracy"] <= 1


def _global_body_count(monkeypatch):
    """Images through any test_efficientnet body, counted outside headstart's own bookkeeping."""
    from timm.models.efficientnet import EfficientNet

    seen = {"images": 0}

    def hook(module, args, output):
        if isinstance(module, EfficientNet):
            seen["images"] += int(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    return seen, handle


@pytest.mark.parametrize("strategy", ["lp-ft", "gradual"])
def test_frozen_phases_cost_no_body_forward_pass(data, tiny, tmp_path, monkeypatch, strategy):
    cache = tmp_path / "cache"
    first = headstart.fit(data, out=tmp_path / "a", strategy=strategy, epochs=3, batch_size=8, cache_dir=cache, **tiny)
    assert first.metrics["phases"][0]["from_cache"] and first.metrics["phases"][0]["body_forward_images"] == 0
    assert first.metrics["cache_hit"] is False  # the first extraction
    seen, handle = _global_body_count(monkeypatch)
    try:
        second = headstart.fit(data, out=tmp_path / "b", strategy=strategy, epochs=3, batch_size=8, cache_dir=cache,
                               **tiny)
    finally:
        handle.remove()
    phases = second.metrics["phases"]
    assert second.metrics["cache_hit"] is True
    assert phases[0]["body_forward_images"] == 0
    assert all(p["body_forward_images"] > 0 for p in phases[1:])
    # every body forward pass of the second run belongs to a phase that trains the body
    assert seen["images"] == sum(p["body_forward_images"] for p in phases)
    if strategy == "gradual":
        assert [p["trainable_groups"] for p in phases] == list(range(len(phases)))


def test_partial_trains_only_the_top_group_and_frozen_batchnorm_keeps_its_statistics(data, tiny, tmp_path):
    card = get_card(tiny["model"], arch=tiny["arch"])
    start = split(load_network(card), card.classifier)[0].state_dict()
    groups = depth_groups(split(load_network(card), card.classifier)[0])
    top = {n.rsplit(".", 1)[0] for n in groups[-1]}
    for bn, top_stats_move in (("frozen", False), ("train", True)):
        run = headstart.fit(data, out=tmp_path / bn, strategy="partial:1", epochs=2, batch_size=8, bn=bn,
                            val_split=0.0, **tiny)
        end = run.model.body.state_dict()
        for name, before in start.items():
            module = name.rsplit(".", 1)[0]
            moved = not torch.equal(before, end[name])
            if name.endswith(("running_mean", "running_var")):
                assert moved == (module in top and top_stats_move), (bn, name)  # frozen groups: never
            elif module not in top and not name.endswith("num_batches_tracked"):
                assert not moved, (bn, name)  # frozen weights never change
        assert any(not torch.equal(start[f"{m}.weight"], end[f"{m}.weight"]) for m in top if f"{m}.weight" in start)


def test_partial_beyond_the_groups_is_a_clear_error(data, tiny_model, tmp_path, capsys):
    code = main(["fit", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--out",
                 str(tmp_path / "r"), "--strategy", "partial:40"])
    err = capsys.readouterr().err
    assert code == 2 and "has 6 depth groups; choose partial:1 to partial:6" in err and err.count("\n") == 1


def _fit_cmd(data, tiny_model, out, *extra):
    return [EXE, "fit", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--out", str(out),
            "--strategy", "finetune", "--batch-size", "8", "--quiet", *extra]


def test_resume_after_sigkill_mid_epoch_ends_with_the_same_weights(tiny_model, tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=80, seed=5, size=64)  # ~1.5 s per epoch
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ref = subprocess.run(_fit_cmd(data, tiny_model, tmp_path / "ref", "--epochs", "3"), env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_fit_cmd(data, tiny_model, out, "--epochs", "3"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoint" / "state.json"
    t0 = time.time()
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        assert proc.poll() is None and time.time() - t0 < 300, "the run ended before its first checkpoint"
        time.sleep(0.02)
    time.sleep(0.3)  # inside the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())
    assert saved["epoch"] == 1, "the kill should land in the second epoch"
    assert json.loads((out / RUN_FILE).read_text())["status"] == "training"
    with pytest.raises(HeadstartError, match="has not finished.*--resume"):
        headstart.load(out)
    resumed = subprocess.run([EXE, "fit", "--resume", str(out), "--quiet"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "ref" / WEIGHTS_FILE)), load_file(str(out / WEIGHTS_FILE))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    mb = json.loads((out / "metrics.json").read_text())
    assert [h["train_loss"] for h in ma["history"]] == [h["train_loss"] for h in mb["history"]]


def test_a_run_stopped_inside_lp_ft_s_second_phase_resumes_to_the_same_weights(data, tiny, tmp_path):
    """lp-ft: the head on cached features, then the whole network; stopped after the first epoch of the
    second phase (the SIGKILL test above kills a one-phase run), resumed, the same weights and losses."""
    from conftest import stopped_after_checkpoint

    kw = dict(strategy="lp-ft", epochs=3, batch_size=8, augment="none", num_workers=0, **tiny)
    straight = headstart.fit(data, out=tmp_path / "straight", **kw)
    with stopped_after_checkpoint(lambda state: state.phase == 1 and state.epoch == 1):  # inside the second phase
        headstart.fit(data, out=tmp_path / "stopped", **kw)
    saved = json.loads((tmp_path / "stopped" / "checkpoint" / "state.json").read_text())
    assert (saved["phase"], saved["epoch"]) == (1, 1)
    resumed = headstart.resume(tmp_path / "stopped")
    a, b = load_file(str(tmp_path / "straight" / WEIGHTS_FILE)), load_file(str(tmp_path / "stopped" / WEIGHTS_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in straight.metrics["history"]] == [h["train_loss"] for h in resumed.metrics["history"]]


def test_resume_refusals(data, tiny, tiny_model, tmp_path, capsys):
    finished = headstart.fit(data, out=tmp_path / "done", strategy="finetune", epochs=1, batch_size=8, **tiny)
    with pytest.raises(HeadstartError, match="already finished"):
        headstart.resume(finished.dir)
    with pytest.raises(HeadstartError, match="is not a headstart run"):
        headstart.resume(tmp_path)
    # an unfinished run: stopped by a NaN in its fine-tuning phase, after lp-ft's linear probe
    code = main(["fit", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--out",
                 str(tmp_path / "nan"), "--strategy", "lp-ft", "--lr", "1e30", "--epochs", "2", "--batch-size", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) >= 1 and "lower --lr (try --lr 1e+29)" in err[-1] and "intact" in err[-1]
    state = json.loads((tmp_path / "nan" / "checkpoint" / "state.json").read_text())
    assert state["phase"] == 1  # the linear probe's checkpoint survived
    other = make_image_folder(tmp_path / "other", per_class=10, seed=9, size=56)
    with pytest.raises(HeadstartError, match=r"DATA .* \(the run used"):
        headstart.resume(tmp_path / "nan", data=other)
    with pytest.raises(HeadstartError, match=r"--model efficientnet_lite0 \(the run used"):
        headstart.resume(tmp_path / "nan", model="efficientnet_lite0")
    code = main(["fit", "--resume", str(tmp_path / "nan"), "--epochs", "5"])
    assert code == 2 and "--epochs 5 (the run used 2)" in capsys.readouterr().err
    code = main(["fit", "--resume", str(tmp_path / "nan"), "--head", "linear", "--lr", "1e30"])  # the run's own
    err = capsys.readouterr().err
    assert code == 2 and "refuses" not in err and "the loss became" in err  # it resumed, and diverged again
    code = main(["fit", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--out",
                 str(tmp_path / "nan")])
    assert code == 2 and "holds an unfinished run" in capsys.readouterr().err


def test_two_processes_match_one_with_the_same_global_batch(data, tiny_model, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    common = ["--augment", "none", "--no-class-balance", "--epochs", "2", "--workers", "0"]
    one = subprocess.run(_fit_cmd(data, tiny_model, tmp_path / "one", *common), env=env, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_fit_cmd(data, tiny_model, tmp_path / "two", *common, "--processes", "2", "--json"),
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["processes"] == 2
    a, b = load_file(str(tmp_path / "one" / WEIGHTS_FILE)), load_file(str(tmp_path / "two" / WEIGHTS_FILE))
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    moved = max(float((a[k].float() - v.float()).abs().max()) for k, v in
                split(load_network(get_card(tiny_model["model"], arch=tiny_model["arch"])), "classifier")[0]
                .state_dict().items() for k in [f"body.{k}"] if k in a)
    assert worst < 1e-5 and moved > 100 * worst, (worst, moved)  # the same training, up to float rounding


def test_a_head_on_cached_features_is_fitted_once_under_several_processes(data, tiny_model, tmp_path):
    """--processes 2 with the linear probe: the first process extracts, fits and writes, once; the other
    has nothing to do (before, each extracted the features and wrote the run)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    two = subprocess.run([EXE, "fit", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--out",
                          str(tmp_path / "two"), "--strategy", "linear-probe", "--processes", "2", "--json",
                          "--cache-dir", str(tmp_path / "cache")], env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["strategy"] == "linear-probe"  # one result, printed once
    one = headstart.fit(data, out=tmp_path / "one", strategy="linear-probe", cache_dir=tmp_path / "cache",
                        **{k: tiny_model[k] for k in ("model", "arch")})
    assert one.metrics["cache_hit"]  # the features the first process cached
    a, b = load_file(str(tmp_path / "one" / WEIGHTS_FILE)), load_file(str(tmp_path / "two" / WEIGHTS_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tracker_tensorboard_writes_events(data, tiny, tmp_path):
    pytest.importorskip("tensorboard")
    headstart.fit(data, out=tmp_path / "tb", strategy="finetune", epochs=1, batch_size=8, tracker="tensorboard", **tiny)
    assert list((tmp_path / "tb" / "logs").rglob("events.out.tfevents.*"))


def test_tracker_mlflow_logs_metrics(data, tiny, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    headstart.fit(data, out=tmp_path / "ml", strategy="finetune", epochs=1, batch_size=8, tracker="mlflow", **tiny)
    logged = {p.name for p in (tmp_path / "mlruns").rglob("metrics/*")}
    assert {"train_loss", "val_accuracy", "val_loss"} <= logged


def test_tracker_that_cannot_start_is_one_line_and_leaves_nothing(data, tiny, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://x")
    with pytest.raises(HeadstartError, match="--tracker mlflow could not start"):
        headstart.fit(data, out=tmp_path / "bad", strategy="finetune", epochs=1, batch_size=8, tracker="mlflow", **tiny)
    assert not (tmp_path / "bad").exists()


def test_out_of_memory_names_a_batch_size(data, tiny, tmp_path, monkeypatch):
    from headstart.engine import Engine

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Engine, "train_epoch", oom)
    with pytest.raises(HeadstartError, match="--batch-size 4 --accumulate 2"):
        headstart.fit(data, out=tmp_path / "oom", strategy="finetune", epochs=1, batch_size=8, **tiny)


def test_paired_difference_and_its_spread():
    from headstart.auto import paired

    y = np.array([0, 0, 0, 0, 1, 1])
    ref = np.array([0, 0, 1, 1, 1, 1])  # balanced accuracy 0.5 * (2/4 + 2/2) = 0.75
    same = paired(ref, ref, y)
    assert same == (0.0, 0.0)
    better = np.array([0, 0, 0, 1, 1, 1])  # one more of class 0 right: +1/8
    diff, spread = paired(better, ref, y)
    assert diff == pytest.approx(0.125) and spread == pytest.approx(0.125)  # one example: not more than its spread
    best = np.array([0, 0, 0, 0, 1, 1])
    diff, spread = paired(best, ref, y)
    assert diff == pytest.approx(0.25) and spread == pytest.approx(np.sqrt(2) * 0.125)  # two: ahead
    worse = np.array([0, 0, 0, 0, 0, 1])  # two more right in class 0, one wrong in class 1 (weight 1/4)
    diff, spread = paired(worse, ref, y)
    assert diff == pytest.approx(0.25 - 0.25) and spread == pytest.approx(np.sqrt(2 * 0.125**2 + 0.25**2))


def test_folds_are_stratified_disjoint_and_cover_every_example():
    from headstart.auto import folds

    y = np.array([0] * 5 + [1] * 3 + [2] * 4 + [3] * 7)
    for k in (2, 3):
        parts = folds(y, k, seed=0)
        scored = [s for _, s in parts]
        assert np.array_equal(np.sort(np.concatenate(scored)), np.arange(len(y)))  # each example scored once
        for train, score in parts:
            assert not set(train) & set(score) and len(train) + len(score) == len(y)
        for c in range(4):  # every class dealt out evenly
            n = [int((y[s] == c).sum()) for s in scored]
            assert max(n) - min(n) <= 1
        assert max(map(len, scored)) - min(map(len, scored)) <= 1
    assert not np.array_equal(folds(y, 3, seed=1)[0][1], folds(y, 3, seed=0)[0][1])


def test_a_trial_is_scored_fold_by_fold_and_stops_when_it_cannot_win_or_would_pass_its_budget():
    import time as _time

    from headstart.auto import Trial

    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    first, second = np.arange(4), np.arange(4, 8)
    ref = np.array([0, 1, 1, 0, 0, 1, 1, 0])  # wrong on 4 of 8
    t = Trial("finetune", "linear-probe", ref, y, budget=100.0)
    assert t.start_fold(first) and t(1, y[first], True) and t(2, y[first], True)
    t.end_fold()
    assert t.ahead and t.record()["scored"] == 4  # on the fold scored so far
    assert t.start_fold(second) and t(3, y[second], True)
    t.end_fold()
    rec = t.record()
    assert t.ahead and rec["outcome"] == "won" and rec["val_balanced_accuracy"] == 1.0 and rec["difference"] == 0.5
    assert rec["epochs"] == [2, 1] and rec["folds_run"] == 2

    t = Trial("finetune", "linear-probe", ref, y, budget=100.0)  # worse than ref on the first fold
    assert t.start_fold(first) and t(1, 1 - y[first], True)
    t.end_fold()
    assert not t.start_fold(second) and "could no longer beat linear-probe" in t.stopped
    assert t.record()["outcome"] == "not ahead" and not t.ahead and t.record()["scored"] == 4

    t = Trial("lp-ft", "linear-probe", ref, y, budget=10.0, t0=_time.perf_counter() - 6.0)
    assert t.start_fold(first) and t(1, y[first], True) is False  # 6 s gone: another 6 s epoch passes 10
    assert "would pass the 10 s left" in t.stopped and t.record()["outcome"] == "stopped"  # no fold ran to its end
    assert (t.decided() == -1).all()  # what the stopped fold predicted is not a measurement

    t = Trial("lp-ft", "linear-probe", ref, y, budget=10.0, t0=_time.perf_counter() - 6.0)
    t.start_fold(first)
    t.pred[first] = y[first]
    t.end_fold()  # the first fold took 6 s: a second as long passes 10
    assert not t.start_fold(second) and "another would pass" in t.stopped
    rec = t.record()  # the first fold decides
    assert rec["outcome"] == "won" and rec["scored"] == 4 and rec["folds_run"] == 1


def test_no_trial_against_what_cannot_be_beaten_by_more_than_the_spread():
    from headstart.auto import can_win

    y = np.array([0, 0, 1, 1, 2, 2])
    assert not can_win(y, y) and not can_win(np.array([0, 0, 1, 1, 2, 0]), y)  # none or one wrong
    assert can_win(np.array([0, 1, 1, 1, 2, 0]), y)  # two wrong: a challenger right on both is ahead


@pytest.mark.auto_trials
def test_auto_measures_the_probe_and_the_trials_on_folds_and_keeps_the_probe(data, tiny, tmp_path, monkeypatch):
    import headstart.auto as auto

    monkeypatch.setattr(auto, "paired", lambda pred, ref, y: (0.0, 0.1))  # never ahead
    monkeypatch.setattr(auto, "can_win", lambda ref, y: True)  # (the probe may be right on all 30 tiny examples)
    monkeypatch.setattr(auto, "can_still_win", lambda *a: True)
    # a budget no busy machine runs out of (6 tiny runs of 2 epochs take ~25 s on 2 idle cores): every fold is scored
    run = headstart.fit(data, out=tmp_path / "auto", budget=300.0, epochs=2, batch_size=8, **tiny)
    m = run.metrics
    assert m["strategy"] == "linear-probe" and m["strategy_reason"].startswith("auto: measured on 30 examples in 3 folds")
    record = m["auto"]
    assert record["chosen"] == "linear-probe" and record["examples"] == 30 and record["budget_seconds"] == 300.0
    assert 0 <= record["probe"]["val_balanced_accuracy"] <= 1
    assert [t["strategy"] for t in record["trials"]] == ["finetune", "lp-ft"]
    for t in record["trials"]:
        assert t["outcome"] == "not ahead" and t["spread"] == 0.1 and t["folds_run"] == 3 and t["seconds"] >= 0
    assert "the probe is kept" in m["strategy_reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]  # no trial left behind
    assert json.loads((tmp_path / "auto" / RUN_FILE).read_text())["strategy"] == "linear-probe"
    assert m["n_val"] == 0  # the probe that is kept is fitted on every example


@pytest.mark.auto_trials
def test_a_trial_that_diverges_is_left_out_and_auto_keeps_the_probe(data, tiny, tmp_path, monkeypatch):
    import headstart.auto as auto
    from headstart.classify import task as train

    monkeypatch.setattr(auto, "can_win", lambda ref, y: True)
    monkeypatch.setattr(auto, "can_still_win", lambda *a: True)
    calls = []

    def nan_loss(self, model, batch):  # every body-training step: the loss is NaN
        calls.append(1)
        return torch.tensor(float("nan"), requires_grad=True), 1

    monkeypatch.setattr(train.ClassificationTask, "loss", nan_loss)
    run = headstart.fit(data, out=tmp_path / "auto", budget=300.0, epochs=2, batch_size=8, **tiny)
    m = run.metrics
    assert len(calls) == 2  # one step of each trial's first fold, then it is left out
    assert m["strategy"] == "linear-probe" and m["auto"]["chosen"] == "linear-probe"
    for t in m["auto"]["trials"]:
        assert t["outcome"] == "diverged" and "in fold 1, the loss became nan" in t["why"] and t["scored"] == 0
    assert "finetune diverged (in fold 1, the loss became nan" in m["strategy_reason"]
    assert "left out, lower --lr to measure it" in m["strategy_reason"]
    assert "cannot tell" not in m["strategy_reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]  # no trial left behind


@pytest.mark.auto_trials
def test_auto_trains_the_strategy_that_wins_in_full(data, tiny, tmp_path, monkeypatch):
    import headstart.auto as auto

    monkeypatch.setattr(auto, "paired", lambda pred, ref, y: (0.2, 0.1))  # every trial pulls ahead
    monkeypatch.setattr(auto, "can_win", lambda ref, y: True)
    monkeypatch.setattr(auto, "can_still_win", lambda *a: True)
    import headstart.surgery as surgery

    starts = []  # every run starts from the pretrained body, not from the one an earlier run trained
    sizes = []

    class Recorded(surgery.TransferModel):
        def __init__(self, body, head):
            starts.append(torch.cat([p.detach().flatten() for p in body.parameters()]).clone())
            super().__init__(body, head)

    monkeypatch.setattr(surgery, "TransferModel", Recorded)
    from headstart.classify import task as train

    init = train.ClassificationTask.__init__

    def recorded_init(self, card, samples, train_idx, val_idx, *a, **k):
        sizes.append((len(train_idx), len(val_idx)))
        init(self, card, samples, train_idx, val_idx, *a, **k)

    monkeypatch.setattr(train.ClassificationTask, "__init__", recorded_init)
    run = headstart.fit(data, out=tmp_path / "auto", epochs=2, batch_size=8, **tiny)
    assert len(starts) == 7 and all(torch.equal(starts[0], s) for s in starts)  # 2 trials x 3 folds, then the run
    assert sizes == [(20, 10)] * 6 + [(24, 6)]  # the folds, then the run's own split
    m = run.metrics
    assert [t["outcome"] for t in m["auto"]["trials"]] == ["won", "won"]
    assert m["strategy"] == "lp-ft" and m["auto"]["chosen"] == "lp-ft" and run.dir == tmp_path / "auto"
    assert m["epochs"] == 2 and m["n_train"] == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]
    on_disk = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert on_disk["auto"]["chosen"] == "lp-ft" and on_disk["strategy_reason"].startswith("auto: measured on 30")
    assert "lp-ft is kept" in on_disk["strategy_reason"]
    res = headstart.evaluate(headstart.load(tmp_path / "auto"), data)
    assert res["n"] == 30


@pytest.mark.auto_trials
def test_trials_are_compressed_to_their_share_of_the_budget(data, tiny, tmp_path, monkeypatch):
    import headstart.auto as auto

    monkeypatch.setattr(auto, "paired", lambda pred, ref, y: (0.2, 0.1))
    monkeypatch.setattr(auto, "can_win", lambda ref, y: True)
    monkeypatch.setattr(auto, "can_still_win", lambda *a: True)
    # an epoch on a fold "takes" 10 s, before a trial and after it (the measured time would replace the
    # estimate): a fold of the first trial gets 4 of its 8 epochs in the 55 s budget (an epoch's time is kept
    # for setting the run up); the second runs only with as many epochs as the first that it must beat, 4 if
    # at least 50 s are left after the real epochs (a second or two each), else it is not run
    monkeypatch.setattr(auto, "epoch_seconds", lambda *a: 10.0)
    monkeypatch.setattr(auto.Trial, "seconds_per_epoch", property(lambda self: 10.0))
    run = headstart.fit(data, out=tmp_path / "auto", epochs=8, budget=55, batch_size=8, **tiny)
    m = run.metrics
    first, second = m["auto"]["trials"]
    assert first["schedule_epochs"] == 4 and first["outcome"] == "won"
    if second["outcome"] == "not run":
        assert "fewer than the 4 of the trial it must beat" in second["why"] and m["strategy"] == "finetune"
    else:
        assert second["schedule_epochs"] == 4 and m["strategy"] == "lp-ft"
        assert "of its 8 epochs" not in m["strategy_reason"]
    assert m["strategy"] == m["auto"]["chosen"] and m["epochs"] == 8 and m["epochs_run"] >= 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]


def test_a_trial_gets_its_schedule_or_what_fits_with_its_set_up_and_no_less_than_its_rival():
    from headstart.auto import trial_epochs

    assert trial_epochs(60.0, 2.0, 15, None) == (15, None)  # 29 would fit
    assert trial_epochs(30.0, 2.0, 15, None) == (14, None)  # 15 fit, one epoch's time is kept for the set-up
    epochs, why = trial_epochs(3.0, 2.0, 15, None)
    assert epochs == 0 and "not one fits in the 3 s left" in why
    epochs, why = trial_epochs(20.0, 2.0, 15, 12)  # 9 fit, against a trial that had 12
    assert epochs == 0 and "only 9 of its 15 epochs" in why and "fewer than the 12" in why
    assert trial_epochs(20.0, 0.0, 15, 12) == (15, None)  # nothing known of an epoch's time: the whole schedule


def test_budget_is_checked_before_any_work(data, tiny_model, tmp_path, capsys):
    m = ["--model", tiny_model["model"], "--arch", tiny_model["arch"]]
    for args, message in ((["--budget", "-1"], "--budget must be >= 0 seconds"),
                          (["--budget", "30", "--strategy", "finetune"], "--budget applies to --strategy auto")):
        code = main(["fit", str(data), *m, "--out", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_lr_find(data, tiny_model, tmp_path, capsys):
    code = main(["lr-find", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--steps", "12",
                 "--batch-size", "8", "--plot", str(tmp_path / "lr.png"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert code == 0 and 1e-7 <= r["suggested_lr"] <= 1.0 and len(r["lrs"]) >= 5
    assert r["lrs"] == sorted(r["lrs"]) and (tmp_path / "lr.png").stat().st_size > 1000
    code = main(["lr-find", str(data), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--strategy",
                 "linear-probe"])
    assert code == 2 and "linear-probe has none" in capsys.readouterr().err


def _body_distance(run, start) -> float:
    end = run.model.body.state_dict()
    return sum(float((end[k].float() - v.float()).pow(2).sum()) for k, v in start.items() if v.is_floating_point())


def test_l2sp_keeps_the_body_near_its_pretrained_weights(data, tiny, tmp_path):
    card = get_card(tiny["model"], arch=tiny["arch"])
    start = split(load_network(card), card.classifier)[0].state_dict()
    common = dict(strategy="finetune", epochs=2, batch_size=8, lr=1e-2, augment="none", **tiny)
    free = headstart.fit(data, out=tmp_path / "free", **common)
    held = headstart.fit(data, out=tmp_path / "held", l2sp=10.0, **common)
    assert _body_distance(held, start) < 0.5 * _body_distance(free, start)


def test_gradient_accumulation_matches_the_larger_batch(data, tiny, tmp_path):
    # 24 training images: 3 batches of 8, or 6 of 4 accumulated in pairs
    common = dict(strategy="finetune", epochs=1, augment="none", class_balance=False, warmup=0.0, **tiny)
    big = headstart.fit(data, out=tmp_path / "big", batch_size=8, **common)
    acc = headstart.fit(data, out=tmp_path / "acc", batch_size=4, accumulate=2, **common)
    a, b = big.model.state_dict(), acc.model.state_dict()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-5, worst


def test_fits_in_one_process_may_change_precision(tmp_path):
    """Accelerate keeps one state per process; a second fit with another precision (bf16, then
    fp32, as a notebook comparing them does) gets an Accelerator of its own precision."""
    from headstart.engine import TrainConfig, make_accelerator

    def cfg(precision: str) -> TrainConfig:
        return TrainConfig(strategy="finetune", head={"kind": "linear"}, epochs=1, head_epochs=1, precision=precision)

    first = make_accelerator(cfg("bf16"), tmp_path / "a", None, cpu=True)
    assert first.mixed_precision == "bf16"
    second = make_accelerator(cfg("fp32"), tmp_path / "b", None, cpu=True)
    assert second.mixed_precision == "no"
