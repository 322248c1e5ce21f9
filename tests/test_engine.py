"""The engine open to Python users: their own nn.Module through the strategies, with a loss, metrics,
callbacks, checkpoints and exact resume (headstart.fit_module)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import headstart
from headstart.engine import Callback, RunState
from headstart.errors import HeadstartError


class Net(nn.Module):
    """A small 'pretrained' body (three blocks) and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.backbone(x))


def data(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 3, 12, 12, generator=g) * 0.3 + y.view(-1, 1, 1, 1) * 0.3
    return torch.utils.data.TensorDataset(x, y)


class Counter(Callback):
    def __init__(self) -> None:
        self.steps, self.epochs, self.phases = 0, [], []

    def on_step_end(self, engine, loss) -> None:
        self.steps += 1

    def on_epoch_end(self, engine, record) -> None:
        self.epochs.append(record["epoch"])

    def on_phase_end(self, engine, phase) -> None:
        self.phases.append(phase["name"])


def test_fit_module_trains_through_the_phases_of_a_strategy_with_metrics_and_callbacks(tmp_path):
    net = Net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    counter = Counter()
    r = headstart.fit_module(net, data(24, 0), data(12, 1), body="backbone", strategy="lp-ft", epochs=2,
                             head_epochs=1, batch_size=8, lr=0.05, preprocess=lambda x: (x - 0.5) / 0.25,
                             metrics={"error": lambda out, y: float((out.argmax(1) != y).float().mean())},
                             callbacks=[counter], out=tmp_path / "mine")
    assert [p["name"] for p in r.phases] == ["head", "finetune"] == counter.phases
    assert counter.epochs == [1, 2, 3] and counter.steps == 3 * 3
    assert all({"train_loss", "val_loss", "val_accuracy", "val_error"} <= set(h) for h in r.history)
    assert all(h["val_error"] == pytest.approx(1 - h["val_accuracy"]) for h in r.history)
    after_head = r.history[0]
    assert after_head["phase"] == 0
    trained = r.model.state_dict()
    assert not torch.equal(trained["fc.weight"], start["fc.weight"])
    assert not torch.equal(trained["backbone.0.0.weight"], start["backbone.0.0.weight"])  # finetune moved the body
    assert (tmp_path / "mine" / "model.safetensors").is_file() and not (tmp_path / "mine" / "checkpoint").exists()
    saved = json.loads((tmp_path / "mine" / "metrics.json").read_text())
    assert saved["best_epoch"] == r.best_epoch and len(saved["history"]) == 3


def test_fit_module_partial_freezes_the_lower_groups_and_their_batchnorm(tmp_path):
    net = Net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    r = headstart.fit_module(net, data(24, 0), data(12, 1), body="backbone", strategy="partial:1", epochs=2,
                             batch_size=8, lr=0.05, bn="train")
    sd = r.model.state_dict()
    for k in ("backbone.0.0.weight", "backbone.0.1.running_mean", "backbone.1.0.weight", "backbone.1.1.running_mean"):
        assert torch.equal(sd[k], start[k]), k  # frozen groups: weights and BatchNorm statistics unchanged
    assert not torch.equal(sd["backbone.2.0.weight"], start["backbone.2.0.weight"])


def test_fit_module_with_a_regression_loss_keeps_the_lowest_validation_loss():
    class Reg(Net):
        def forward(self, x):
            return self.fc(self.backbone(x))[:, 0]

    train = torch.utils.data.TensorDataset(data(24, 0).tensors[0], data(24, 0).tensors[1].float())
    val = torch.utils.data.TensorDataset(data(12, 1).tensors[0], data(12, 1).tensors[1].float())
    r = headstart.fit_module(Reg(), train, val, body="backbone", loss=nn.functional.mse_loss, epochs=3, batch_size=8)
    losses = [h["val_loss"] for h in r.history]
    assert "val_accuracy" not in r.history[0]
    assert r.best_epoch == 1 + losses.index(min(losses))


def test_fit_module_stopped_resumes_to_the_same_weights(tmp_path):
    kw = dict(body="backbone", strategy="gradual", epochs=4, unfreeze_every=1, batch_size=8, lr=0.05)
    straight = headstart.fit_module(Net(), data(24, 0), data(12, 1), out=tmp_path / "a", **kw)

    class Stop(Callback):
        def on_epoch_end(self, engine, record) -> None:
            if record["epoch"] == 3:  # inside gradual's third phase
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        headstart.fit_module(Net(), data(24, 0), data(12, 1), out=tmp_path / "b", callbacks=[Stop()], **kw)
    assert RunState.from_dict(json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())).global_epoch == 3
    resumed = headstart.fit_module(Net(), data(24, 0), data(12, 1), out=tmp_path / "b", resume=True, **kw)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]


def test_fit_module_bad_input_names_the_parameter():
    with pytest.raises(HeadstartError, match="body='trunk' is not a submodule of Net .its children: backbone, fc"):
        headstart.fit_module(Net(), data(6, 0), body="trunk")
    with pytest.raises(HeadstartError, match="score='f1' is not one of the metrics"):
        headstart.fit_module(Net(), data(6, 0), body="backbone", score="f1")
    with pytest.raises(HeadstartError, match="--lr must be > 0"):
        headstart.fit_module(Net(), data(6, 0), body="backbone", lr=-1)
    with pytest.raises(HeadstartError, match="partial:1 to partial:3"):
        headstart.fit_module(Net(), data(6, 0), body="backbone", strategy="partial:5")
