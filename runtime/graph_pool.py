"""Which call shapes get a CUDA graph, and which graphs are kept (issue 9, item 4).

A CUDA graph makes every later call of its shape cheap for the host, but it costs a capture (a
warm-up run, the capture itself) and holds device memory (its buffers) for as long as it is kept.
A model served at many shapes would otherwise pay a capture on every new shape's first call and
keep a graph's memory per shape. So:

* a shape's first call runs without a graph (no capture cost on a new shape);
* a shape seen ``capture_after`` times is captured (its graph is replayed from then on);
* the graphs kept are bounded in count and in bytes; the least recently used goes first;
* a graph that alone is over the byte bound is dropped at once and its shape never captured again
  (it would be captured and dropped on every other call otherwise).

This file is the policy only: plain Python, no torch and no CUDA, so CPU tests check it. The caller
(``BladeModule``) measures each graph's bytes, stores the graphs and destroys what this returns as
evicted. Keys are whatever the caller uses to name a graph (a variant and an input signature).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class GraphPool:
    def __init__(self, max_graphs: int, max_bytes: int | None, capture_after: int = 2):
        if max_graphs < 0 or capture_after < 1:
            raise ValueError(f"GraphPool needs max_graphs >= 0 and capture_after >= 1, "
                             f"got {max_graphs} and {capture_after}")
        self.max_graphs = max_graphs
        self.max_bytes = max_bytes
        self.capture_after = capture_after
        self._graphs: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()  # key -> (graph, bytes)
        self._seen: OrderedDict[Hashable, int] = OrderedDict()  # key -> calls without a graph
        self._too_big: set[Hashable] = set()
        self.bytes = 0
        self.captures = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._graphs)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._graphs

    def get(self, key: Hashable) -> Any | None:
        """The graph kept for ``key`` (now the most recently used), or None."""
        item = self._graphs.get(key)
        if item is None:
            return None
        self._graphs.move_to_end(key)
        return item[0]

    def wants(self, key: Hashable) -> bool:
        """Count a call of ``key`` that found no graph; whether this call should capture one."""
        if self.max_graphs == 0 or key in self._too_big:
            return False
        seen = self._seen.pop(key, 0) + 1
        self._seen[key] = seen
        while len(self._seen) > 4 * self.max_graphs + 64:  # bounded memory for the counts too
            self._seen.popitem(last=False)
        return seen >= self.capture_after

    def add(self, key: Hashable, graph: Any, nbytes: int) -> list[Any]:
        """Keep ``graph`` for ``key``; returns the graphs evicted to stay in bounds (possibly this
        one, when it alone is over the byte bound)."""
        self._seen.pop(key, None)
        evicted = self.discard(lambda k: k == key)
        self.captures += 1
        if self.max_bytes is not None and nbytes > self.max_bytes:
            self._too_big.add(key)
            self.evictions += 1
            return evicted + [graph]
        self._graphs[key] = (graph, nbytes)
        self.bytes += nbytes
        while len(self._graphs) > self.max_graphs or (self.max_bytes is not None and self.bytes > self.max_bytes):
            _, (old, old_bytes) = self._graphs.popitem(last=False)
            self.bytes -= old_bytes
            self.evictions += 1
            evicted.append(old)
        return evicted

    def discard(self, predicate) -> list[Any]:
        """Drop the graphs whose key satisfies ``predicate`` (a variant that is dropped); returns them."""
        gone = [k for k in self._graphs if predicate(k)]
        out = []
        for k in gone:
            graph, nbytes = self._graphs.pop(k)
            self.bytes -= nbytes
            out.append(graph)
        for k in [k for k in self._seen if predicate(k)]:
            del self._seen[k]
        self._too_big = {k for k in self._too_big if not predicate(k)}
        return out

    def keys(self) -> list[Hashable]:
        return list(self._graphs)
