"""Learning from unlabelled examples on cached features (headstart.adapt, fit --unlabelled): the pieces
(balanced pseudo-labels, CORAL and its folding into the head), the methods on data made so that they must
help, auto's choice and its check, and runs that evaluate, predict and export as any other."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from headstart.adapt import adapt, balanced_labels, coral, domain_gap, whitening
from headstart.cli import main
from headstart.heads import HeadSpec
from headstart.probe import HeadTraining, balanced_accuracy, head_logits, train_head

LINEAR = HeadSpec("linear")


def blobs(n_per_class: int, k: int, seed: int, shift: float = 0.0, scale: float = 1.0, d: int = 16,
          apart: float = 1.2, nuisance: float = 0.0):
    """k Gaussian classes in d dimensions, their means `apart` (0.6: close enough for a few labels to mislead);
    `nuisance` > 0: 6 more features of that spread that say nothing of the class, as the largest directions of a
    network's features often do."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).normal(0, apart, (k, d))
    y = np.repeat(np.arange(k), n_per_class)
    x = means[y] + rng.normal(0, 1.0, (len(y), d))
    if nuisance:
        x = np.concatenate([x, rng.normal(0, nuisance, (len(y), 6))], 1)
    return ((x * scale + shift).astype(np.float32)), y


def test_balanced_labels_give_every_class_an_equal_share():
    p = np.random.default_rng(0).dirichlet(np.ones(4) * 0.3, size=200)
    p[:, 0] += 2.0  # a head that prefers class 0
    p /= p.sum(1, keepdims=True)
    q = balanced_labels(p)
    assert np.allclose(q.sum(1), 1.0)
    assert np.allclose(q.mean(0), 0.25, atol=1e-3)


def test_coral_moves_one_set_onto_the_others_mean_and_covariance_and_folds_into_the_head():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (400, 5)) @ rng.normal(0, 1, (5, 5))
    b = rng.normal(3, 2, (500, 5))
    fmap = coral(a, b)
    moved = fmap(a)
    assert np.allclose(moved.mean(0), b.mean(0), atol=1e-3)
    # the covariance moves toward b's (both estimates are regularised toward the identity: not all the way)
    assert np.linalg.norm(np.cov(moved.T) - np.cov(b.T)) < 0.6 * np.linalg.norm(np.cov(a.T) - np.cov(b.T))
    weights = {"fc.weight": rng.normal(0, 1, (3, 5)).astype(np.float32), "fc.bias": rng.normal(0, 1, 3).astype(np.float32)}
    folded = fmap.fold_into(weights)
    assert np.allclose(head_logits(LINEAR, folded, a.astype(np.float32)), head_logits(LINEAR, weights, moved), atol=1e-3)
    # self-training's space: centred, and every direction's variance brought toward one (regularised)
    white = whitening(b)
    assert np.allclose(white(b).mean(0), 0.0, atol=1e-4) and np.allclose(np.var(white(b), 0), 0.5, atol=0.1)
    both = fmap.then(white)  # CORAL, then the whitening: one map, folded into a head as any
    assert np.allclose(both(a), white(fmap(a)), atol=1e-4)


def test_self_training_helps_where_few_labels_mislead():
    # six labels a class and large features that say nothing of the class: the plain probe scores about 0.77;
    # self-training's whitening takes the nuisance's weight away (without it, 0.90 here)
    x, y = blobs(6, 4, seed=1, apart=1.0, nuisance=3.0)
    xu, _ = blobs(150, 4, seed=2, apart=1.0, nuisance=3.0)
    xt, yt = blobs(200, 4, seed=3, apart=1.0, nuisance=3.0)
    plain = train_head(LINEAR, x, y, None, None, 4, HeadTraining())
    a = adapt(LINEAR, x, y, xu, 4, HeadTraining(), "self-training", plain=plain)
    head = train_head(LINEAR, a.x, a.y, None, None, 4, HeadTraining(c=a.c))
    adapted = head_logits(LINEAR, a.feature_map.fold_into(head.weights), xt).argmax(1)  # the head reads raw features
    before, after = balanced_accuracy(plain.predict(xt), yt), balanced_accuracy(adapted, yt)
    assert a.method == "self-training" and a.record["pseudo_labelled"] == len(xu)
    assert after > before + 0.1, (before, after)
    mlp = HeadSpec("mlp", hidden=16)  # the whitening folds into an MLP head's first layer as well
    a = adapt(mlp, x, y, xu, 4, HeadTraining(), "self-training")
    head = train_head(mlp, a.x, a.y, None, None, 4, HeadTraining(c=a.c))
    assert np.allclose(head_logits(mlp, a.feature_map.fold_into(head.weights), xt), head.logits(a.feature_map(xt)),
                       atol=1e-3)


