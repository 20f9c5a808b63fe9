"""Tests of core.embeddings: each backbone, the "auto" rule, weights handling, cache and progress."""

from __future__ import annotations

import socket
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from memmap_helpers import is_mapped
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import core.embeddings as emb
from core.data.dataset import Dataset
from core.embeddings import EmbedConfig, available_backbones, embed, resolve_backbone
from core.embeddings.cache import cache_key
from core.errors import ConfigError, DataError, JobCancelled

FAST_CNN = EmbedConfig(cnn_epochs=2, cnn_width=8, cnn_embed_dim=32)


def _dataset(*, images=None, features=None, labels=None, name="t") -> Dataset:
    data = images if images is not None else features
    n = len(data)
    if labels is None:
        labels = np.arange(n) % 3
    labels = np.asarray(labels, dtype=np.int64)
    names = tuple(str(c) for c in range(int(labels.max()) + 1))
    ids = np.array([f"x{i}" for i in range(n)])
    return Dataset(name, ids, labels, names, features=features, images=images)


def _images(n=12, h=20, w=20, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    d = load_digits()
    imgs = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    return _dataset(images=imgs, labels=d.target, name="digits")


@pytest.fixture
def no_hub_weights(tmp_path, monkeypatch):
    """An empty torch hub dir, so no ImageNet weights are found."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def resnet_weights(tmp_path):
    """A randomly initialised ResNet-18 state_dict written to a file (stands in for ImageNet's)."""
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


class Recorder:
    """A reporter that records events and can cancel after a number of checks."""

    def __init__(self, cancel_after=None):
        self.events, self.checks, self.cancel_after = [], 0, cancel_after

    def report(self, stage, fraction, message=""):
        self.events.append((stage, fraction, message))

    def check_cancelled(self):
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled()


# ------------------------------------------------------------------------------ standardize, pixels


def test_standardize_matches_reference_and_zeroes_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, size=(50, 4)).astype(np.float32)
    x[:, 2] = 7.5  # constant column
    out = embed(_dataset(features=x))
    assert out.dtype == np.float32 and out.shape == (50, 4)
    v = x[:, [0, 1, 3]]
    np.testing.assert_allclose(out[:, [0, 1, 3]], (v - v.mean(0)) / v.std(0), rtol=1e-4, atol=1e-5)
    assert np.all(out[:, 2] == 0)
    np.testing.assert_allclose(out[:, [0, 1, 3]].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, [0, 1, 3]].std(0), 1, atol=1e-4)


def test_standardize_rejects_non_finite_features():
    x = np.ones((6, 2), dtype=np.float32)
    x[1, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        embed(_dataset(features=x), backbone="standardize")


def test_pixels_flattens_and_standardises(digits):
    out = embed(digits, backbone="pixels")
    assert out.shape == (1797, 64) and out.dtype == np.float32
    flat = digits.images.reshape(1797, 64).astype(np.float64)
    std = flat.std(0)
    keep = std > 0
    ref = (flat[:, keep] - flat[:, keep].mean(0)) / std[keep]
    np.testing.assert_allclose(out[:, keep], ref, atol=1e-4)
    assert np.all(out[:, ~keep] == 0)  # always-blank corner pixels


def test_pixels_pools_large_images_to_max_side():
    ds = _dataset(images=_images(n=6, h=64, w=48, c=3))
    out = embed(ds, backbone="pixels", config=EmbedConfig(pixels_max_side=16))
    assert out.shape == (6, 16 * 12 * 3)


# ------------------------------------------------------------------------------ small CNN


def test_small_cnn_is_deterministic_offline_and_leaves_global_rng_alone(digits, offline):
    sub = _dataset(images=digits.images[:150], labels=digits.labels[:150])
    state = torch.random.get_rng_state()
    a = embed(sub, backbone="small_cnn", seed=0, config=FAST_CNN, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    b = embed(sub, backbone="small_cnn", seed=0, config=FAST_CNN, device="cpu")
    c = embed(sub, backbone="small_cnn", seed=1, config=FAST_CNN, device="cpu")
    assert a.shape == (150, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("shape", [(24, 24, 3), (40, 30, 1)])
def test_small_cnn_handles_rgb_and_non_square_images(shape):
    h, w, c = shape
    ds = _dataset(images=_images(n=10, h=h, w=w, c=c))
    out = embed(ds, backbone="small_cnn", config=FAST_CNN)
    assert out.shape == (10, 32) and np.isfinite(out).all()


@pytest.mark.slow
def test_small_cnn_default_embeds_digits_well(digits):
    out = embed(digits, backbone="small_cnn")
    acc = cross_val_score(KNeighborsClassifier(5), out, digits.labels, cv=3).mean()
    assert out.shape == (1797, 128) and acc > 0.93


# ------------------------------------------------------------------------------ ResNet-18


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_matches_torchvision_reference(resnet_weights, channels, offline):
    images = _images(n=5, h=20, w=28, c=channels)
    out = embed(_dataset(images=images), backbone="resnet18", weights_path=resnet_weights, device="cpu")
    assert out.shape == (5, 512) and out.dtype == np.float32

    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.load(resnet_weights, weights_only=True))
    model.fc = torch.nn.Identity()
    model.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model((x - mean) / std).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_resnet18_accepts_finetuned_head_and_wrapped_checkpoints(tmp_path):
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    path = tmp_path / "ckpt.pt"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    cfg = EmbedConfig(resnet_image_size=32)
    out = embed(_dataset(images=_images(n=3)), backbone="resnet18", weights_path=path, config=cfg)
    assert out.shape == (3, 512)


def _write_garbage(p):
    p.write_bytes(b"this is not a torch file")


def _write_linear(p):
    torch.save(torch.nn.Linear(3, 2).state_dict(), p)


def _write_model_object(p):
    torch.save(torchvision.models.resnet18(weights=None), p)


def _write_resnet34(p):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), p)


