"""A torch twin of scikit-learn's ``MLPClassifier`` for subset value, so value training can run on a GPU.

Subset value (:mod:`core.evaluate`) trains one small MLP per method, budget and
seed. scikit-learn's ``MLPClassifier`` is CPU-only; this class trains the same
model on any torch device. "The same" is meant literally, so that value curves
do not move when the evaluator changes:

- architecture: one ReLU hidden layer, softmax output (one logistic unit for two
  classes), Glorot-uniform weights and biases (sklearn's ``_init_coef``);
- loss: mean log-loss plus ``0.5 * alpha * sum(W ** 2) / batch`` (weights only);
- Adam as sklearn writes it (lr 1e-3, betas 0.9/0.999, eps 1e-8 added after the
  square root, bias correction in the rate), minibatches of ``min(200, n)``,
  reshuffled every epoch;
- sklearn's stop rule with ``early_stopping=False``: stop when the epoch's training
  loss has not improved by ``tol`` (1e-4) for more than ``n_iter_no_change`` (10)
  epochs, else after ``max_iter`` epochs;
- randomness: the initial weights and every epoch's shuffle are drawn from
  ``numpy.random.RandomState(seed)`` in sklearn's order, so for a seed both start
  from the same weights and see the same batches. What remains is the order of
  float32 arithmetic, so predictions agree on all but a few test points.

Classes are the labels present in the training subset, as in sklearn: a class the
subset lacks is never predicted. Arithmetic is float32 on every device (sklearn keeps
float64 input in float64; the embeddings are float32).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from core.errors import DataError, NotFittedError

__all__ = ["TorchMLPClassifier"]

logger = logging.getLogger(__name__)

LEARNING_RATE = 1e-3  # sklearn's learning_rate_init
BETAS = (0.9, 0.999)  # sklearn's beta_1, beta_2
EPSILON = 1e-8  # sklearn's epsilon
MAX_BATCH = 200  # sklearn's batch_size="auto": min(200, n_samples)
TOL = 1e-4  # sklearn's tol
N_ITER_NO_CHANGE = 10  # sklearn's n_iter_no_change
PREDICT_CHUNK = 65536  # rows per forward pass in predict, to bound device memory


class TorchMLPClassifier:
    """One-hidden-layer MLP trained with Adam on a torch device, seeded like sklearn's.

    Args:
        hidden: Width of the hidden layer (sklearn ``hidden_layer_sizes=(hidden,)``).
        alpha: L2 penalty on the weights.
        max_iter: Most epochs.
        seed: Seed of the initial weights and the epoch shuffles.
        device: Torch device (``"cpu"``, ``"cuda"``, a :class:`torch.device`).
        threads: Torch intra-op threads during a CPU fit (process-wide, restored after;
            ``None`` leaves them). A step is a few small matrix products: on the project's
            2-core machine one thread trained 1.3-1.5x faster than sklearn, two threads
            1.1-6x slower (``benchmarks/evaluator.py``), as for HOST-CP
            (``core.selection.online.TORCH_THREADS``).
    """

    def __init__(
        self,
        *,
        hidden: int = 128,
        alpha: float = 1e-3,
        max_iter: int = 300,
        seed: int = 0,
        device: str | torch.device = "cpu",
        threads: int | None = 1,
    ) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, int | np.integer) or hidden < 1:
            raise TypeError(f"hidden must be a positive int; got {hidden!r}.")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
            raise TypeError(f"max_iter must be a positive int; got {max_iter!r}.")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0; got {alpha!r}.")
        self.hidden, self.alpha = int(hidden), float(alpha)
        self.max_iter, self.seed = int(max_iter), int(seed)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise TypeError(f"threads must be a positive int or None; got {threads!r}.")
        self.device = torch.device(device)
        self.threads = threads
        self.classes_: np.ndarray | None = None
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []
        self._params: _Params | None = None

    # ----------------------------------------------------------------- training
    def fit(self, x: np.ndarray, y: np.ndarray) -> TorchMLPClassifier:
        """Train from scratch on ``x`` ``(N, D)`` with labels ``y`` ``(N,)``; returns ``self``.

        Raises:
            DataError: mismatched shapes, fewer than two classes, non-finite features.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise DataError(f"Expected x (N, D) and y (N,) with N > 0; got {x.shape} and {y.shape}.")
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"An MLP needs at least two classes to train on; got {classes.tolist()}.")
        if not np.isfinite(x).all():
            raise DataError("Features contain NaN or infinite values.")
        self.classes_ = classes
        n, d = x.shape
        n_out = 1 if len(classes) == 2 else len(classes)
        rs = np.random.RandomState(self.seed)
        self._params = self._init_params(rs, d, n_out)
        xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)  # (N, D)
        onehot = np.zeros((n, n_out), np.float32)  # sklearn's LabelBinarizer: (N, 1) for two classes
        if n_out == 1:
            onehot[:, 0] = y_idx
        else:
            onehot[np.arange(n), y_idx] = 1.0
        yt = torch.as_tensor(onehot).to(self.device)  # (N, O)
        limit, before = self.device.type == "cpu" and self.threads is not None, torch.get_num_threads()
        if limit:
            torch.set_num_threads(self.threads)
        try:
            self.loss_curve_ = self._train(xt, yt, rs, n)
        finally:
            if limit:
                torch.set_num_threads(before)
        self.n_iter_ = len(self.loss_curve_)
        return self

    def _init_params(self, rs: np.random.RandomState, d: int, n_out: int) -> _Params:
        """Glorot-uniform weights and biases, drawn in sklearn's order (W1, b1, W2, b2)."""
        params = _Params(d, self.hidden, n_out, self.device)
        for w, b in ((params.w1, params.b1), (params.w2, params.b2)):
            fan_in, fan_out = w.shape
            bound = np.sqrt(6.0 / (fan_in + fan_out))  # sklearn's factor for a ReLU network
            w.copy_(torch.as_tensor(rs.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)))
            b.copy_(torch.as_tensor(rs.uniform(-bound, bound, fan_out).astype(np.float32)))
        return params

    def _train(self, x: torch.Tensor, y: torch.Tensor, rs: np.random.RandomState, n: int) -> list[float]:
        """Adam epochs with sklearn's shuffles and stop rule; returns the per-epoch training loss.

        ``x`` is ``(N, D)``, ``y`` the ``(N, O)`` one-hot targets (``(N, 1)`` 0/1 for two classes).
        """
        p = self._params
        grad = _Params(p.d, p.hidden, p.n_out, self.device)
        m, v = torch.zeros_like(p.flat), torch.zeros_like(p.flat)  # Adam moments
        batch = min(MAX_BATCH, n)
        sample_idx = np.arange(n)
        curve: list[float] = []
        best, stale, t = np.inf, 0, 0
        for _ in range(self.max_iter):
            perm = np.arange(n)
            rs.shuffle(perm)  # what sklearn.utils.shuffle draws
            sample_idx = sample_idx[perm]
            order = torch.as_tensor(sample_idx).to(self.device)  # (N,) this epoch's order
            total = torch.zeros((), device=self.device)
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                total += _loss_and_grad(p, grad, x[idx], y[idx], self.alpha)
                t += 1
                _adam_step(p.flat, grad.flat, m, v, t)
            epoch_loss = float(total) / n  # one device sync per epoch
            curve.append(epoch_loss)
            stale = stale + 1 if epoch_loss > best - TOL else 0
            best = min(best, epoch_loss)
            if stale > N_ITER_NO_CHANGE:
                break
        return curve

    # --------------------------------------------------------------- prediction
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted labels ``(T,)`` (values from the training labels) for ``x`` ``(T, D)``."""
        if self.classes_ is None or self._params is None:
            raise NotFittedError("Call fit(x, y) before predict(x).")
        p = self._params
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != p.d:
            raise DataError(f"Expected x of shape (T, {p.d}); got {x.shape}.")
        out = [np.zeros(0, np.int64)]
        for start in range(0, len(x), PREDICT_CHUNK):
            xb = torch.as_tensor(np.ascontiguousarray(x[start:start + PREDICT_CHUNK], dtype=np.float32))
            z = p.logits(xb.to(self.device))  # (B, O)
            pick = (z[:, 0] > 0).long() if p.n_out == 1 else z.argmax(1)
            out.append(pick.cpu().numpy())
        return self.classes_[np.concatenate(out)]


class _Params:
    """The network's tensors as views of one flat buffer, so Adam updates them all in a few ops.

    Layout: ``W1 (D, H) | W2 (H, O) | b1 (H,) | b2 (O,)``; ``weights`` is the ``W1 | W2`` part
    (what the L2 penalty sees). A second instance holds the gradients in the same layout.
    """

    def __init__(self, d: int, hidden: int, n_out: int, device: torch.device) -> None:
        self.d, self.hidden, self.n_out = d, hidden, n_out
        n_w1, n_w2 = d * hidden, hidden * n_out
        self.flat = torch.zeros(n_w1 + n_w2 + hidden + n_out, device=device)
        self.w1 = self.flat[:n_w1].view(d, hidden)
        self.w2 = self.flat[n_w1:n_w1 + n_w2].view(hidden, n_out)
        self.b1 = self.flat[n_w1 + n_w2:n_w1 + n_w2 + hidden]
        self.b2 = self.flat[n_w1 + n_w2 + hidden:]
        self.weights = self.flat[:n_w1 + n_w2]

    def hidden_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ReLU activations ``(B, H)`` and output logits ``(B, O)`` of ``x`` ``(B, D)``."""
        h = torch.addmm(self.b1, x, self.w1).relu_()
        return h, torch.addmm(self.b2, h, self.w2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Output logits ``(B, O)``."""
        return self.hidden_and_logits(x)[1]


def _loss_and_grad(p: _Params, grad: _Params, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """sklearn's ``_backprop`` on one batch: fills ``grad``, returns the batch loss times its size.

    ``x`` ``(B, D)``, ``y`` ``(B, O)`` one-hot. The loss is sklearn's: mean log-loss with
    probabilities clipped to ``[eps, 1 - eps]`` plus ``0.5 * alpha * sum(W ** 2) / B``; the
    gradient is the exact one of the unclipped loss (``softmax - y``), as sklearn's.
    Hand-written rather than autograd: a step is ~30 small kernels, and the autograd and
    optimizer machinery around them cost more than the kernels on a CPU and on a GPU.
    """
    b = x.shape[0]
    h, z = p.hidden_and_logits(x)
    if p.n_out == 1:
        prob = torch.sigmoid(z)  # (B, 1)
        p_true = (1.0 - y - prob).abs_()  # the probability of the given label
    else:
        prob = torch.softmax(z, dim=1)  # (B, O)
        p_true = (prob * y).sum(1)
    eps = torch.finfo(prob.dtype).eps
    loss = p_true.clamp_(eps, 1 - eps).log_().sum().neg_()
    loss += (0.5 * alpha) * torch.dot(p.weights, p.weights)
    delta = prob.sub_(y).div_(b)  # d(loss)/dz, (B, O)
    torch.addmm(p.w2, h.T, delta, beta=alpha / b, out=grad.w2)
    torch.sum(delta, 0, out=grad.b2)
    dh = torch.mm(delta, p.w2.T).mul_(h > 0)  # (B, H)
    torch.addmm(p.w1, x.T, dh, beta=alpha / b, out=grad.w1)
    torch.sum(dh, 0, out=grad.b1)
    return loss


def _adam_step(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int) -> None:
    """One step of sklearn's ``AdamOptimizer`` on flat tensors (bias correction folded into the rate)."""
    b1, b2 = BETAS
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    rate = LEARNING_RATE * np.sqrt(1 - b2**t) / (1 - b1**t)
    param.addcdiv_(m, v.sqrt().add_(EPSILON), value=-rate)
