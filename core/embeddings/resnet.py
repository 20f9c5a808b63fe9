"""ImageNet ResNet-18 features: finding, downloading and checking the weights, and batched inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.embeddings.batches import batched_inference, to_tensor
from core.embeddings.config import EmbedConfig
from core.errors import ConfigError
from core.progress import Reporter

__all__ = ["RESNET18_URL", "load_resnet18", "locate_weights", "resnet18", "resnet18_weights_file"]

_FILE = "resnet18-f37072fd.pth"  # torchvision's name for the ImageNet-1k v1 weights
RESNET18_URL = "https://download.pytorch.org/models/" + _FILE
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet18_weights_file() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 weights: ``<torch hub dir>/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _FILE


def locate_weights(weights_path: str | Path | None, allow_download: bool) -> Path:
    """The weights file to use: ``weights_path``, else the hub cache, else a download if allowed.

    Raises:
        ConfigError: the file does not exist, or the download is off or failed.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"ResNet-18 weights file {str(path)!r} does not exist; pass the path of a "
                "state_dict saved with torch.save(model.state_dict(), path)."
            )
        return path
    path = resnet18_weights_file()
    if path.is_file():
        return path
    if not allow_download:
        raise ConfigError(
            f"ImageNet ResNet-18 weights were not found at {str(path)!r} and downloading is off. "
            "Pass weights_path=<state_dict file>, allow downloading (allow_download=True), "
            "or use backbone 'small_cnn' or 'pixels', which need no weights."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(RESNET18_URL, str(path), hash_prefix="f37072fd", progress=False)
    except Exception as e:  # URLError, OSError, hash mismatch (RuntimeError)...
        raise ConfigError(
            f"Could not download the ResNet-18 weights from {RESNET18_URL} ({e}). Offline? Copy "
            f"{_FILE} to {str(path)!r}, pass weights_path, or use backbone 'small_cnn'."
        ) from e
    return path


def load_resnet18(path: Path) -> nn.Module:
    """ResNet-18 with ``fc`` replaced by the identity, weights from the state_dict at ``path``.

    Accepts a plain state_dict, one wrapped under ``"state_dict"`` or ``"model"``,
    and ``module.``-prefixed keys (DataParallel); any ``fc.*`` head is ignored, so
    fine-tuned checkpoints with another number of classes load too.

    Raises:
        ConfigError: unreadable file, not a state_dict, or not a ResNet-18's.
    """
    import torchvision

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(
            f"Could not read {str(path)!r} as a PyTorch state_dict ({type(e).__name__}: {e}). "
            "Expected a file written by torch.save(resnet18.state_dict(), path)."
        ) from e
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"{str(path)!r} holds a {type(state).__name__}, not a state_dict of tensors; save "
            "model.state_dict() rather than the model or a training checkpoint."
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ConfigError(f"{str(path)!r} is not a ResNet-18 state_dict: {str(e)[:300]}") from e
    if missing or unexpected:
        raise ConfigError(
            f"{str(path)!r} is not a ResNet-18 state_dict: {len(missing)} weights missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            "Pass the state_dict of torchvision.models.resnet18."
        )
    return model


def resnet18(
    images: np.ndarray, weights: Path, device: torch.device, reporter: Reporter, cfg: EmbedConfig
) -> np.ndarray:
    """``(N, 512)`` penultimate ResNet-18 features of ``(N, H, W, C)`` uint8 images.

    Each image is scaled to [0, 1], resized whole to ``cfg.resnet_image_size``
    squared, grey replicated to 3 channels, and ImageNet-normalised.
    """
    model = load_resnet18(weights).to(device)
    size = cfg.resnet_image_size
    mean = torch.tensor(_IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def forward(batch: np.ndarray) -> torch.Tensor:
        x = to_tensor(batch, device, size)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return model((x - mean) / std)

    return batched_inference(forward, images, model, reporter, batch_size=cfg.batch_size)