@pytest.mark.parametrize(
    ("writer", "match"),
    [
        (_write_garbage, "Could not read"),
        (_write_linear, "not a ResNet-18"),
        (_write_model_object, "Could not read|not a state_dict"),
        (_write_resnet34, "not a ResNet-18"),
    ],
)
def test_wrong_weights_file_gives_clear_config_error(tmp_path, writer, match):
    path = tmp_path / "bad.pth"
    writer(path)
    with pytest.raises(ConfigError, match=match):
        embed(_dataset(images=_images(n=3)), backbone="resnet18", weights_path=path)


def test_missing_weights_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        embed(_dataset(images=_images(n=3)), backbone="resnet18", weights_path=tmp_path / "nope.pth")


def test_explicit_resnet18_without_weights_and_no_download_errors(no_hub_weights, offline):
    with pytest.raises(ConfigError, match="weights_path") as err:
        embed(_dataset(images=_images(n=3, h=32, w=32)), backbone="resnet18")
    assert "allow_download" in str(err.value)


def test_failed_download_is_clear_for_resnet18_and_falls_back_for_auto(no_hub_weights, monkeypatch):
    def fail(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    ds = _dataset(images=_images(n=4, h=32, w=32))
    with pytest.raises(ConfigError, match="Could not download"):
        embed(ds, backbone="resnet18", allow_download=True)
    used = []
    monkeypatch.setattr(emb, "_compute_embedding", lambda d, name, *a: used.append(name) or np.zeros((4, 2)))
    embed(ds, allow_download=True)
    assert used == ["small_cnn"]


def test_weights_in_hub_cache_are_used_by_auto(no_hub_weights, resnet_weights):
    ds = _dataset(images=_images(n=3, h=32, w=32))
    assert resolve_backbone(ds) == "small_cnn"
    target = emb.resnet18_weights_file()
    assert target.parent.parent == no_hub_weights
    target.parent.mkdir(parents=True)
    target.write_bytes(resnet_weights.read_bytes())
    assert resolve_backbone(ds) == "resnet18"
    out = embed(ds, config=EmbedConfig(resnet_image_size=32))
    assert out.shape == (3, 512)


# ------------------------------------------------------------------------------ auto rule, validation


def test_auto_rule(digits, no_hub_weights, resnet_weights):
    tab = _dataset(features=np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32))
    big = _dataset(images=_images(n=3, h=17, w=16))
    assert resolve_backbone(tab) == "standardize"
    assert resolve_backbone(digits) == "pixels"  # 8x8: tiny
    assert resolve_backbone(_dataset(images=_images(n=3, h=16, w=16))) == "pixels"
    assert resolve_backbone(big) == "small_cnn"  # no weights anywhere
    assert resolve_backbone(big, allow_download=True) == "resnet18"
    assert resolve_backbone(digits, weights_path=resnet_weights) == "resnet18"
    assert resolve_backbone(digits, backbone="small_cnn") == "small_cnn"
    assert embed(tab).shape == (9, 3)
    assert embed(digits).shape == (1797, 64)


