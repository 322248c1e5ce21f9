"""Strategies, phases, depth groups, freezing, BatchNorm policy, learning rates per group."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from headstart.errors import HeadstartError
from headstart.heads import HeadSpec
from headstart.strategies import (L2SP, Strategy, param_groups, plan, set_modes, set_trainable,
                                  warmup_cosine)
from headstart.surgery import TransferModel, depth_groups, split


def tiny() -> TransferModel:
    torch.manual_seed(0)
    body, _ = split(timm.create_model("test_efficientnet"), "classifier")
    return TransferModel(body, HeadSpec(dropout=0.2).build(256, 3))


@pytest.mark.parametrize("text, name", [("finetune", "finetune"), ("LP-FT", "lp-ft"), ("partial:3", "partial:3"),
                                        ("gradual", "gradual"), ("linear-probe", "linear-probe")])
def test_strategy_names_parse(text, name):
    assert Strategy.parse(text).name == name


@pytest.mark.parametrize("text, message", [("partial", "partial needs the number"), ("partial:x", "e.g. partial:2"),
                                           ("partial:0", "partial needs"), ("magic", "must be one of auto")])
def test_bad_strategy_names(text, message):
    with pytest.raises(HeadstartError, match=message):
        Strategy.parse(text)


def test_partial_beyond_the_groups_says_how_many_there_are():
    with pytest.raises(HeadstartError, match="has 6 depth groups; choose partial:1 to partial:6"):
        Strategy.parse("partial:7").check(6, "m")


def test_plans():
    assert plan(Strategy("linear-probe"), 6, 15, 200, 1) == [plan(Strategy("linear-probe"), 6, 15, 200, 1)[0]]
    lp = plan(Strategy("linear-probe"), 6, 15, 200, 1)[0]
    assert lp.from_cache and lp.epochs == 200
    ft = plan(Strategy("finetune"), 6, 15, 200, 1)
    assert [(p.trainable, p.epochs) for p in ft] == [(6, 15)]
    lpft = plan(Strategy("lp-ft"), 6, 15, 200, 1)
    assert [(p.from_cache, p.trainable, p.epochs) for p in lpft] == [(True, 0, 200), (False, 6, 15)]
    gradual = plan(Strategy("gradual"), 4, 10, 200, 2)
    assert [p.trainable for p in gradual] == [0, 1, 2, 3, 4] and gradual[0].from_cache
    assert sum(p.epochs for p in gradual) == 10 and gradual[-1].epochs == 2
    assert [p.trainable for p in plan(Strategy("partial", 2), 6, 5, 200, 1)] == [2]


@pytest.mark.parametrize("make, n", [
    (lambda: split(timm.create_model("tf_efficientnet_lite0"), "classifier")[0], 8),
    (lambda: split(timm.create_model("test_resnet"), "fc")[0], 5),
    (lambda: split(torchvision.models.mobilenet_v2(), "classifier")[0], 19),
    (lambda: split(torchvision.models.resnet18(), "fc")[0], 5),
    (lambda: split(torchvision.models.vgg11(), "classifier.6")[0], 10),
])
def test_depth_groups_cover_every_parameter_in_order(make, n):
    body = make()
    groups = depth_groups(body)
    names = [name for name, _ in body.named_parameters()]
    assert len(groups) == n
    assert sorted(sum(groups, [])) == sorted(names)  # each parameter in exactly one group
    assert groups[0][0] == names[0]  # the stem comes first


def test_depth_groups_of_a_plain_module_use_its_tree():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.stage = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))

    groups = depth_groups(Net())
    assert groups == [["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"],
                      ["stage.0.weight", "stage.0.bias"], ["stage.1.weight", "stage.1.bias"]]


def test_freezing_trains_the_head_and_the_top_groups_only():
    m = tiny()
    groups = depth_groups(m.body)
    set_trainable(m, groups, 2)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    expected = {f"body.{n}" for g in groups[-2:] for n in g} | {n for n, _ in m.named_parameters() if n.startswith("head.")}
    assert trainable == expected


def _bn(m: nn.Module) -> list[tuple[str, bool]]:
    return [(n, mod.training) for n, mod in m.named_modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]


def test_batchnorm_policy():
    m = tiny()
    groups = depth_groups(m.body)
    set_trainable(m, groups, 1)
    top = {n.rsplit(".", 1)[0] for n in groups[-1]}
    set_modes(m, "train")
    for name, training in _bn(m):
        assert training == (name.removeprefix("body.") in top), name
    assert m.head.dropout.training  # the head trains
    frozen_drop = [mod for n, mod in m.body.named_modules() if n.startswith("blocks.0") and not list(mod.parameters())]
    assert frozen_drop and not any(mod.training for mod in frozen_drop)  # parameter-free parts of frozen groups
    top_convs = [mod for n, mod in m.body.named_modules() if n in top and not isinstance(mod, nn.BatchNorm2d)]
    set_modes(m, "frozen")
    assert not any(t for _, t in _bn(m))  # statistics fixed everywhere, also where weights train
    assert all(mod.training for mod in top_convs)
    with pytest.raises(HeadstartError, match="--bn must be one of"):
        set_modes(m, "sometimes")


def test_frozen_batchnorm_keeps_its_statistics_through_a_training_step():
    m = tiny()
    groups = depth_groups(m.body)
    set_trainable(m, groups, 1)
    set_modes(m, "train")
    before = {k: v.clone() for k, v in m.state_dict().items() if "running_mean" in k}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss = m(torch.randn(4, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    after = m.state_dict()
    top = {f"body.{n.rsplit('.', 1)[0]}" for n in groups[-1]}
    for k, v in before.items():
        changed = not torch.equal(v, after[k])
        assert changed == (k.rsplit(".", 1)[0] in top), k


def test_param_groups_learning_rates_and_decay():
    m = tiny()
    groups = depth_groups(m.body)
    set_trainable(m, groups, 3)
    pg = param_groups(m, groups, 3, lr=1e-2, body_lr_mult=0.1, layer_decay=0.5, weight_decay=0.05, l2sp=0.0)
    by_name = {g["name"]: g for g in pg}
    assert by_name["head"]["lr"] == 1e-2 and by_name["head"]["weight_decay"] == 0.05
    G = len(groups)
    assert by_name[f"body group {G - 1}"]["lr"] == pytest.approx(1e-3)
    assert by_name[f"body group {G - 3}"]["lr"] == pytest.approx(1e-3 * 0.25)
    assert all(g["weight_decay"] == 0.0 for g in pg if g["name"].endswith("(no decay)"))
    trained = {id(p) for g in pg for p in g["params"]}
    assert trained == {id(p) for p in m.parameters() if p.requires_grad}
    l2sp = param_groups(m, groups, 3, 1e-2, 0.1, 1.0, 0.05, l2sp=0.1)
    assert all(g["weight_decay"] == 0.0 for g in l2sp if g["name"].startswith("body"))


def test_l2sp_is_zero_at_the_start_and_pulls_back():
    m = tiny()
    penalty = L2SP(m, alpha=0.5)
    assert float(penalty(m).detach()) == 0.0
    w = next(p for n, p in m.named_parameters() if n.startswith("body."))
    with torch.no_grad():
        w.add_(1.0)
    value = penalty(m)
    assert float(value.detach()) == pytest.approx(0.5 * 0.5 * w.numel(), rel=1e-5)
    value.backward()
    assert torch.allclose(w.grad, torch.full_like(w, 0.5))


def test_warmup_then_cosine():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)
    assert lrs[-1] < 0.05 and all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
