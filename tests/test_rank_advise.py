"""`headstart rank` and `headstart advise` end to end, on small data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import headstart
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.zoo import get_card

from conftest import make_image_folder

RANK_KEYS = {"model", "logme", "leep", "nce", "hscore", "knn", "rank", "extract_seconds", "score_seconds"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("rank") / "data", per_class=8, seed=11, size=40)


def test_rank_two_cards_and_reuse_the_cache(shapes, capsys):
    args = ["rank", str(shapes), "--models", "efficientnet_lite0,mobilenet_v2", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [set(r) >= RANK_KEYS for r in rows] == [True, True]
    assert rows[0]["logme"] >= rows[1]["logme"] and [r["rank"] for r in rows] == [1, 2]
    mobile = next(r for r in rows if r["model"] == "mobilenet_v2")
    lite = next(r for r in rows if r["model"] == "efficientnet_lite0")
    assert mobile["leep"] is None and "no source-task head" in mobile["note"]
    assert lite["leep"] < 0 and lite["nce"] <= 0 and 0 <= lite["knn"] <= 1
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert all(r["cache_hit"] for r in again)
    assert [r["logme"] for r in again] == [r["logme"] for r in rows]
    assert main(["rank", str(shapes), "--models", "mobilenet_v2,efficientnet_lite0", "--metric", "knn"]) == 0
    table = capsys.readouterr().out
    assert "sorted by knn" in table and "no source-task head" in table


def test_rank_mistakes(shapes, tmp_path, capsys):
    assert main(["rank", str(shapes), "--metric", "vibes"]) == 2
    assert "--metric must be one of" in capsys.readouterr().err
    assert main(["rank", str(shapes), "--models", "resnet9000"]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err
    lonely = make_image_folder(tmp_path / "lonely", per_class=3, classes=("a", "b"), size=32)
    for f in sorted((lonely / "b").iterdir())[1:]:
        f.unlink()
    r = headstart.rank_models(lonely, ["mobilenet_v2"])
    assert r["models"][0]["knn"] is None and any("class 'b' has only 1" in n for n in r["notes"])
    assert main(["rank", str(lonely), "--models", "mobilenet_v2", "--metric", "knn"]) == 2
    assert "class 'b' has only 1" in capsys.readouterr().err


def test_models_of_another_modality_are_skipped_or_refused(shapes):
    card = get_card("mobilenet_v2")
    text = dataclasses.replace(card, name="pretend_text", modality="text")
    r = headstart.rank_models(shapes, [text, card])
    assert [m["model"] for m in r["models"]] == ["mobilenet_v2"] and "pretend_text skipped" in r["notes"][0]
    with pytest.raises(HeadstartError, match=r"none of the models given \(.*\) reads images"):
        headstart.rank_models(shapes, [text])


def test_advise_report(shapes, tiny_model, tmp_path):
    card = get_card(tiny_model["model"], arch=tiny_model["arch"])
    r = headstart.advise(shapes, [card, "mobilenet_v2"], curve=[1, 2, 20], seeds=2, scratch_size=32,
                         scratch_steps=10, out=tmp_path / "report.html")
    assert {"recommended_model", "recommended_strategy", "transfer_gain", "learning_curve", "ranking"} <= set(r)
    assert r["recommended_model"] == r["ranking"][0]["model"]
    # what fit --strategy auto chose, with its measurements (trials are off in tests: the budget is 0)
    assert r["recommended_strategy"] == "linear-probe" and r["strategy_reason"].startswith("auto: measured on")
    assert r["strategy_measurements"]["chosen"] == "linear-probe" and "no trials (--budget 0)" in r["strategy_reason"]
    # the gain: the probe's out-of-fold predictions on auto's 3 folds against the better way without transfer
    # trained on the same folds, on every image (each class of 8 leaves 5 or 6 to a fold's training part)
    g = r["gain_measured"]
    assert g["examples"] == 24 and g["folds"] == 3 and g["per_class"] == r["gain_at_per_class"] == 5
    assert set(g["balanced_accuracy"]) == {"transfer", "scratch", "pixels"}
    assert r["gain_note"].startswith("balanced accuracy of linear-probe against ") and "on 24 images" in r["gain_note"]
    accs = g["balanced_accuracy"]
    assert r["transfer_gain"] == pytest.approx(accs["transfer"] - max(accs["scratch"], accs["pixels"]), abs=1e-3)
    assert 0 <= r["gain_spread"] <= 1
    assert [row["per_class"] for row in r["learning_curve"]] == [1, 2]
    assert any("20" in n and "more images than DATA holds" in n for n in r["notes"])
    for row in r["learning_curve"]:
        for kind in ("transfer", "scratch", "pixels"):
            assert len(row[kind]["runs"]) == 2 and 0 <= row[kind]["mean"] <= 1
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 3 and "Should you transfer here?" in page and "<script" not in page
    assert "Measured at your size" in page and f"{100 * accs['transfer']:.1f}%" in page
    import re

    assert not re.search(r"""(src|href)=["'](?!#|data:)""", page)  # self-contained: in-page or data: only
    assert len(r["confusion"]["matrix"]) == 3


