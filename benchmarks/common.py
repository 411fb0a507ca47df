"""Shared helpers of the benchmark scripts: timing, kernel-time profiling, tables and plots.

Every benchmark runs eager PyTorch, torch.compile and Blade side by side in one process on the
same GPU and prints one table; ``--png`` also writes a bar chart.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable

import torch


def environment() -> dict:
    import triton

    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _per_call_s(fn: Callable, calls: int, warmup: int, wait: bool) -> float:
    """Seconds per call of ``calls`` calls issued back to back after ``warmup`` ones, timed until
    the last returns (``wait=False``) or until the GPU has finished them (``wait=True``)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    if wait:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / calls


def host_us(fn: Callable, calls: int, warmup: int = 50) -> float:
    """Host microseconds to issue one call: the wall time of ``calls`` back-to-back calls (on a
    problem small enough that the GPU keeps up, this is the host's time), synchronised around."""
    return _per_call_s(fn, calls, warmup, wait=False) * 1e6


def wall_ms(fn: Callable, iters: int = 20, warmup: int = 3) -> float:
    """Median milliseconds per call, timed with CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def back_to_back_ms(fn: Callable, iters: int = 20, warmup: int = 3) -> float:
    """Milliseconds per call of ``iters`` calls issued back to back, the GPU synchronised only at
    the end (a serving loop that never waits on a step): the larger of host and GPU time per call.
    ``wall_ms`` times each call alone from an idle GPU instead (its latency)."""
    return _per_call_s(fn, iters, warmup, wait=True) * 1e3


def kernel_ms(fn: Callable, iters: int = 10, warmup: int = 3, name_filter: Callable[[str], bool] | None = None):
    """GPU kernel time per call (sum of kernel durations, profiler), and the kernel count per call."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    total, count = 0.0, 0
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if name_filter is not None and not name_filter(e.name):
            continue
        total += e.device_time
        count += 1
    return total / 1000.0 / iters, count / iters


def print_table(title: str, header: list[str], rows: list[list]) -> str:
    widths = [max([len(str(h))] + [len(_fmt(r[i])) for r in rows]) for i, h in enumerate(header)]
    lines = [title, "  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)) for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.1f}"
    return str(v)


def bar_plot(path: str, title: str, labels: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4))
    n = len(series)
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
