"""A node's ports: Ray refuses to start when one of its single ports lies inside its worker
range (CI saw it once in a few dozen starts), so the two are drawn from disjoint ranges."""

from __future__ import annotations

import socket

from core.cluster import local


def test_worker_ranges_lie_below_the_single_ports_and_never_overlap():
    singles = local._free_ports(7)
    starts = [local._free_worker_range() for _ in range(20)]
    try:
        blocks = [set(range(s, s + local.WORKERS_PER_NODE + 1)) for s in starts]
        for i, block in enumerate(blocks):
            assert not block & set(singles)
            assert max(block) < 32_768  # Linux's ephemeral range, where bind(0) draws
            for other in blocks[i + 1:]:
                assert not block & other
    finally:
        for block in blocks:
            local._claimed_worker_ports.difference_update(block)


def test_a_worker_range_skips_ports_in_use(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 20_100))
        monkeypatch.setattr(local, "WORKER_PORTS", range(20_000, 20_400))
        start = local._free_worker_range()
        local._claimed_worker_ports.difference_update(range(start, start + local.WORKERS_PER_NODE + 1))
    assert not start <= 20_100 <= start + local.WORKERS_PER_NODE