def test_advise_measures_the_gain_where_the_recommended_strategy_was_scored(shapes, tiny_model, tmp_path, monkeypatch,
                                                                           capsys):
    """A body strategy that won auto's trials on one fold only: the gain stated is the paired difference on
    that fold's examples; the probe's gain on every example is given beside it, and weighs in the verdict."""
    import headstart.classify.fit as classify_fit

    card = get_card(tiny_model["model"], arch=tiny_model["arch"])
    real_fit = classify_fit.fit_classifier
    seen = {}

    def measured(data, model, out, o, measure_only=False, curve=None):  # auto's measurement as if finetune had won on fold 1
        assert measure_only is True and o.train.strategy == "auto"
        m = real_fit(data, model, out, o, measure_only=True, curve=curve)
        rec = np.full(len(m.labels), -1)
        first = m.folds[0][1]
        rec[first] = m.labels[first]  # right on every example it was scored on
        m.predictions["finetune"], m.chosen = rec, "finetune"
        seen["scored"] = first
        return m

    monkeypatch.setattr(classify_fit, "fit_classifier", measured)
    r = headstart.advise(shapes, [card], curve=[1], seeds=1, scratch_size=32, scratch_steps=5, out=tmp_path / "a.html")
    g = r["gain_measured"]
    assert r["recommended_strategy"] == "finetune" and "--strategy finetune" in r["recommended_command"]
    assert g["examples"] == len(seen["scored"]) and g["folds"] == 1 and g["balanced_accuracy"]["transfer"] == 1.0
    accs = g["balanced_accuracy"]
    assert r["transfer_gain"] == pytest.approx(1.0 - max(accs["scratch"], accs["pixels"]), abs=1e-3)
    assert f"on {len(seen['scored'])} images" in r["gain_note"] and r["gain_note"].startswith("balanced accuracy of finetune")
    err = capsys.readouterr().err
    assert "on auto's 3 folds: 2 linear probes, 4 trainings from scratch" in err  # 1 on the curve, 3 folds
    pg = r["probe_gain"]
    assert pg["examples"] == 24 and set(pg["balanced_accuracy"]) == {"linear-probe", "scratch", "pixels"}
    pa = pg["balanced_accuracy"]
    assert pg["gain"] == pytest.approx(pa["linear-probe"] - max(pa["scratch"], pa["pixels"]), abs=1e-3)
    assert r["verdict"] == _advise_module()._verdict(r["transfer_gain"], r["gain_spread"], pg)


