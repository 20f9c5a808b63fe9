"""A small CNN trained on the dataset's own (possibly noisy) labels; its penultimate layer embeds."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.data.dataset import Dataset
from core.embeddings.batches import batched_inference, channel_stats, to_tensor
from core.embeddings.config import EmbedConfig
from core.progress import Reporter

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """Three conv blocks, global average pooling, a hidden layer (the embedding), a linear head."""

    def __init__(self, in_channels: int, n_classes: int, width: int, embed_dim: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
            )

        w = width
        self.body = nn.Sequential(
            block(in_channels, w), nn.MaxPool2d(2),
            block(w, 2 * w), nn.MaxPool2d(2),
            block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * w, embed_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(embed_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` normalised images -> ``(B, n_classes)`` logits."""
        return self.head(self.body(x))


def small_cnn(
    dataset: Dataset,
    device: torch.device,
    reporter: Reporter,
    seed: int,
    cfg: EmbedConfig,
    *,
    train_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Train :class:`SmallCNN` on ``train_rows`` (default all) with their labels; embed all.

    Returns ``(N, cnn_embed_dim)`` for every example, trained or not.

    Images are resized to the square ``max(H, W)`` clipped to
    ``[cfg.cnn_min_side, cfg.cnn_max_side]`` and normalised per channel with the
    dataset's mean and std. Initialisation and shuffles come from ``seed`` only
    (the global RNGs are left untouched), so CPU runs are bit-for-bit
    repeatable; CUDA runs agree up to cuDNN's non-determinism.
    """
    images = dataset.images  # (N, H, W, C) uint8
    n, h, w, c = images.shape
    side = int(min(max(h, w, cfg.cnn_min_side), cfg.cnn_max_side))
    chan_mean, chan_std = channel_stats(images)  # chunked: no float64 copy of the whole stack
    mean = torch.tensor(chan_mean / 255.0, dtype=torch.float32)
    std = torch.tensor(chan_std / 255.0, dtype=torch.float32)
    mean = mean.view(1, c, 1, 1).to(device)
    std = std.clamp_min(1e-3).view(1, c, 1, 1).to(device)
    labels = torch.from_numpy(dataset.labels.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(c, dataset.n_classes, cfg.cnn_width, cfg.cnn_embed_dim).to(device)

    fit = np.arange(n) if train_rows is None else np.asarray(train_rows, dtype=np.int64)
    n_fit = len(fit)
    bs = min(cfg.batch_size, n_fit)
    total = max(1, cfg.cnn_epochs * -(-n_fit // bs))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.cnn_lr, weight_decay=cfg.cnn_weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.cnn_lr, total_steps=total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.cnn_label_smoothing)
    model.train()
    step, every = 0, max(1, total // 100)  # about 100 progress reports over the training
    for epoch in range(cfg.cnn_epochs):
        order = fit[torch.randperm(n_fit, generator=gen).numpy()]
        for s in range(0, n_fit, bs):
            reporter.check_cancelled()
            idx = np.sort(order[s : s + bs])
            if len(idx) < 2:  # BatchNorm cannot train on a single example
                continue
            x = (to_tensor(images[idx], device, side) - mean) / std
            loss = loss_fn(model(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % every == 0:
                reporter.report(
                    "embedding", 0.9 * step / total, f"small_cnn: epoch {epoch + 1}/{cfg.cnn_epochs}"
                )

    def forward(batch: np.ndarray) -> torch.Tensor:
        return model.body((to_tensor(batch, device, side) - mean) / std)

    return batched_inference(forward, images, model, reporter, batch_size=cfg.batch_size, start=0.9)
