"""Choose the torch device: CUDA when present, CPU otherwise, or what the user asked for."""

from __future__ import annotations

import torch

from core.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(preference: str = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda"`` to a usable :class:`torch.device`.

    ``"cuda"`` without a GPU is an error (the user asked for it explicitly);
    ``"auto"`` silently falls back to the CPU.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but no CUDA GPU is available; use auto or cpu.")
        return torch.device(pref)
    raise ConfigError(f"Unknown device {preference!r}; expected auto, cpu or cuda.")