def test_available_backbones_lists_all():
    names = available_backbones()
    assert set(names) == {"auto", "standardize", "pixels", "small_cnn", "resnet18"}
    assert all(isinstance(v, str) and v for v in names.values())


@pytest.mark.parametrize(
    ("kind", "backbone", "match"),
    [
        ("tabular", "pixels", "needs images"),
        ("tabular", "resnet18", "needs images"),
        ("image", "standardize", "for tabular"),
        ("image", "clip", "Unknown backbone"),
    ],
)
def test_backbone_must_fit_the_data(kind, backbone, match):
    if kind == "tabular":
        ds = _dataset(features=np.zeros((4, 2), dtype=np.float32))
    else:
        ds = _dataset(images=_images(n=4))
    with pytest.raises(ConfigError, match=match):
        embed(ds, backbone=backbone)


def test_type_and_config_errors():
    ds = _dataset(images=_images(n=4))
    with pytest.raises(TypeError, match="Dataset"):
        embed(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="seed"):
        embed(ds, seed=1.5)
    with pytest.raises(TypeError, match="backbone"):
        embed(ds, backbone=None)
    with pytest.raises(TypeError, match="EmbedConfig"):
        embed(ds, config={"cnn_epochs": 1})
    with pytest.raises(ConfigError, match="device"):
        embed(ds, device="tpu")
    with pytest.raises(ConfigError, match="batch_size"):
        EmbedConfig(batch_size=0)
    with pytest.raises(ConfigError, match="cnn_min_side"):
        EmbedConfig(cnn_min_side=64, cnn_max_side=32)
    with pytest.raises(ConfigError, match="label_smoothing"):
        EmbedConfig(cnn_label_smoothing=1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA"):
        embed(_dataset(images=_images(n=4)), device="cuda")


# ------------------------------------------------------------------------------ cache


def test_cache_hit_does_not_recompute(tmp_path, monkeypatch):
    ds = _dataset(images=_images(n=10, h=24, w=24))
    first = embed(ds, backbone="small_cnn", cache_dir=tmp_path, config=FAST_CNN)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # no temporary file left behind

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite a cached result")

    monkeypatch.setattr(emb, "_compute_embedding", boom)
    rec = Recorder()
    again = embed(ds, backbone="small_cnn", cache_dir=tmp_path, config=FAST_CNN, reporter=rec)
    np.testing.assert_array_equal(first, again)
    assert rec.events[-1][1] == 1.0 and "cache" in rec.events[-1][2]
    with pytest.raises(AssertionError, match="recomputed"):  # another seed is another key
        embed(ds, backbone="small_cnn", cache_dir=tmp_path, config=FAST_CNN, seed=1)


def test_cache_key_tracks_labels_seed_weights_and_settings(tmp_path, resnet_weights):
    ds = _dataset(images=_images(n=6))
    relabelled = _dataset(images=_images(n=6), labels=[0, 1, 1, 0, 2, 2])
    key = cache_key(ds, "small_cnn", FAST_CNN, seed=0, weights=None)
    assert key == cache_key(ds, "small_cnn", FAST_CNN, seed=0, weights=None)
    assert key != cache_key(relabelled, "small_cnn", FAST_CNN, seed=0, weights=None)
    assert key != cache_key(ds, "small_cnn", FAST_CNN, seed=1, weights=None)
    assert key != cache_key(ds, "small_cnn", EmbedConfig(cnn_epochs=3), seed=0, weights=None)
    # pixels do not depend on labels or seed
    assert cache_key(ds, "pixels", FAST_CNN, seed=0, weights=None) == cache_key(
        relabelled, "pixels", FAST_CNN, seed=5, weights=None
    )
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other)
    cfg = EmbedConfig()
    k1 = cache_key(ds, "resnet18", cfg, seed=0, weights=resnet_weights)
    assert k1 != cache_key(ds, "resnet18", cfg, seed=0, weights=other)
    assert k1 != cache_key(ds, "resnet18", EmbedConfig(resnet_image_size=112), seed=0, weights=resnet_weights)


