"""The CUDA graph pool's policy (runtime/graph_pool.py): which shapes are captured, which graphs
are kept. Plain Python, so checked here on the CPU; tests/gpu/test_gpu_calls.py runs it with real
graphs."""

import pytest

from blade.runtime.graph_pool import GraphPool


def test_a_shape_is_captured_at_its_second_call():
    pool = GraphPool(max_graphs=4, max_bytes=None)
    assert not pool.wants("a")  # first call: no capture cost on a new shape
    assert pool.wants("a")
    assert pool.add("a", "graph-a", 10) == []
    assert pool.get("a") == "graph-a" and len(pool) == 1 and pool.bytes == 10
    assert not pool.wants("b")
    assert GraphPool(max_graphs=4, max_bytes=None, capture_after=1).wants("b")  # the old behaviour


def test_count_bound_evicts_the_least_recently_used():
    pool = GraphPool(max_graphs=2, max_bytes=None, capture_after=1)
    pool.add("a", "A", 1)
    pool.add("b", "B", 1)
    assert pool.get("a") == "A"  # a is now the most recent
    assert pool.add("c", "C", 1) == ["B"]
    assert pool.keys() == ["a", "c"] and pool.evictions == 1


def test_byte_bound_and_a_graph_too_big_alone():
    pool = GraphPool(max_graphs=10, max_bytes=100, capture_after=1)
    pool.add("a", "A", 60)
    assert pool.add("b", "B", 50) == ["A"]  # 110 > 100: the oldest goes
    assert pool.bytes == 50
    assert pool.add("big", "BIG", 101) == ["BIG"]  # over the bound alone: dropped at once...
    assert not pool.wants("big")  # ...and never captured again
    assert pool.keys() == ["b"] and pool.bytes == 50


def test_recapture_replaces_and_discard_drops():
    pool = GraphPool(max_graphs=3, max_bytes=None, capture_after=1)
    pool.add(("v1", "s"), "old", 5)
    assert pool.add(("v1", "s"), "new", 7) == ["old"]
    pool.add(("v2", "s"), "other", 1)
    assert pool.bytes == 8
    assert pool.discard(lambda k: k[0] == "v1") == ["new"]
    assert pool.keys() == [("v2", "s")] and pool.bytes == 1


def test_sightings_are_bounded_and_zero_graphs_means_none():
    pool = GraphPool(max_graphs=1, max_bytes=None, capture_after=3)
    for i in range(1000):
        pool.wants(i)
    assert len(pool._seen) <= 4 * 1 + 64
    assert not GraphPool(max_graphs=0, max_bytes=None).wants("a")
    with pytest.raises(ValueError):
        GraphPool(max_graphs=1, max_bytes=None, capture_after=0)


def test_cuda_graphs_can_be_switched_on_a_compiled_module():
    import torch

    import blade

    opt = blade.optimize(torch.nn.Linear(4, 3).eval(), (torch.randn(2, 4),))
    assert opt.cuda_graphs
    opt.cuda_graphs = False
    assert not opt.cuda_graphs and not opt._config.cuda_graphs and len(opt._graph_pool) == 0
    x = torch.randn(5, 4)
    torch.testing.assert_close(opt(x), opt.original(x))
    opt.cuda_graphs = True
    assert opt.cuda_graphs