def test_the_verdict_weighs_the_recommended_strategy_and_the_probe_on_every_example():
    verdict = _advise_module()._verdict
    assert verdict(0.10, 0.05, None) == "transfer"
    assert verdict(0.03, 0.05, None).startswith("no clear gain") and verdict(-0.1, 0.05, None) == "train without transfer"
    probe = {"gain": 0.09, "spread": 0.03}  # the probe, on three times the examples, clearly ahead
    assert verdict(0.07, 0.08, probe) == "transfer"
    assert verdict(-0.10, 0.05, probe).startswith("no clear gain")  # the two disagree
    assert verdict(-0.10, 0.05, {"gain": -0.1, "spread": 0.03}) == "train without transfer"
    assert verdict(-0.10, 0.05, {"gain": 0.0, "spread": 0.03}).startswith("no clear gain")


def test_measure_only_returns_auto_s_measurements_and_writes_no_run(shapes, tiny_model, tmp_path):
    from headstart.classify.prepare import read_samples

    m = headstart.fit(shapes, model=tiny_model["model"], arch=tiny_model["arch"], out=tmp_path / "run",
                      measure_only=True)
    assert m.chosen == "linear-probe" and m.record["chosen"] == "linear-probe" and m.reason.startswith("auto: measured")
    assert len(m.folds) == 3 and np.array_equal(np.sort(np.concatenate([te for _, te in m.folds])), np.arange(24))
    probe = m.predictions["linear-probe"]
    assert len(probe) == 24 and (probe >= 0).all() and np.array_equal(m.labels, read_samples(shapes).labels)
    assert not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(HeadstartError, match="measure_only applies to --strategy auto"):
        headstart.fit(shapes, model=tiny_model["model"], arch=tiny_model["arch"], out=tmp_path / "run",
                      strategy="linear-probe", measure_only=True)