def test_damaged_cache_file_is_recomputed(tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    ds = _dataset(features=x)
    first = embed(ds, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(b"garbage")
    np.testing.assert_array_equal(embed(ds, cache_dir=tmp_path), first)
    assert np.load(path).shape == (8, 3)


# ------------------------------------------------------------------------------ progress, cancellation


def test_progress_is_reported_and_monotone():
    ds = _dataset(images=_images(n=40, h=12, w=12))
    rec = Recorder()
    embed(ds, backbone="small_cnn", config=EmbedConfig(cnn_epochs=2, cnn_width=8, batch_size=8), reporter=rec)
    fractions = [f for _, f, _ in rec.events]
    assert {s for s, _, _ in rec.events} == {"embedding"}
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert np.all(np.diff(fractions) >= 0)
    assert rec.checks >= 10 + 5  # every training and inference batch


def test_cancellation_stops_between_batches_and_caches_nothing(tmp_path):
    ds = _dataset(images=_images(n=40, h=20, w=20))
    rec = Recorder(cancel_after=3)
    cfg = EmbedConfig(cnn_epochs=2, cnn_width=8, batch_size=8)
    with pytest.raises(JobCancelled):
        embed(ds, backbone="small_cnn", config=cfg, reporter=rec, cache_dir=tmp_path)
    assert rec.checks == 4
    assert list(tmp_path.iterdir()) == []


def test_small_cnn_learns_only_from_train_rows(tmp_path):
    """Labels outside ``train_rows`` (validation, test) must not change the embedding."""
    from sklearn.datasets import load_digits

    from core.data.dataset import Dataset
    from core.embeddings import EmbedConfig, embed

    d = load_digits()
    n = 300
    images = np.repeat(np.repeat((d.images[:n] / 16 * 255).astype(np.uint8), 2, 1), 2, 2)[..., None]
    labels = d.target[:n].astype(np.int64)
    train = np.arange(200)
    cfg = EmbedConfig(cnn_epochs=1)

    def make(lbl):
        return Dataset(name="d", ids=np.array([f"i{i}" for i in range(n)], dtype=object),
                       labels=lbl, class_names=tuple("0123456789"), images=images)

    shuffled = labels.copy()
    shuffled[200:] = np.random.default_rng(0).permutation(shuffled[200:])
    a = embed(make(labels), backbone="small_cnn", config=cfg, train_rows=train, cache_dir=tmp_path)
    b = embed(make(shuffled), backbone="small_cnn", config=cfg, train_rows=train, cache_dir=tmp_path)
    np.testing.assert_array_equal(a, b)
    c = embed(make(shuffled), backbone="small_cnn", config=cfg, cache_dir=tmp_path)
    assert not np.array_equal(a, c)  # trained on all rows, the other labels matter


def test_large_cache_hit_is_memory_mapped_read_only_and_survives_a_rewrite(tmp_path, monkeypatch):
    import core.embeddings.cache as cache

    x = np.random.default_rng(0).normal(size=(4200, 64)).astype(np.float32)  # 1.07 MB > 1 MiB
    ds = _dataset(features=x)
    first = embed(ds, cache_dir=tmp_path)
    assert not is_mapped(first)  # freshly computed: in memory
    monkeypatch.setattr(cache, "FINITE_CHECK_ROWS", 1000)  # the check streams in blocks
    hit = embed(ds, cache_dir=tmp_path)
    assert is_mapped(hit) and type(hit) is np.ndarray and hit.dtype == np.float32
    np.testing.assert_array_equal(hit, first)
    with pytest.raises(ValueError, match="read-only"):
        hit[0, 0] = 1.0
    rows = hit[[3, 1]]  # what callers do: index rows out, which copies
    rows[0, 0] = 7.0
    (path,) = tmp_path.glob("*.npy")
    path.unlink()  # recompute and replace the file while the old one is still mapped
    again = embed(ds, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(hit, first)  # the old map stays valid
    damaged = np.load(path)
    damaged[3500, 5] = np.nan  # a NaN in a later block is caught
    np.save(path, damaged)
    np.testing.assert_array_equal(embed(ds, cache_dir=tmp_path), first)
    assert np.isfinite(np.load(path)).all()  # rewritten


def test_small_cache_hit_is_read_whole(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    ds = _dataset(features=x)
    embed(ds, cache_dir=tmp_path)
    hit = embed(ds, cache_dir=tmp_path)
    assert not is_mapped(hit) and hit.flags.writeable
