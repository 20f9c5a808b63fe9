"""A node's ports: Ray refuses to start when one of its single ports lies inside its worker
range (CI saw it once in a few dozen starts), so the two are drawn from disjoint ranges."""

from __future__ import annotations

import socket

import pytest

from core.cluster import local


@pytest.fixture(autouse=True)
def no_claims(monkeypatch):
    """A fresh set of handed-out worker ranges, so a test never leaks its claims."""
    monkeypatch.setattr(local, "_claimed_worker_ports", set())


def test_worker_ranges_lie_below_the_single_ports_and_never_overlap():
    singles = local._free_ports(7)
    blocks = [set(range(s, s + local.WORKERS_PER_NODE + 1))
              for s in (local._free_worker_range() for _ in range(20))]
    for i, block in enumerate(blocks):
        assert not block & set(singles)
        assert max(block) < 32_768  # Linux's ephemeral range, where bind(0) draws
        for other in blocks[i + 1:]:
            assert not block & other


def test_a_worker_range_skips_ports_in_use(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 20_100))
        monkeypatch.setattr(local, "WORKER_PORTS", range(20_000, 20_400))
        start = local._free_worker_range()
    assert not start <= 20_100 <= start + local.WORKERS_PER_NODE
