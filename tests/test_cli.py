"""The CLI contract end to end: fit, evaluate, predict, models, demo; JSON keys; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from headstart.cli import main
from headstart.run import METRICS_FILE, RUN_FILE, WEIGHTS_FILE

FIT_KEYS = {"val_accuracy", "n_train", "n_val", "strategy", "extract_seconds", "train_seconds", "cache_hit"}
EVAL_KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "n", "per_class", "confusion"}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_weights, shapes_dir):
    """One fit of the tiny model, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["fit", str(shapes_dir), "--model", f"file:{tiny_weights}", "--arch", "timm:test_efficientnet",
                 "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_models_json_has_the_contract_keys(capsys):
    code, out, _ = cli(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["name"] for r in rows} >= {"efficientnet_lite0", "efficientnet_lite1",
                                                       "efficientnet_lite2", "mobilenet_v2"}
    for r in rows:
        assert {"name", "modality", "num_features", "input_size", "license", "installed"} <= set(r)
        assert r["installed"] is True


def test_fit_writes_a_complete_run_and_json_metrics(capsys, tmp_path, tiny_weights, shapes_dir):
    out = tmp_path / "run"
    code, stdout, _ = cli(capsys, "fit", shapes_dir, "--model", f"file:{tiny_weights}", "--arch",
                          "test_efficientnet", "--out", out, "--seed", "3", "--json")
    assert code == 0
    metrics = json.loads(stdout)  # stdout holds the JSON and nothing else
    assert FIT_KEYS <= set(metrics)
    # a linear probe: every example trains the head, 5-fold cross-validation picks C and measures it
    assert metrics["strategy"] == "linear-probe" and metrics["n_train"] == 24 and metrics["n_val"] == 0
    assert metrics["validation"] == "5-fold cross-validation" and metrics["cv"]["examples"] == 24
    assert metrics["head_c"] in [row["c"] for row in metrics["cv"]["grid"]]
    assert sorted(p.name for p in out.iterdir()) == sorted([METRICS_FILE, RUN_FILE, WEIGHTS_FILE])
    info = json.loads((out / RUN_FILE).read_text())
    assert info["classes"] == ["circle", "square", "triangle"]
    assert info["card"]["architecture"] == "timm:test_efficientnet" and info["preprocessing"]["crop"] == 160
    assert info["head"]["kind"] == "linear"
    assert json.loads((out / METRICS_FILE).read_text())["val_accuracy"] == metrics["val_accuracy"]


def test_options_of_iterative_training_are_refused_by_the_linear_probe(capsys, tmp_path, tiny_weights, shapes_dir):
    m = ["--model", f"file:{tiny_weights}", "--arch", "test_efficientnet"]
    code, _, err = cli(capsys, "fit", shapes_dir, *m, "--strategy", "linear-probe", "--lr", "0.1", "--epochs", "9",
                       "--out", tmp_path / "lp")
    assert code == 2 and err.count("\n") == 1 and "--epochs, --lr do not apply to the linear probe" in err
    assert not (tmp_path / "lp").exists()
    # auto chose the probe: the options go unused, and fit says so
    code, _, err = cli(capsys, "fit", shapes_dir, *m, "--epochs", "9", "--out", tmp_path / "auto")
    assert code == 0 and "--epochs unused" in err and (tmp_path / "auto" / WEIGHTS_FILE).is_file()
    code, out, _ = cli(capsys, "fit", shapes_dir, *m, "--strategy", "linear-probe", "--head-c", "0.5", "--json",
                       "--out", tmp_path / "c")
    metrics = json.loads(out)
    assert code == 0 and metrics["head_c"] == 0.5 and metrics["cv"] is None and metrics["val_accuracy"] is None


def test_head_c_is_used_where_a_head_is_fitted_on_cached_features_and_refused_elsewhere(capsys, tmp_path, tiny_weights,
                                                                                       shapes_dir):
    m = ["--model", f"file:{tiny_weights}", "--arch", "test_efficientnet"]
    code, out, _ = cli(capsys, "fit", shapes_dir, *m, "--strategy", "lp-ft", "--head-c", "0.5", "--epochs", "1",
                       "--batch-size", "8", "--json", "--out", tmp_path / "lpft")
    head_phase = json.loads(out)["history"][0]
    assert code == 0 and head_phase["head_only"] and head_phase["head_c"] == 0.5
    for args, message in ((["--strategy", "finetune", "--head-c", "0.5"], "--head-c does not apply to --strategy finetune"),
                          (["--strategy", "linear-probe", "--head-c", "0"], "--head-c must be > 0; got 0")):
        code, _, err = cli(capsys, "fit", shapes_dir, *m, *args, "--out", tmp_path / "refused")
        assert code == 2 and err.count("\n") == 1 and message in err
        assert not (tmp_path / "refused").exists()


def test_second_fit_hits_the_cache_with_identical_results(capsys, tmp_path, tiny_weights, shapes_dir):
    args = ["fit", shapes_dir, "--model", f"file:{tiny_weights}", "--arch", "test_efficientnet",
            "--json", "--cache-dir", tmp_path / "c"]
    _, a, _ = cli(capsys, *args, "--out", tmp_path / "a")
    _, b, _ = cli(capsys, *args, "--out", tmp_path / "b")
    ma, mb = json.loads(a), json.loads(b)
    assert not ma["cache_hit"] and mb["cache_hit"]
    assert ma["val_accuracy"] == mb["val_accuracy"] and ma["history"] == mb["history"]
    assert (tmp_path / "a" / WEIGHTS_FILE).read_bytes() == (tmp_path / "b" / WEIGHTS_FILE).read_bytes()
    _, c, _ = cli(capsys, *args, "--out", tmp_path / "c2", "--no-cache")
    assert json.loads(c)["cache_hit"] is False


def test_evaluate_and_predict(capsys, tiny_run, shapes_test_dir):
    code, out, _ = cli(capsys, "evaluate", tiny_run, shapes_test_dir, "--json")
    res = json.loads(out)
    assert code == 0 and EVAL_KEYS <= set(res)
    assert res["n"] == 12 and len(res["confusion"]) == 3 and sum(map(sum, res["confusion"])) == 12
    assert set(res["per_class"]) == {"circle", "square", "triangle"}
    code, text, _ = cli(capsys, "evaluate", tiny_run, shapes_test_dir)
    assert code == 0 and "balanced accuracy" in text and "confusion" in text
    files = sorted(str(p) for p in shapes_test_dir.rglob("*.png"))[:3]
    code, out, _ = cli(capsys, "predict", tiny_run, *files, "--top-k", "2", "--json")
    preds = json.loads(out)
    assert code == 0 and [p["file"] for p in preds] == files
    for p in preds:
        assert p["label"] in ("circle", "square", "triangle") and len(p["top_k"]) == 2
        assert p["top_k"][0]["label"] == p["label"] and p["score"] >= p["top_k"][1]["score"]
    code, text, _ = cli(capsys, "predict", tiny_run, shapes_test_dir / "circle")
    assert code == 0 and len(text.strip().splitlines()) == 4  # a folder is searched for images


def test_api_mirrors_the_cli(tiny_run, shapes_test_dir, tiny_weights, shapes_dir, tmp_path):
    import headstart

    run = headstart.load(tiny_run)
    assert run.classes == ("circle", "square", "triangle")
    by_path, by_run = headstart.evaluate(tiny_run, shapes_test_dir), headstart.evaluate(run, shapes_test_dir)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "n", "per_class", "confusion"):
        assert by_path[key] == by_run[key], key
    files = sorted(shapes_test_dir.rglob("*.png"))[:2]
    assert [p["label"] for p in run.predict(files)] == [p["label"] for p in headstart.predict(tiny_run, files)]
    fitted = headstart.fit(shapes_dir, model=f"file:{tiny_weights}", arch="test_efficientnet",
                           out=tmp_path / "api")
    assert fitted.metrics["n_train"] == 24 and (tmp_path / "api" / WEIGHTS_FILE).is_file()