def test_auto_tells_a_shifted_domain_and_coral_reads_it():
    x, y = blobs(30, 3, seed=1)
    xu, yu = blobs(200, 3, seed=2, shift=4.0, scale=2.5)  # another camera: every feature moved and stretched
    assert domain_gap(x, xu, 0)["classifier_balanced_accuracy"] > 0.9
    assert domain_gap(x, blobs(200, 3, seed=5)[0], 0)["classifier_balanced_accuracy"] < 0.7
    plain = train_head(LINEAR, x, y, None, None, 3, HeadTraining())
    a = adapt(LINEAR, x, y, xu, 3, HeadTraining(), "auto", plain=plain)
    assert a.method != "none" and a.feature_map is not None and "another domain" in a.reason
    head = train_head(LINEAR, a.x, a.y, None, None, 3, HeadTraining(c=a.c))
    adapted = head_logits(LINEAR, a.feature_map.fold_into(head.weights), xu).argmax(1)
    assert balanced_accuracy(adapted, yu) > balanced_accuracy(plain.predict(xu), yu) + 0.1


def test_auto_keeps_the_plain_probe_when_the_labelled_folds_refuse(monkeypatch):
    from headstart import adapt as adapt_module

    x, y = blobs(12, 3, seed=1)
    xu, _ = blobs(100, 3, seed=2)
    monkeypatch.setattr(adapt_module, "_check", lambda *a, **k: {"folds": 3, "plain": 0.9, "adapted": 0.8})
    a = adapt(LINEAR, x, y, xu, 3, HeadTraining(), "auto")
    assert a.method == "none" and "U is not used" in a.reason and np.array_equal(a.y, y)


@pytest.fixture(scope="module")
def unlabelled_dir(tmp_path_factory, shapes_dir):
    from conftest import make_image_folder

    u = make_image_folder(tmp_path_factory.mktemp("u") / "u" / "site-b", per_class=5, seed=4)
    shutil.copy(shapes_dir / "circle" / "000.png", u / "copy-of-a-labelled-one.png")
    return u.parent


