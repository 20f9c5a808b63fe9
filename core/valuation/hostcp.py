"""Registers the HOST-CP selector (core.selection) under the name ``"hostcp"``."""

from __future__ import annotations

from core.selection.selector import HostCPConfig, HostCPSelector
from core.valuation.base import register

__all__ = ["HostCPSelector", "HostCPConfig"]

register("hostcp", "HOST-CP (subset-aware, learned)")(HostCPSelector)