def test_loaded_model_is_a_plain_module_matching_predict(tiny_run, shapes_test_dir):
    import numpy as np
    import torch

    import headstart
    from headstart.data.transforms import ImageLoader, normalize

    run = headstart.load(tiny_run)
    files = sorted(shapes_test_dir.rglob("*.*"))[:4]
    x = normalize(torch.stack([ImageLoader(run.preprocessing)(f) for f in files]), run.preprocessing,
                  torch.device("cpu"))
    with torch.inference_mode():
        probs = run.model(x).softmax(1).numpy()
    preds = run.predict(files, top_k=3)
    np.testing.assert_allclose([p["score"] for p in preds], probs.max(1), rtol=1e-4, atol=1e-6)


# --- one-line errors, exit code 2, nothing half-written -------------------------------------------

def _error(capsys, *args):
    code, out, err = cli(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_unknown_model_suggests_names(capsys, shapes_dir, tmp_path):
    msg = _error(capsys, "fit", shapes_dir, "--model", "efficientnet_lite9", "--out", tmp_path / "r")
    assert "unknown model 'efficientnet_lite9'" in msg and "efficientnet_lite0" in msg
    assert not (tmp_path / "r").exists()


def test_data_mistakes(capsys, tmp_path, tiny_weights):
    m = ["--model", f"file:{tiny_weights}", "--arch", "test_efficientnet", "--out", str(tmp_path / "r")]
    assert "does not exist" in _error(capsys, "fit", tmp_path / "missing", *m)
    (tmp_path / "empty").mkdir()
    assert "is empty" in _error(capsys, "fit", tmp_path / "empty", *m)
    assert not (tmp_path / "r").exists()


def test_bad_image_files_are_all_listed_before_work(capsys, tmp_path, tiny_weights):
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "d", per_class=4, classes=("a", "b"))
    (data / "a" / "bad1.png").write_text("nope")
    (data / "b" / "bad2.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 20)
    m = ["--model", f"file:{tiny_weights}", "--arch", "test_efficientnet", "--out", str(tmp_path / "r")]
    msg = _error(capsys, "fit", data, *m)
    assert "bad1.png" in msg and "bad2.jpg" in msg and "--skip-bad-files" in msg
    assert not (tmp_path / "r").exists()
    code, out, _ = cli(capsys, "fit", data, *m, "--skip-bad-files", "--json")
    assert code == 0 and json.loads(out)["n_train"] + json.loads(out)["n_val"] == 8


def test_out_dir_that_is_not_a_run_is_refused_unless_overwrite(capsys, tmp_path, tiny_weights, shapes_dir):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not lose me")
    m = ["--model", f"file:{tiny_weights}", "--arch", "test_efficientnet"]
    msg = _error(capsys, "fit", shapes_dir, *m, "--out", precious)
    assert "not a headstart run" in msg and "--overwrite" in msg
    assert (precious / "thesis.tex").read_text() == "do not lose me"
    code, _, _ = cli(capsys, "fit", shapes_dir, *m, "--out", precious, "--overwrite", "--quiet")
    assert code == 0 and not (precious / "thesis.tex").exists() and (precious / RUN_FILE).is_file()
    code, _, _ = cli(capsys, "fit", shapes_dir, *m, "--out", precious, "--quiet")  # a run is replaced
    assert code == 0


def test_out_inside_data_is_refused(capsys, shapes_dir):
    assert "inside DATA" in _error(capsys, "fit", shapes_dir, "--out", shapes_dir / "run")
    assert not (shapes_dir / "run").exists()


def test_usage_and_option_errors_are_one_line(capsys, tmp_path, shapes_dir):
    assert "Missing argument 'DATA'" in _error(capsys, "fit")
    assert "--val-split must be in [0, 1)" in _error(capsys, "fit", shapes_dir, "--out", tmp_path / "r",
                                                     "--val-split", "1.5")
    assert "--strategy must be one of" in _error(capsys, "fit", shapes_dir, "--out", tmp_path / "r",
                                                 "--strategy", "magic")
    assert "not a headstart run" in _error(capsys, "evaluate", shapes_dir, shapes_dir)
    assert "is not a headstart run" in _error(capsys, "predict", tmp_path, "nope.png")


def test_evaluate_refuses_unknown_classes(capsys, tiny_run, tmp_path):
    from conftest import make_image_folder

    other = make_image_folder(tmp_path / "o", per_class=2, classes=("circle", "hexagon"))
    msg = _error(capsys, "evaluate", tiny_run, other)
    assert "hexagon" in msg and "circle, square, triangle" in msg


def test_predict_bad_inputs(capsys, tiny_run, tmp_path):
    assert "not found: nope.png" in _error(capsys, "predict", tiny_run, "nope.png")
    bad = tmp_path / "x.png"
    bad.write_text("text")
    assert "x.png" in _error(capsys, "predict", tiny_run, bad)


def test_console_script_exit_code_and_stderr():
    """The installed `headstart` command itself: a user's mistake is exit 2 and one line, no traceback."""
    exe = Path(sys.executable).parent / "headstart"
    r = subprocess.run([str(exe), "fit", "/definitely/missing", "--out", "/tmp/x-headstart"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_demo_runs_end_to_end_small(capsys, tmp_path):
    code, out, err = cli(capsys, "demo", "--shots", "3", "--test-per-class", "3", "--dir", tmp_path / "demo",
                         "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["n_test"] == 30 and r["n_train"] == 30 and r["validation"] == "3-fold cross-validation"
    assert 0.0 <= r["test_accuracy"] <= 1.0 and Path(r["run_dir"]) == tmp_path / "demo" / "run"
    assert len(list(Path(r["test_dir"]).glob("*/*.png"))) == 30
