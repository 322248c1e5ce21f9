"""The feature cache: reused when valid, recomputed when damaged or partial, never trusted blindly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from headstart.data import read_image_data
from headstart.features import FEATURES_FILE, META_FILE, FeatureCache, extract, feature_key
from headstart.surgery import split
from headstart.zoo import get_card, load_network

from conftest import make_image_folder


@pytest.fixture()
def setup(tiny_model, shapes_dir, tmp_path):
    card = get_card(tiny_model["model"], arch=tiny_model["arch"])
    samples = read_image_data(shapes_dir)
    cache = FeatureCache(tmp_path / "cache")
    calls = []

    def body():
        calls.append(1)
        return split(load_network(card), card.classifier)[0]

    def run(c=cache, paths=None):
        return extract(body, card.fingerprint(), card.preprocessing, paths or samples.paths, card.num_features,
                       c, torch.device("cpu"), batch_size=8, num_workers=0)

    return card, samples, cache, run, calls


def test_second_extraction_is_a_verified_hit(setup):
    card, samples, cache, run, calls = setup
    first = run()
    assert not first.cache_hit and len(calls) == 1
    second = run()
    assert second.cache_hit and len(calls) == 1  # the body is not even built on a hit
    assert isinstance(second.array, np.memmap)
    assert np.array_equal(np.asarray(first.array), np.asarray(second.array))
    assert first.array.shape == (len(samples), card.num_features)


def test_features_match_a_direct_forward_pass(setup):
    card, samples, cache, run, _ = setup
    from headstart.data.transforms import ImageLoader, normalize

    feats = np.asarray(run().array)
    body = split(load_network(card), card.classifier)[0]
    load = ImageLoader(card.preprocessing)
    x = normalize(torch.stack([load(p) for p in samples.paths[:4]]), card.preprocessing, torch.device("cpu"))
    with torch.inference_mode():
        ref = body(x).numpy()
    np.testing.assert_allclose(feats[:4], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_meta", "bad_meta"])
def test_damaged_entry_is_detected_and_recomputed(setup, damage, capsys):
    card, samples, cache, run, calls = setup
    good = np.asarray(run().array).copy()
    entry = cache.entry(feature_key(card.fingerprint(), card.preprocessing, samples.paths))
    f = entry / FEATURES_FILE
    if damage == "flip_byte":
        data = bytearray(f.read_bytes())
        data[-7] ^= 0xFF
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:-100])
    elif damage == "drop_meta":
        (entry / META_FILE).unlink()
    else:
        (entry / META_FILE).write_text("{not json")
    again = run()
    assert not again.cache_hit and len(calls) == 2
    assert "damaged" in capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(again.array), good)
    assert run().cache_hit


def test_changed_file_changes_the_key(setup):
    card, samples, cache, run, calls = setup
    run()
    p = samples.paths[0]
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not run().cache_hit


def test_no_cache_writes_nothing(setup, tmp_path):
    card, samples, cache, run, calls = setup
    off = FeatureCache(None)
    r = run(off)
    assert not r.cache_hit and r.array.shape[0] == len(samples)
    assert not (tmp_path / "cache").exists()


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "env-cache"))
    assert FeatureCache.from_options().root == tmp_path / "env-cache"
    assert FeatureCache.from_options(cache_dir=tmp_path / "x").root == tmp_path / "x"
    assert FeatureCache.from_options(no_cache=True).root is None


def test_killed_extraction_leaves_no_entry_and_the_next_run_recomputes(tiny_weights, tmp_path):
    data = make_image_folder(tmp_path / "many", per_class=60, classes=("a", "b"), size=64)
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import torch, sys
        from headstart.data import read_image_data
        from headstart.features import FeatureCache, extract
        from headstart.surgery import split
        from headstart.zoo import get_card, load_network
        import headstart.features as F
        card = get_card("file:{tiny_weights}", arch="timm:test_efficientnet")
        s = read_image_data("{data}")
        slow = F.run_body
        def run_body(*a, **k):  # announce that extraction started, then go slowly
            print("started", flush=True)
            orig = k.get("on_batch")
            def on_batch(f):
                import time; time.sleep(0.2 if sys.argv[1:] == ["slow"] else 0)
                if orig: orig(f)
            k["on_batch"] = on_batch
            return slow(*a, **k)
        F.run_body = run_body
        r = extract(lambda: split(load_network(card), card.classifier)[0], card.fingerprint(), card.preprocessing,
                    s.paths, card.num_features, FeatureCache("{cache}"), torch.device("cpu"), batch_size=4, num_workers=0)
        print("hit" if r.cache_hit else "miss", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, "slow"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    entries = [p for p in (cache / "features").rglob("*") if p.is_dir() and len(p.name) == 64]
    assert entries == [], "a killed run must not leave a complete-looking entry"
    temps = list((cache / "features").rglob(".*.tmp-*"))
    assert temps, "the killed run's temporary folder should still be there (proving it was killed mid-way)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "miss"
    assert not list((cache / "features").rglob(".*.tmp-*")), "the dead run's temporary folder is cleaned up"
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert again.stdout.split()[-1] == "hit"


def test_atomic_writes_have_ordinary_permissions(tmp_path):
    import stat

    from headstart.fileio import atomic_dir, atomic_write_json

    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~mask