def test_advise_cli_json_without_scratch(shapes, tmp_path, capsys):
    code = main(["advise", str(shapes), "--models", "mobilenet_v2", "--no-scratch", "--seeds", "1", "--curve", "1,3",
                 "--out", str(tmp_path / "a.html"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert code == 0 and r["recommended_model"] == "mobilenet_v2" and (tmp_path / "a.html").is_file()
    assert set(r["gain_measured"]["balanced_accuracy"]) == {"transfer", "pixels"}  # no scratch: pixels alone
    assert all(row["scratch"]["mean"] is None for row in r["learning_curve"])
    assert main(["advise", str(shapes), "--models", "mobilenet_v2", "--no-scratch", "--seeds", "1", "--curve", "1",
                 "--out", str(tmp_path / "b.html")]) == 0
    text = capsys.readouterr().out
    assert "points over no transfer: balanced accuracy of linear-probe against logistic regression on pixels" in text
    assert "  measured  balanced accuracy at 5 per class on 24 images: linear-probe " in text and ", pixels " in text
    assert main(["advise", str(shapes), "--curve", "one,two"]) == 2
    assert "--curve takes numbers" in capsys.readouterr().err


def test_advise_needs_two_images_per_class(tmp_path, capsys):
    data = make_image_folder(tmp_path / "d", per_class=3, classes=("a", "b"), size=32)
    for f in sorted((data / "a").iterdir())[1:]:
        f.unlink()
    assert main(["advise", str(data), "--models", "mobilenet_v2"]) == 2
    assert "class 'a' has a single image" in capsys.readouterr().err


def test_cached_scores_are_reused_and_damaged_ones_recomputed(shapes, tmp_path):
    first = headstart.rank_models(shapes, ["mobilenet_v2"], cache_dir=tmp_path / "c")["models"][0]
    files = list((tmp_path / "c").rglob("scores-*.json"))
    assert len(files) == 1
    files[0].write_text("{damaged")
    again = headstart.rank_models(shapes, ["mobilenet_v2"], cache_dir=tmp_path / "c")["models"][0]
    assert again["logme"] == first["logme"] and again["score_seconds"] > 0
    third = headstart.rank_models(shapes, ["mobilenet_v2"], cache_dir=tmp_path / "c")["models"][0]
    assert third["logme"] == first["logme"] and third["score_seconds"] < again["score_seconds"]


def test_advise_subsamples_a_large_held_out_part_and_says_so(shapes, tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("headstart.advise")
    monkeypatch.setattr(module, "MAX_TEST_PER_CLASS", 1)
    r = module.advise(shapes, models=["mobilenet_v2"], scratch=False, curve=[1], seeds=1, out=tmp_path / "a.html")
    assert any("subsampled to 1 images per class" in n for n in r["notes"])


def test_scratch_runs_are_reproducible_and_the_same_when_run_at_once(shapes, tiny_model):
    """advise trains its from-scratch baselines in memory, several at once on a CPU: each run's
    result depends on its seed and data only, not on what runs beside it."""
    import numpy as np
    import torch

    module = _advise_module()
    from headstart import baselines
    from headstart.classify.prepare import read_samples

    card = get_card(tiny_model["model"], arch=tiny_model["arch"])
    samples = read_samples(shapes)
    y, k = samples.labels, len(samples.classes)
    pre = dataclasses.replace(card.preprocessing, crop=32, resize=32)
    jobs = {}
    for s in (0, 1):
        pool, test = module._split(y, s, 0.3, 100)
        jobs[(s, 2)] = (module._take(y, pool, 2, s), test, s)
    images = baselines.ScratchImages(samples.paths, np.concatenate([j[0] for j in jobs.values()]),
                                  np.concatenate([j[1] for j in jobs.values()]), pre)

    def run(job):
        return baselines.scratch(card, images, y, job[0], job[1], job[2], 12, k, torch.device("cpu"))

    one = baselines.run_all(jobs, run, 1, 1, lambda n: None)
    both = baselines.run_all(jobs, run, 2, 1, lambda n: None)
    assert one.keys() == both.keys() and all(np.array_equal(one[j], both[j]) for j in jobs)
    assert all(len(one[j]) == len(jobs[j][1]) and set(one[j]) <= set(range(k)) for j in jobs)  # a prediction each
    assert baselines.scratch_schedule(10, 200) == (10, 1, 100)  # 1 per class of 10 classes: 100 epochs of 1 step
    assert baselines.scratch_schedule(70, 200) == (16, 4, 50)
    assert baselines.parallelism(12, torch.device("cuda")) == (1, torch.get_num_threads())


def _advise_module():
    """headstart.advise the module (headstart.advise, the attribute, stays the function)."""
    import sys

    assert callable(headstart.advise)  # imports the module, and keeps the function as the attribute
    return sys.modules["headstart.advise"]


def test_advise_says_how_long_before_and_after(shapes, tmp_path, capsys):
    r = headstart.advise(shapes, ["mobilenet_v2"], curve=[1, 6], seeds=1, scratch_size=32, scratch_steps=5,
                         cache_dir=tmp_path / "cache")
    err = capsys.readouterr().err
    assert "without cached features for DATA: extracting them takes about" in err
    # 10 epochs at least: 10 steps of 3 images and 10 of 16 (of 18) on the curve; 10 of 16 in each of auto's
    # 3 folds, where the recommended strategy (the probe: trials are off in tests) was scored
    assert ("and the ways without transfer on auto's 3 folds: 2 linear probes, 5 trainings from scratch (50 steps "
            "at") in err
    assert "; about " in err
    assert "advise: took " in err and "estimated" in err
    # 6 per class is all of split 0's pool here: the confusion matrix is that curve point's probe
    row = r["learning_curve"][-1]
    assert r["confusion"]["accuracy"] == pytest.approx(row["transfer"]["runs"][0])


def test_a_failing_scratch_run_stops_the_others():
    import time

    from headstart import baselines

    def fn(job):
        if job == "bad":
            time.sleep(0.05)
            raise ValueError("boom")
        while not baselines.STOP.is_set():  # a long run: stops at its next step
            time.sleep(0.01)
        raise HeadstartError("stopped")

    with pytest.raises(ValueError, match="boom"):
        baselines.run_all({1: "long", 2: "bad", 3: "long"}, fn, 2, 1, lambda n: None)
    assert not baselines.STOP.is_set()