def test_fit_learns_from_unlabelled_images_and_the_run_is_like_any_other(tiny_model, shapes_dir, shapes_test_dir,
                                                                         unlabelled_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", str(shapes_dir), "--model", tiny_model["model"], "--arch", tiny_model["arch"], "--out",
                 str(out), "--unlabelled", str(unlabelled_dir), "--adapt", "self-training"]) == 0
    printed = capsys.readouterr()
    assert "1 example left out, the same as a labelled one" in printed.err
    assert "adapt     self-training (15 unlabelled images, 15 of them labelled by the head)" in printed.out
    info = json.loads((out / "headstart.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert info["adapt"]["method"] == "self-training" and info["adapt"]["unlabelled"]["used"] == 15
    assert metrics["adapt"]["unlabelled"]["duplicates_left_out"] == 1 and len(metrics["adapt"]["confidence"]["histogram"]) == 10
    assert info["strategy_reason"].startswith("auto: --unlabelled adapts the head")
    image = sorted(shapes_test_dir.rglob("*.png"))[0]
    for args in (["evaluate", out, shapes_test_dir], ["predict", out, image], ["export", out, "--out", tmp_path / "m.onnx"]):
        assert main([str(a) for a in args]) == 0, args
    assert (tmp_path / "m.onnx").is_file()


def test_unlabelled_texts_with_a_label_column_say_it_is_ignored(tmp_path, capsys):
    from headstart.data.texts import read_text_data
    from headstart.data.unlabelled import read_unlabelled

    data = tmp_path / "labelled.csv"
    data.write_text("text,label\na fine film,pos\na dull film,neg\ngood,pos\nbad,neg\n")
    u = tmp_path / "u.csv"
    u.write_text("text,label\na fine film,pos\nwonderful acting,pos\nboring plot,neg\n ,neg\n")
    notes: list[str] = []
    got = read_unlabelled(u, "text", read_text_data(data), 2, log=notes.append)
    assert got.items == ["wonderful acting", "boring plot"] and got.duplicates == 1
    assert any("'label' column is ignored" in n for n in got.notes)
    lines = tmp_path / "u.txt"
    lines.write_text("one review\n\nanother review\nun film « très » réussi\n")  # accents are Latin script too
    got = read_unlabelled(lines, "text", read_text_data(data), 2)
    assert got.items == ["one review", "another review", "un film « très » réussi"]


def test_unreadable_unlabelled_images_are_left_out_with_skip_bad_files(shapes_dir, unlabelled_dir, tmp_path):
    from headstart.data.images import read_image_data
    from headstart.data.unlabelled import read_unlabelled
    from headstart.errors import HeadstartError

    u = tmp_path / "u"
    shutil.copytree(unlabelled_dir, u)
    (u / "broken.png").write_bytes(b"\x89PNG not really")
    labelled = read_image_data(shapes_dir)
    with pytest.raises(HeadstartError, match="broken.png.*--skip-bad-files"):
        read_unlabelled(u, "image", labelled, 3)
    got = read_unlabelled(u, "image", labelled, 3, skip_bad_files=True)
    assert got.unreadable == 1 and len(got.items) == 15


def test_advise_with_unlabelled_reports_the_gap_the_confidence_and_the_curve_with_them(tiny_model, shapes_dir,
                                                                                       unlabelled_dir, tmp_path):
    import headstart
    from headstart.zoo import get_card

    card = get_card(tiny_model["model"], arch=tiny_model["arch"])
    r = headstart.advise(shapes_dir, [card], curve=[1, 2], seeds=1, scratch=False, budget=0,
                         unlabelled=unlabelled_dir, out=tmp_path / "advice.html")
    un = r["unlabelled"]
    assert un["unlabelled"]["used"] == 15 and un["unlabelled"]["duplicates_left_out"] == 1
    assert sum(un["confidence"]["histogram"]) == 15 and "classifier_balanced_accuracy" in un["domain"]
    assert un["verdict"].startswith("U ")
    if un["method"] != "none":
        assert all(row["unlabelled"]["mean"] is not None for row in r["learning_curve"])
        assert "unlabelled" in r["curve_labels"]
    assert "Unlabelled examples" in (tmp_path / "advice.html").read_text()


def test_adabn_keeps_a_body_with_the_batchnorm_statistics_of_the_unlabelled_images(tiny_model, tiny_weights, shapes_dir,
                                                                                   shapes_test_dir, unlabelled_dir,
                                                                                   tmp_path):
    import torch
    from safetensors.numpy import load_file

    import headstart

    out = tmp_path / "bn"
    run = headstart.fit(shapes_dir, model=tiny_model["model"], arch=tiny_model["arch"], out=out,
                        unlabelled=unlabelled_dir, adapt="adabn")
    assert run.metrics["adapt"]["method"] == "adabn" and run.info["adapt"]["method"] == "adabn"
    saved, card = load_file(str(out / "model.safetensors")), load_file(str(tiny_weights))
    means = [k for k in card if k.endswith("running_mean")]
    assert means and any(not np.allclose(saved[f"body.{k}"], card[k]) for k in means)  # U's statistics
    weights = [k for k in card if k.endswith("conv_stem.weight")]
    assert all(np.array_equal(saved[f"body.{k}"], card[k]) for k in weights)  # every weight unchanged
    assert run.body_id != headstart.load(out).card.fingerprint()
    assert headstart.evaluate(run, shapes_test_dir)["accuracy"] >= 0.0  # reads the run's own body
    with pytest.raises(headstart.HeadstartError, match="no BatchNorm"):
        from headstart.features import restat_batchnorm

        restat_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), run.card.preprocessing, [], torch.device("cpu"))
