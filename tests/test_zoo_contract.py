"""Every built-in image card: weights present and pinned, shapes right, and the network is the
pretrained one (its ImageNet head names scikit-learn's sample photos correctly). Text cards:
tests/test_text_fit.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.data.transforms import normalize, resize_center_crop
from headstart.fileio import sha256_file
from headstart.surgery import split
from headstart.zoo import BUILTIN_CARDS, is_installed, load_network, locate

# What each card's ImageNet head says about the two photos under the card's own preprocessing:
# (top-1, a class that must be in the top 3). lite0's 'bell cote' (the issue's example) is its
# second guess after 'palace' (0.30 vs 0.17); the dahlia in flower.jpg has no ImageNet class.
EXPECTED = {
    "efficientnet_lite0": {"china.jpg": ("palace", "bell cote"), "flower.jpg": ("daisy", "bee")},
    "efficientnet_lite1": {"china.jpg": ("palace", "monastery"), "flower.jpg": ("honeycomb", "mushroom")},
    "efficientnet_lite2": {"china.jpg": ("palace", "bell cote"), "flower.jpg": ("honeycomb", "ant")},
}


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return {f.rsplit("/", 1)[-1]: Image.fromarray(a) for a, f in zip(data.images, data.filenames)}


def _batch(card, images):
    x = torch.stack([torch.from_numpy(np.array(resize_center_crop(im, card.preprocessing))) for im in images])
    return normalize(x, card.preprocessing, torch.device("cpu"))


@pytest.mark.parametrize("name", sorted(n for n, c in BUILTIN_CARDS.items() if c.modality == "image"))
def test_card_loads_with_pinned_weights_and_right_shapes(name, photos):
    card = BUILTIN_CARDS[name]
    assert is_installed(card), f"{name}: {card.weights.install_command()}"
    path = locate(card)
    assert sha256_file(path) == card.weights.sha256
    assert card.modality == "image" and card.source_size > 1_000_000 and card.license
    net = load_network(card)
    x = _batch(card, photos.values())
    assert x.shape == (2, 3, card.input_size, card.input_size)
    body, old_head = split(net, card.classifier)
    with torch.inference_mode():
        f = body(x)
    assert f.shape == (2, card.num_features)
    assert torch.isfinite(f).all() and f.abs().sum() > 0
    if card.has_source_head:
        with torch.inference_mode():
            logits = old_head(f)
        assert logits.shape == (2, card.source_classes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_imagenet_head_names_the_sample_photos(name, photos):
    from timm.data import ImageNetInfo

    card = BUILTIN_CARDS[name]
    net = load_network(card)
    info = ImageNetInfo()
    with torch.inference_mode():
        probs = net(_batch(card, photos.values())).softmax(-1)
    for fname, p in zip(photos, probs):
        top1, in_top3 = EXPECTED[name][fname]
        top = [info.index_to_description(int(i)) for i in p.topk(3).indices]
        assert top[0].startswith(top1), f"{name} {fname}: top-1 {top[0]!r}, expected {top1!r}"
        assert any(t.startswith(in_top3) for t in top), f"{name} {fname}: {in_top3!r} not in top 3 {top}"


def test_mobilenet_v2_features_are_pretrained_not_random(photos):
    """mobilenet_v2 ships no classifier: check instead that its features separate the two photos'
    crops far better than the same network with random weights does."""
    card = BUILTIN_CARDS["mobilenet_v2"]
    body, _ = split(load_network(card), card.classifier)
    from headstart.zoo import build_architecture

    torch.manual_seed(0)
    rand_body, _ = split(build_architecture(card.architecture).eval(), card.classifier)
    crops = []
    for im in photos.values():
        w, h = im.size
        crops += [im.crop((0, 0, w // 2, h // 2)), im.crop((w // 2, h // 2, w, h)),
                  im.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))]
    x = _batch(card, crops)

    def separation(b):
        with torch.inference_mode():
            f = torch.nn.functional.normalize(b(x), dim=1)
        sim = f @ f.T
        same = (sim[:3, :3].sum() - 3 + sim[3:, 3:].sum() - 3) / 12
        cross = sim[:3, 3:].mean()
        return float(same - cross)

    assert separation(body) > 0.1 and separation(body) > 3 * separation(rand_body)
