"""fit's options in groups (headstart.options): objects, names laid over them, unknown names, and the
groups a task refuses."""

from __future__ import annotations

import pytest

import headstart
from headstart.errors import HeadstartError
from headstart.options import FitOptions, HeadOptions, TrainOptions, refuse_other_task
from headstart.text.options import TextOptions


def test_names_are_laid_over_the_objects_group_by_group():
    o = FitOptions.of({"epochs": 3, "head": "mlp", "cache_dir": "/tmp/c", "detector": "faster"},
                      train=TrainOptions(strategy="finetune", epochs=10), head=HeadOptions(hidden=64))
    assert o.train.strategy == "finetune" and o.train.epochs == 3  # the name wins over the object
    assert o.head.head == "mlp" and o.head.hidden == 64
    assert o.setup.cache_dir == "/tmp/c" and o.detect.detector == "faster"
    assert FitOptions.of({}) == FitOptions()


def test_an_unknown_option_is_one_line_naming_it():
    with pytest.raises(HeadstartError, match="fit\\(\\) got an unknown option 'epoch'"):
        FitOptions.of({"epoch": 3})


def test_a_group_that_does_not_apply_is_refused_naming_each_option():
    with pytest.raises(HeadstartError) as e:
        refuse_other_task("detect", FitOptions.of({"head": "mlp", "class_balance": False}))
    assert "--head, --no-class-balance do not apply to detection" in str(e.value)
    with pytest.raises(HeadstartError, match="text options"):
        refuse_other_task("detect", FitOptions(text=TextOptions(text_column="review")))
    with pytest.raises(HeadstartError, match="--eval-every does not apply to classification"):
        refuse_other_task("classify", FitOptions.of({"eval_every": 2}))
    refuse_other_task("classify", FitOptions.of({"head": "mlp", "epochs": 2}))  # its own: fine
    refuse_other_task("detect", FitOptions.of({"detector": "mask", "l2sp": 0.1}))


def test_fit_takes_the_groups_as_objects(shapes_dir, tiny_model, tmp_path):
    run = headstart.fit(shapes_dir, out=tmp_path / "r", train=TrainOptions(strategy="linear-probe"),
                        head_options=HeadOptions(head_c=1.0), **tiny_model)
    assert run.metrics["strategy"] == "linear-probe" and run.metrics["head_c"] == 1.0
    with pytest.raises(HeadstartError, match="unknown option 'epoch'"):
        headstart.fit(shapes_dir, out=tmp_path / "x", epoch=3, **tiny_model)
