"""The torch MLP evaluator: its hand-written gradient, and agreement with scikit-learn's MLPClassifier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from core.errors import DataError, NotFittedError
from core.mlp import TorchMLPClassifier, _loss_and_grad, _Params


def _blobs(n_classes: int, n: int = 150, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centers = rng.normal(size=(n_classes, d)) * 1.5
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def _sklearn(x, y, seed, max_iter=300, hidden=16):
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=max_iter, random_state=seed, alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


@pytest.mark.parametrize("n_out", [1, 4])
def test_hand_written_gradient_matches_autograd(n_out):
    torch.manual_seed(0)
    d, h, b, alpha = 5, 7, 9, 0.3
    p, grad = _Params(d, h, n_out, torch.device("cpu")), _Params(d, h, n_out, torch.device("cpu"))
    p.flat.copy_(torch.randn(p.flat.shape) * 0.5)
    x = torch.randn(b, d)
    y = torch.zeros(b, n_out)
    if n_out == 1:
        y[:, 0] = (torch.arange(b) % 2).float()
    else:
        y[torch.arange(b), torch.arange(b) % n_out] = 1.0
    loss_b = _loss_and_grad(p, grad, x, y, alpha)

    flat = p.flat.clone().requires_grad_(True)
    ref = _Params(d, h, n_out, torch.device("cpu"))
    n1, n2 = d * h, h * n_out
    w1, w2 = flat[:n1].view(d, h), flat[n1:n1 + n2].view(h, n_out)
    b1, b2 = flat[n1 + n2:n1 + n2 + h], flat[n1 + n2 + h:]
    z = torch.relu(x @ w1 + b1) @ w2 + b2
    if n_out == 1:
        nll = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y[:, 0])
    else:
        nll = torch.nn.functional.cross_entropy(z, y.argmax(1))
    loss = nll + 0.5 * alpha * (w1.square().sum() + w2.square().sum()) / b
    loss.backward()
    assert ref.flat.shape == flat.shape
    np.testing.assert_allclose(grad.flat.numpy(), flat.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert float(loss_b) / b == pytest.approx(float(loss.detach()), rel=1e-5)  # nothing clipped here


@pytest.mark.parametrize("n_classes", [2, 3])
def test_same_weights_batches_and_stop_as_sklearn(n_classes):
    x, y = _blobs(n_classes)
    xt, yt = _blobs(n_classes, n=200, seed=1)
    for seed in (0, 1):
        sk = _sklearn(x, y, seed, max_iter=300)
        tm = TorchMLPClassifier(hidden=16, max_iter=300, seed=seed).fit(x, y)
        assert tm.n_iter_ == sk.n_iter_  # the stop rule fired at the same epoch
        np.testing.assert_allclose(tm.loss_curve_, sk.loss_curve_, rtol=2e-4)
        assert np.mean(tm.predict(xt) == sk.predict(xt)) >= 0.99


def test_first_epoch_loss_is_sklearns_exactly_drawn_init():
    x, y = _blobs(3, n=40)
    sk = _sklearn(x, y, seed=5, max_iter=1)
    tm = TorchMLPClassifier(hidden=16, max_iter=1, seed=5).fit(x, y)
    assert tm.loss_curve_[0] == pytest.approx(sk.loss_curve_[0], rel=1e-6)
    other = TorchMLPClassifier(hidden=16, max_iter=1, seed=6).fit(x, y)
    assert other.loss_curve_[0] != pytest.approx(tm.loss_curve_[0], rel=1e-6)


def test_seeded_and_predicts_only_classes_it_saw():
    x, y = _blobs(3)
    labels = np.array([2, 5, 7])[y]  # labels need not be 0..C-1
    a = TorchMLPClassifier(hidden=8, max_iter=200, seed=3).fit(x, labels)
    b = TorchMLPClassifier(hidden=8, max_iter=200, seed=3).fit(x, labels)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    assert a.loss_curve_ == b.loss_curve_
    assert set(np.unique(a.predict(x))) <= {2, 5, 7}
    assert np.mean(a.predict(x) == labels) > 0.8


def test_cpu_fit_uses_its_threads_and_restores_them(monkeypatch):
    x, y = _blobs(3, n=40)
    seen = []
    real = TorchMLPClassifier._train

    def spy(self, *args):
        seen.append(torch.get_num_threads())
        return real(self, *args)

    monkeypatch.setattr(TorchMLPClassifier, "_train", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        TorchMLPClassifier(hidden=4, max_iter=2).fit(x, y)
        TorchMLPClassifier(hidden=4, max_iter=2, threads=None).fit(x, y)
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_errors():
    x, y = _blobs(3, n=20)
    with pytest.raises(NotFittedError):
        TorchMLPClassifier().predict(x)
    with pytest.raises(DataError):
        TorchMLPClassifier().fit(x, np.zeros(20, int))  # one class
    with pytest.raises(DataError):
        TorchMLPClassifier().fit(x, y[:5])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError):
        TorchMLPClassifier().fit(bad, y)
    with pytest.raises(TypeError):
        TorchMLPClassifier(hidden=0)
    with pytest.raises(TypeError):
        TorchMLPClassifier(max_iter=2.5)
    with pytest.raises(ValueError):
        TorchMLPClassifier(alpha=-1.0)
    with pytest.raises(TypeError):
        TorchMLPClassifier(threads=0)
    fitted = TorchMLPClassifier(hidden=4, max_iter=2).fit(x, y)
    with pytest.raises(DataError):
        fitted.predict(x[:, :3])
    assert fitted.predict(x[:0]).shape == (0,)
