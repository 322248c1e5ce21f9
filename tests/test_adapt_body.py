"""The body learning from unlabelled images through the engine (fit --unlabelled U --adapt fixmatch|mcc|dann,
headstart.classify.adapt_task): the losses, a run that trains on U and is like any other run, and a killed run
that resumes to the same weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import stopped_after_checkpoint


def test_mcc_is_small_when_the_batch_keeps_its_classes_apart_and_large_when_it_confuses_them():
    from headstart.classify.adapt_task import mcc_loss

    apart = torch.eye(4).repeat(4, 1) * 12.0  # sure, and every class in the batch
    confused = torch.tensor([[6.0, 6.0, 0.0, 0.0], [0.0, 0.0, 6.0, 6.0]]).repeat(8, 1)  # two classes read as one
    assert float(mcc_loss(apart)) < 0.1 < float(mcc_loss(confused))
    logits = confused.clone().requires_grad_()
    mcc_loss(logits).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_the_gradient_reversal_passes_features_as_they_are_and_turns_their_gradient():
    from headstart.classify.adapt_task import DomainAdversarial
    from headstart.surgery import TransferModel

    torch.manual_seed(0)
    model = TransferModel(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    both = DomainAdversarial(model, torch.nn.Linear(4, 1))
    x = torch.randn(5, 3)
    logits, domain = both(x, 0.5)
    assert torch.allclose(logits, both(x)) and domain.shape == (5,)
    domain.sum().backward()
    reversed_grad = model.body.weight.grad.clone()
    model.zero_grad()
    both.discriminator(model.forward_features(x)).sum().backward()
    assert torch.allclose(reversed_grad, -0.5 * model.body.weight.grad)


def test_strong_views_are_seeded_and_differ_from_the_weak_ones():
    from headstart.classify.adapt_task import StrongView

    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    view = StrongView()
    assert torch.equal(view(image, 5), view(image, 5)) and view(image, 5).shape == image.shape
    assert any(not torch.equal(view(image, s), image) for s in range(4))


@pytest.fixture(scope="module")
def unlabelled_images(tmp_path_factory):
    from conftest import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("u-body") / "u", per_class=4, seed=7)


def _fit(out, tiny_model, shapes_dir, u, **kw):
    import headstart

    return headstart.fit(shapes_dir, model=tiny_model["model"], arch=tiny_model["arch"], out=out, unlabelled=u,
                         epochs=2, batch_size=8, num_workers=0, **kw)


@pytest.mark.parametrize("method", ["fixmatch", "mcc", "dann"])
def test_the_body_learns_from_unlabelled_images_and_the_run_is_like_any_other(method, tiny_model, shapes_dir,
                                                                              shapes_test_dir, unlabelled_images, tmp_path,
                                                                              monkeypatch):
    import headstart
    from headstart.classify import adapt_task

    # an untrained tiny network is never 0.95 sure: every weak view's label is trained on here
    monkeypatch.setattr(adapt_task, "THRESHOLD", 0.0)
    run = _fit(tmp_path / "u", tiny_model, shapes_dir, unlabelled_images, adapt=method, strategy="finetune")
    a = run.metrics["adapt"]
    assert a["method"] == method and a["unlabelled"]["used"] == 12 and a["unlabelled_seen"] > 0
    assert run.info["adapt"]["method"] == method
    phases = [ph for ph in run.metrics["phases"] if "unlabelled_per_epoch" in ph]
    assert phases and (method != "fixmatch" or phases[0]["pseudo_labelled_share"] == 1.0)
    plain = headstart.fit(shapes_dir, model=tiny_model["model"], arch=tiny_model["arch"], out=tmp_path / "plain",
                          epochs=2, batch_size=8, num_workers=0, strategy="finetune")
    a_w, p_w = run.model.state_dict(), plain.model.state_dict()
    assert any(not torch.equal(a_w[k], p_w[k]) for k in a_w if k.startswith("body."))  # U changed what the body learnt
    assert 0.0 <= headstart.evaluate(run, shapes_test_dir)["accuracy"] <= 1.0
    if method == "dann":  # the discriminator is not part of the run: it predicts and exports as any run
        from headstart.cli import main

        image = sorted(shapes_test_dir.rglob("*.png"))[0]
        assert main(["predict", str(tmp_path / "u"), str(image)]) == 0
        assert main(["export", str(tmp_path / "u"), "--out", str(tmp_path / "m.onnx")]) == 0
        from safetensors.numpy import load_file

        saved = load_file(str(tmp_path / "u" / "model.safetensors"))
        assert not any("discriminator" in k or k.startswith("_extra") for k in saved)
    assert json.loads((tmp_path / "u" / "headstart.json").read_text())["adapt"]["unlabelled"]["fingerprint"]


def test_auto_with_an_engine_method_trains_the_head_first_then_the_body(tiny_model, shapes_dir, unlabelled_images,
                                                                         tmp_path):
    run = _fit(tmp_path / "auto", tiny_model, shapes_dir, unlabelled_images, adapt="mcc")
    assert run.metrics["strategy"] == "lp-ft" and "--adapt mcc trains the body with U" in run.metrics["strategy_reason"]


@pytest.mark.parametrize("method", ["fixmatch", "dann"])  # dann: its discriminator resumes too
def test_a_killed_run_with_unlabelled_images_resumes_to_the_same_weights(method, tiny_model, shapes_dir,
                                                                         unlabelled_images, tmp_path):
    import headstart

    whole = _fit(tmp_path / "whole", tiny_model, shapes_dir, unlabelled_images, adapt=method, strategy="finetune")
    with stopped_after_checkpoint(lambda state: state.global_epoch == 1):
        _fit(tmp_path / "killed", tiny_model, shapes_dir, unlabelled_images, adapt=method, strategy="finetune")
    resumed = headstart.resume(tmp_path / "killed")
    w, r = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(w[k], r[k]) for k in w)
    assert resumed.metrics["adapt"]["unlabelled_seen"] == whole.metrics["adapt"]["unlabelled_seen"] > 0


def test_resume_refuses_unlabelled_images_that_changed(tiny_model, shapes_dir, unlabelled_images, tmp_path):
    import shutil

    import headstart

    u = shutil.copytree(unlabelled_images, tmp_path / "u")
    with stopped_after_checkpoint(lambda state: state.global_epoch == 1):
        _fit(tmp_path / "killed", tiny_model, shapes_dir, u, adapt="mcc", strategy="finetune")
    next(u.rglob("*.png")).unlink()
    with pytest.raises(headstart.HeadstartError, match="unlabelled images .* changed"):
        headstart.resume(tmp_path / "killed")


def test_auto_trains_the_body_with_u_and_keeps_it_where_the_validation_split_agrees(tiny_model, shapes_dir,
                                                                                    unlabelled_images, tmp_path,
                                                                                    monkeypatch):
    import headstart
    from headstart.classify import unlabelled

    monkeypatch.setattr(unlabelled, "HARM", 1.0)  # any score with U is kept
    run = _fit(tmp_path / "auto", tiny_model, shapes_dir, unlabelled_images, adapt="auto", strategy="finetune")
    a = run.metrics["adapt"]
    assert a["requested"] == "auto" and a["method"] == "mcc" and a["unlabelled_seen"] > 0
    auto = a["auto"]
    assert 0.0 <= auto["domain"]["classifier_balanced_accuracy"] <= 1.0 and len(auto["confidence"]["histogram"]) == 10
    assert auto["reference"]["val_score"] is not None and "with U against" in a["reason"]
    assert run.info["adapt"]["method"] == "mcc" and not unlabelled.reference_dir(tmp_path / "auto").exists()
    assert headstart.load(tmp_path / "auto").metrics["adapt"]["reason"] == a["reason"]


def test_auto_falls_back_to_the_run_without_u_and_says_so(tiny_model, shapes_dir, unlabelled_images, tmp_path,
                                                          monkeypatch):
    import headstart
    from headstart.classify import unlabelled

    monkeypatch.setattr(unlabelled, "HARM", -1.0)  # every score with U is "behind"
    run = _fit(tmp_path / "auto", tiny_model, shapes_dir, unlabelled_images, adapt="auto", strategy="finetune")
    plain = _fit(tmp_path / "plain", tiny_model, shapes_dir, None, strategy="finetune")
    loaded = headstart.load(tmp_path / "auto")
    a = loaded.metrics["adapt"]
    assert a["method"] == "none" and "U is not used" in a["reason"] and "adapt" not in loaded.info
    w, p = loaded.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(w[k], p[k]) for k in w)  # the run is the one trained without U
    assert run.metrics["adapt"]["method"] == "none"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["auto", "plain"]  # nothing left beside --out


def test_a_run_killed_while_auto_trains_with_u_resumes_and_is_settled(tiny_model, shapes_dir, unlabelled_images,
                                                                        tmp_path):
    import headstart

    whole = _fit(tmp_path / "whole", tiny_model, shapes_dir, unlabelled_images, adapt="auto", strategy="finetune")
    firsts = []

    def second_run_first_epoch(state):  # the run without U comes first; the run with U is killed
        firsts.extend([1] if state.global_epoch == 1 else [])
        return len(firsts) == 2 and state.global_epoch == 1

    with stopped_after_checkpoint(second_run_first_epoch):
        _fit(tmp_path / "killed", tiny_model, shapes_dir, unlabelled_images, adapt="auto", strategy="finetune")
    assert json.loads((tmp_path / "killed" / "headstart.json").read_text())["adapt"]["auto"]["reference"]
    resumed = headstart.resume(tmp_path / "killed")
    w, r = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(w[k], r[k]) for k in w)
    assert resumed.metrics["adapt"]["reason"] == whole.metrics["adapt"]["reason"]
    assert not (tmp_path / ".killed.adapt-reference").exists()


def test_auto_with_a_body_strategy_on_texts_is_one_line(tmp_path):
    import headstart

    rows = "".join(f"{w} text number {i},{c}\n" for i in range(6) for c, w in (("a", "good"), ("b", "bad")))
    (tmp_path / "t.csv").write_text("text,label\n" + rows)
    (tmp_path / "u.txt").write_text("some text\nanother one\n")
    with pytest.raises(headstart.HeadstartError, match="--adapt auto with --strategy lp-ft trains the body"):
        headstart.fit(tmp_path / "t.csv", model="minilm_l6", out=tmp_path / "r", unlabelled=tmp_path / "u.txt",
                      adapt="auto", strategy="lp-ft")
    assert not (tmp_path / "r").exists()
