"""cvxpy, imported without importing ``torch._dynamo`` (a fixed cost of 1.5-4 s a process).

cvxpy imports every installed solver interface when it is first imported, and so imports
``moreau``; ``moreau.torch`` decorates three functions with ``@torch.compiler.disable``,
which imports ``torch._dynamo`` (torch's compiler front end, about as slow to import as
torch itself) only to mark them "never compile". The engine never calls ``torch.compile``,
so that mark changes nothing here. While cvxpy (and with it moreau) is first imported,
``torch.compiler.disable`` is an identity decorator; it is restored at once. If the
compiler was already imported by someone else, nothing is patched. Measured
(``python -X importtime``, loaded 2-core machine): ``import cvxpy`` after torch 3.4-4.6 s
with the compiler, 2.9 s without it (issue 10, fixed costs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["cp"]


def _identity(fn: Callable | None = None, recursive: bool = True, **_: Any) -> Any:
    """``torch.compiler.disable``'s signature, doing nothing (used as ``@disable`` and ``@disable()``)."""
    return fn if fn is not None else (lambda f: f)


def _import_cvxpy() -> Any:
    if "cvxpy" in sys.modules or "torch._dynamo" in sys.modules:
        import cvxpy

        return cvxpy
    real = torch.compiler.disable
    torch.compiler.disable = _identity
    try:
        import cvxpy
    finally:
        torch.compiler.disable = real
    return cvxpy


cp = _import_cvxpy()
