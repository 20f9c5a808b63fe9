"""HOST-CP's subset selection: the convex batch problem, its differentiable layer, the selector."""

from __future__ import annotations

from core.selection.config import ScaleConfig
from core.selection.layer import SelectionLayer
from core.selection.problem import BatchProblem, build_problem
from core.selection.selector import HostCPConfig, HostCPSelector

__all__ = ["BatchProblem", "build_problem", "SelectionLayer", "HostCPConfig", "HostCPSelector", "ScaleConfig"]
