"""Names, descriptions and tuning knobs of the embedding backbones."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.errors import ConfigError

__all__ = ["BACKBONES", "IMAGE_BACKBONES", "TINY_PIXELS", "EmbedConfig"]

BACKBONES: dict[str, str] = {
    "standardize": "Tabular: each feature standardised to zero mean and unit variance.",
    "pixels": "Images: raw pixels flattened and standardised (best for tiny images).",
    "small_cnn": "Images: a small CNN trained on this dataset's labels (offline).",
    "resnet18": "Images: ImageNet ResNet-18 penultimate features (512-d; needs weights).",
}
IMAGE_BACKBONES = ("pixels", "small_cnn", "resnet18")
TINY_PIXELS = 16 * 16  # "auto": images with H * W at most this use "pixels"


@dataclass(frozen=True)
class EmbedConfig:
    """Tuning knobs of the backbones; each field is part of the cache key of its backbone."""

    batch_size: int = 128  # examples per forward pass (inference) and per training step
    pixels_max_side: int = 32  # "pixels": larger images are average-pooled to fit in this side
    resnet_image_size: int = 224  # "resnet18": images are resized to this square (ImageNet's)
    cnn_min_side: int = 16  # "small_cnn": images are resized to the square max(H, W), ...
    cnn_max_side: int = 32  # ... clipped to [cnn_min_side, cnn_max_side]
    cnn_width: int = 16  # "small_cnn": channels of the first conv block (x2, x4 after)
    cnn_embed_dim: int = 128  # "small_cnn": size of the penultimate layer (the embedding)
    cnn_epochs: int = 10  # enough to learn the classes, too few to memorise most label noise
    cnn_lr: float = 3e-3  # AdamW peak learning rate (one-cycle schedule)
    cnn_weight_decay: float = 5e-4  # AdamW weight decay
    cnn_label_smoothing: float = 0.1  # softens the pull of wrong labels

    def __post_init__(self) -> None:
        sizes = {k: v for k, v in asdict(self).items() if isinstance(v, int) and k != "cnn_epochs"}
        bad = sorted(k for k, v in sizes.items() if v < 1)
        if self.cnn_epochs < 0:
            bad.append("cnn_epochs")
        if bad or self.cnn_min_side > self.cnn_max_side or not self.cnn_lr > 0:
            raise ConfigError(
                f"Invalid EmbedConfig: sizes must be >= 1 and cnn_epochs >= 0 (bad: {bad}), "
                f"cnn_min_side <= cnn_max_side and cnn_lr > 0; got {self}."
            )
        if not 0 <= self.cnn_label_smoothing < 1 or self.cnn_weight_decay < 0:
            raise ConfigError(
                "cnn_label_smoothing must be in [0, 1) and cnn_weight_decay >= 0; "
                f"got {self.cnn_label_smoothing}, {self.cnn_weight_decay}."
            )
