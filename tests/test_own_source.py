"""Your own source model: pretrain from random weights, card folders, the user's zoo, runs as sources."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import headstart
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.pretrain import pretrain
from headstart.run import RUN_FILE
from headstart.zoo import get_card, list_cards, load_network
from headstart.zoo.manage import add_card, remove_card
from headstart.zoo.user import CARD_FILE, zoo_root

from conftest import make_image_folder

ARCH = "timm:test_efficientnet"  # 356k parameters: a pretrain epoch on 36 images takes a second


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    src = make_image_folder(tmp_path_factory.mktemp("source-data") / "shapes", per_class=12, seed=3)
    out = tmp_path_factory.mktemp("pretrained") / "shapes-source"
    pretrain(src, arch=ARCH, out=out, epochs=3, seed=0)
    return out


def test_pretrain_writes_a_run_and_a_card(source_dir):
    files = {p.name for p in source_dir.iterdir()}
    assert {CARD_FILE, RUN_FILE, "model.safetensors", "metrics.json"} <= files
    assert not (source_dir / "checkpoint").exists()
    card = get_card(f"file:{source_dir}")
    assert card.architecture == ARCH and card.weights.key_map == "run"
    assert card.source_classes == 3 and card.has_source_head and card.source_size == 36
    assert card.preprocessing.crop == 64 and card.extra["greyscale"] is False  # 48 px images -> 64
    assert card.weights.location == str((source_dir / "model.safetensors").resolve())
    # The card's network is the trained run's: its source head gives the run's own probabilities.
    net = load_network(card)
    run = headstart.load(source_dir)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), run.model(x), atol=1e-5)
    metrics = json.loads((source_dir / "metrics.json").read_text())
    assert metrics["strategy"] == "finetune" and metrics["config"]["bn"] == "train"
    assert metrics["config"]["body_lr_mult"] == 1.0


def test_pretrain_is_reproducible_from_its_seed(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=4, seed=5, size=32)
    a = pretrain(src, arch=ARCH, out=tmp_path / "a", epochs=1, seed=7)
    b = pretrain(src, arch=ARCH, out=tmp_path / "b", epochs=1, seed=7)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_transfer_from_the_pretrained_folder_and_rank_uses_its_head(source_dir, tmp_path, shapes_dir):
    run = headstart.fit(shapes_dir, model=f"file:{source_dir}", out=tmp_path / "target")
    assert run.metrics["strategy"] == "linear-probe"
    assert run.card.architecture == ARCH
    row = headstart.rank_models(shapes_dir, [f"file:{source_dir}"], metric="leep")["models"][0]
    assert row["leep"] is not None and row["nce"] is not None


def test_a_fit_run_is_a_source_too_chains_work(source_dir, tmp_path, shapes_dir):
    first = headstart.fit(shapes_dir, model=f"file:{source_dir}", out=tmp_path / "first", strategy="finetune",
                          epochs=1)
    card = get_card(f"file:{first.dir}")
    assert card.source_classes == 3 and card.source_dataset == shapes_dir.name
    second = headstart.fit(shapes_dir, model=f"file:{first.dir}", out=tmp_path / "second")
    assert second.card.weights.location.endswith("first/model.safetensors")
    # the body that the second run starts from is the first run's fine-tuned body, not the source's
    body = load_network(card)
    for k, v in first.model.body.state_dict().items():
        assert torch.equal(body.state_dict()[k], v), k
    # an mlp head is no source head: the card keeps the body only
    mlp = headstart.fit(shapes_dir, model=f"file:{source_dir}", out=tmp_path / "mlp", head="mlp", hidden=8, epochs=5)
    assert not get_card(f"file:{mlp.dir}").has_source_head


def test_models_add_list_use_remove(source_dir, tmp_path, shapes_dir, capsys):
    code, out, _ = cli(capsys, "models", "add", "shapes-src", "--from", source_dir)
    assert code == 0 and "added shapes-src" in out
    assert (zoo_root() / "shapes-src" / CARD_FILE).is_file()
    code, out, _ = cli(capsys, "models")
    line = next(x for x in out.splitlines() if x.startswith("shapes-src"))
    assert "yours" in line and "yes" in line
    assert any(r["name"] == "shapes-src" and not r["builtin"] for r in json.loads(cli(capsys, "models", "--json")[1]))
    # the zoo copy does not depend on the source folder any more
    code, _, err = cli(capsys, "fit", shapes_dir, "--model", "shapes-src", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    code, _, err = cli(capsys, "models", "add", "shapes-src", "--from", source_dir)
    assert code == 2 and "already has a model 'shapes-src'" in err and "--overwrite" in err and len(err.splitlines()) == 1
    code, _, _ = cli(capsys, "models", "add", "shapes-src", "--from", source_dir, "--overwrite", "--mean", "0.5,0.5,0.5")
    assert code == 0 and get_card("shapes-src").preprocessing.mean == (0.5, 0.5, 0.5)
    code, out, _ = cli(capsys, "models", "remove", "shapes-src")
    assert code == 0 and not (zoo_root() / "shapes-src").exists()
    assert "shapes-src" not in {c.name for c in list_cards()}
    code, _, err = cli(capsys, "models", "remove", "shapes-src")
    assert code == 2 and "no model 'shapes-src'" in err


def test_models_add_from_a_weights_file_keeps_safetensors(tiny_weights, tmp_path):
    pth = tmp_path / "plain.pt"
    from safetensors.torch import load_file

    torch.save(load_file(str(tiny_weights)), pth)  # a plain state_dict, saved with torch.save
    card = add_card("tiny", pth, arch=ARCH, input_size=96, std=(0.5, 0.5, 0.5))
    assert Path(card.weights.location).name == "model.safetensors" and card.preprocessing.crop == 96
    assert card.preprocessing.std == (0.5, 0.5, 0.5)
    load_network(get_card("tiny"))
    assert remove_card("tiny").name == "tiny"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/headstart-pwned-by-zoo",))


def test_bad_sources_are_refused_in_one_line(source_dir, tiny_weights, tmp_path, capsys):
    marker = Path("/tmp/headstart-pwned-by-zoo")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    code, _, err = cli(capsys, "models", "add", "evil", "--from", evil, "--arch", ARCH)
    assert code == 2 and "refusing to load" in err and not marker.exists()
    # architecture and weights that disagree: the first mismatched tensor, both shapes
    code, _, err = cli(capsys, "models", "add", "wrong", "--from", tiny_weights, "--arch", "timm:resnet10t")
    assert code == 2 and "tensor '" in err and len(err.splitlines()) == 1
    code, _, err = cli(capsys, "models", "add", "efficientnet_lite0", "--from", source_dir)
    assert code == 2 and "built-in" in err
    code, _, err = cli(capsys, "models", "add", "bad/name", "--from", source_dir)
    assert code == 2 and "must be letters" in err
    code, _, err = cli(capsys, "models", "add", "x", "--from", source_dir, "--mean", "0.5,0.5")
    assert code == 2 and "--mean needs 3 numbers" in err
    assert not any(zoo_root().iterdir())  # nothing half-written
    # a folder that is neither a card nor a run; a run that has not finished
    code, _, err = cli(capsys, "fit", tmp_path, "--model", f"file:{tmp_path}", "--out", tmp_path / "o")
    assert code == 2
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    info = json.loads((source_dir / RUN_FILE).read_text()) | {"status": "training"}
    (unfinished / RUN_FILE).write_text(json.dumps(info))
    with pytest.raises(HeadstartError, match="has not finished"):
        get_card(f"file:{unfinished}")
    with pytest.raises(HeadstartError, match="names its own architecture"):
        get_card(f"file:{source_dir}", arch=ARCH)


def test_pretrain_refuses_one_class_and_unknown_architectures(tmp_path, capsys):
    one = make_image_folder(tmp_path / "one", per_class=4, classes=("circle",))
    code, _, err = cli(capsys, "pretrain", one, "--arch", ARCH, "--out", tmp_path / "p")
    assert code == 2 and len(err.splitlines()) == 1 and ("class" in err) and not (tmp_path / "p").exists()
    two = make_image_folder(tmp_path / "two", per_class=2, classes=("circle", "square"))
    code, _, err = cli(capsys, "pretrain", two, "--arch", "no_such_net", "--out", tmp_path / "p")
    assert code == 2 and "unknown architecture" in err and not (tmp_path / "p").exists()
    (two / "circle" / "broken.png").write_bytes(b"not an image")
    code, _, err = cli(capsys, "pretrain", two, "--arch", ARCH, "--out", tmp_path / "p")
    assert code == 2 and "broken.png" in err and len(err.splitlines()) == 1 and not (tmp_path / "p").exists()


def test_a_text_run_is_no_source_yet(source_dir, tmp_path):
    import shutil

    from headstart.zoo.builtin import BUILTIN_CARDS

    text_run = tmp_path / "text-run"
    shutil.copytree(source_dir, text_run)
    (text_run / CARD_FILE).unlink()
    info = json.loads((text_run / RUN_FILE).read_text())
    (text_run / RUN_FILE).write_text(json.dumps(info | {"card": BUILTIN_CARDS["minilm_l6"].to_dict()}))
    with pytest.raises(HeadstartError, match="text run; only image runs"):
        get_card(f"file:{text_run}")


def test_greyscale_source_makes_greyscale_targets_alike(tmp_path):
    from PIL import Image

    from headstart.data.images import appearance, look_notes, read_image_data

    src = make_image_folder(tmp_path / "grey", per_class=6, seed=2, size=32)
    for p in src.rglob("*.png"):
        Image.open(p).convert("L").save(p)
    for p in src.rglob("*.jpg"):
        Image.open(p).convert("L").save(p)
    run = pretrain(src, arch=ARCH, out=tmp_path / "src", epochs=1)
    card = get_card(f"file:{run.dir}")
    look = appearance(read_image_data(src))
    assert card.extra["greyscale"] is True and card.preprocessing.crop == 32
    assert look_notes(look, card.input_size, True) == []  # greyscale like its source, at its own size
    assert any("greyscale" in n for n in look_notes(look, 224, False))


def test_cli_pretrain_prints_the_next_step(tmp_path, capsys):
    src = make_image_folder(tmp_path / "src", per_class=4, seed=4, size=32)
    code, out, err = cli(capsys, "pretrain", src, "--arch", ARCH, "--out", tmp_path / "cli-src", "--epochs", "1",
                         "--quiet")
    assert code == 0, err
    assert f"--model file:{tmp_path / 'cli-src'}" in out
    code, _, err = cli(capsys, "pretrain", "--resume", tmp_path / "cli-src")
    assert code == 2 and "already finished" in err


def test_pretrain_killed_mid_epoch_resumes_to_the_same_weights_and_card(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    data = make_image_folder(tmp_path / "data", per_class=60, seed=6, size=48)
    cmd = [sys.executable, "-m", "headstart.cli", "pretrain", str(data), "--arch", ARCH, "--epochs", "3",
           "--batch-size", "8", "--quiet", "--out"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ref = subprocess.run([*cmd, str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoint" / "state.json"
    t0 = time.time()
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        assert proc.poll() is None and time.time() - t0 < 300, "the run ended before its first checkpoint"
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / CARD_FILE).exists()
    with pytest.raises(HeadstartError, match="has not finished"):
        get_card(f"file:{out}")
    resumed = subprocess.run([sys.executable, "-m", "headstart.cli", "pretrain", "--resume", str(out), "--quiet"],
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert get_card(f"file:{out}").source_classes == 3


def test_advise_takes_a_pretrained_folder(source_dir, shapes_dir, tmp_path):
    report = headstart.advise(shapes_dir, models=[f"file:{source_dir}"], scratch=False, curve=[1, 2], seeds=1,
                              out=tmp_path / "advice.html")
    assert report["recommended_model"] == f"file:{source_dir}" and (tmp_path / "advice.html").is_file()



def test_pretrain_in_two_processes_writes_one_card(tmp_path):
    import subprocess
    import sys

    src = make_image_folder(tmp_path / "src", per_class=8, seed=8, size=32)
    done = subprocess.run([sys.executable, "-m", "headstart.cli", "pretrain", str(src), "--arch", ARCH, "--epochs", "1",
                           "--batch-size", "8", "--processes", "2", "--quiet", "--out", str(tmp_path / "ddp")],
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["processes"] == 2
    assert get_card(f"file:{tmp_path / 'ddp'}").source_classes == 3
