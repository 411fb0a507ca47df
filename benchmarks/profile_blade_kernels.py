"""Where the GPU time of generated kernels goes in one SD 1.5 step (fp16): Blade's kernels, and
with ``--inductor`` also torch.compile's generated Triton kernels for the same model and shape,
side by side in one run. Time and launch count per kernel, largest first.

    python benchmarks/profile_blade_kernels.py [--model unet|vae] [--inductor] [BATCHxHEIGHTxWIDTH]
        [--blade-configs "default;executor=kernels,gemm_library=torch"] [--timeline]

Generated kernels are Blade's (names start with ``pointwise_``, ``row_norm_``, ``group_norm_``) and
Inductor's (names start with ``triton_``). Everything else (cuBLAS, cuDNN, attention, copies) is
reported as one "library and other" sum, split by kind (GEMM, convolution, attention, other) from the
kernel names. ``--blade-configs`` profiles the module compiled with each configuration (as in
``bench_models.py``) in one run, to see which kernels make one configuration slower than another. Note that a category split by substring (as in
``../shared/bench/profile_unet.py``) files Inductor kernels named ``*_fused_convolution_*`` under
"conv": counting every ``triton_`` kernel is the like-for-like comparison with Blade's kernels.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re

import torch
from torch.profiler import ProfilerActivity, profile

import blade
from blade import models

BLADE_PREFIXES = ("pointwise_", "row_norm_", "group_norm_")


def _profile(fn) -> list:
    with torch.no_grad():
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
    return [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def _blade_events(model, inputs, config) -> list:
    """The profile of one call of ``model`` compiled with ``config`` (the module dropped after)."""
    with torch.no_grad():
        opt = blade.optimize(model, inputs, config=config)
    return _profile(lambda: opt(*inputs))


def _blade_key(name: str) -> str:
    base = name.rsplit("_", 2)[0] if name.endswith(("_stats", "_apply", "_res")) else name.rsplit("_", 1)[0]
    for suffix in ("_stats", "_apply", "_res"):
        if name.endswith(suffix):
            return base + suffix
    return base


def _inductor_key(name: str) -> str:
    return re.sub(r"_\d+$", "", name)


def summarize(label: str, events, generated, key) -> dict:
    by_name, count = collections.Counter(), collections.Counter()
    others, other_count = collections.Counter(), collections.Counter()
    for e in events:
        if generated(e.name):
            k = key(e.name)
            by_name[k] += e.device_time
            count[k] += 1
        else:
            others[e.name[:90]] += e.device_time
            other_count[e.name[:90]] += 1
    other = sum(others.values())
    total = sum(by_name.values())
    kinds = collections.Counter()
    for name, us in others.items():
        kinds[library_kind(name)] += us
    print(f"{label}: generated kernels {total / 1000:.3f} ms in {sum(count.values())} launches; "
          f"library and other kernels {other / 1000:.3f} ms in {sum(other_count.values())} launches ("
          + ", ".join(f"{k} {us / 1000:.3f}" for k, us in kinds.most_common()) + ")")
    for name, us in by_name.most_common(25):
        print(f"  {us / 1000:7.3f} ms  {count[name]:4d}x  {us / count[name]:6.1f} us each  {name[:100]}")
    print("  library and other kernels, largest:")
    for name, us in others.most_common(12):
        print(f"  {us / 1000:7.3f} ms  {other_count[name]:4d}x  {us / other_count[name]:6.1f} us each  {name}")
    return {"generated_ms": total / 1000, "launches": sum(count.values()), "other_ms": other / 1000,
            "library_ms": {k: us / 1000 for k, us in kinds.items()},
            "top": [[n, us / 1000, count[n]] for n, us in by_name.most_common(25)],
            "top_other": [[n, us / 1000, other_count[n]] for n, us in others.most_common(25)]}


_LIBRARY_KINDS = (("attention", ("flash", "fmha", "attention", "softmax")),
                  ("convolution", ("conv", "fprop", "dgrad", "implicit", "cudnn")),
                  ("gemm", ("gemm", "cublas", "cutlass", "xmma", "sm90_", "sm80_", "nvjet")),
                  ("copy", ("copy", "elementwise", "cat", "memcpy", "memset", "fill")))


def timeline(label: str, events) -> dict:
    """The GPU timeline of one profiled call: its span (first kernel start to last kernel end), the
    time kernels were busy, the idle gaps between them (how many, their sum, the largest with the
    kernels on either side), the idle time summed by the kinds of kernel on either side, and how
    many kernels started before the one before them ended (overlap, as programmatic dependent
    launch gives). With CUDA graphs the gaps are what a replay adds between nodes."""
    spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in events)
    if not spans:
        return {}
    gaps, by_kinds, overlaps, overlapped = [], collections.Counter(), 0, collections.Counter()
    busy_until, prev = spans[0][1], spans[0][2]
    for start, end, name in spans[1:]:
        if start > busy_until:
            gaps.append((start - busy_until, prev, name))
            by_kinds[f"{_event_kind(prev)} -> {_event_kind(name)}"] += start - busy_until
        elif start < busy_until:
            overlaps += 1
            overlapped[f"{_event_kind(prev)} -> {_event_kind(name)}"] += 1
        if end > busy_until:
            busy_until, prev = end, name
    span = busy_until - spans[0][0]
    idle = sum(g for g, _, _ in gaps)
    kinds = collections.Counter(_event_kind(name) for _, _, name in spans)
    print(f"{label}: span {span / 1000:.3f} ms, {len(spans)} GPU events ("
          + ", ".join(f"{k} {n}" for k, n in kinds.most_common()) + f"), busy {(span - idle) / 1000:.3f} ms, "
          f"{len(gaps)} gaps summing to {idle / 1000:.3f} ms, {overlaps} overlapping starts")
    for g, before, after in sorted(gaps, reverse=True)[:5]:
        print(f"  gap {g:6.1f} us after {before[:60]} before {after[:60]}")
    print("  idle us by kinds: " + ", ".join(f"{k} {us:.0f}" for k, us in by_kinds.most_common(10)))
    if overlapped:
        print("  overlapping starts by kinds: " + ", ".join(f"{k} {n}" for k, n in overlapped.most_common(8)))
    return {"span_ms": span / 1000, "events": len(spans), "gaps": len(gaps), "idle_ms": idle / 1000,
            "overlaps": overlaps, "idle_us_by_kinds": dict(by_kinds)}


def _event_kind(name: str) -> str:
    if name.startswith(BLADE_PREFIXES):
        return "generated"
    if name.startswith("Memset"):
        return "memset"
    if name.startswith("Memcpy"):
        return "memcpy"
    return library_kind(name)


def library_kind(name: str) -> str:
    """The kind of a library kernel from its name (first match of ``_LIBRARY_KINDS``)."""
    low = name.lower()
    return next((kind for kind, keys in _LIBRARY_KINDS if any(k in low for k in keys)), "other")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", nargs="?", default="2x512x512")
    ap.add_argument("--model", choices=["unet", "vae"], default="unet")
    ap.add_argument("--inductor", action="store_true", help="also profile torch.compile (reduce-overhead)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--timeline", action="store_true",
                    help="also the span, busy time and idle gaps of each profiled call's GPU timeline")
    ap.add_argument("--blade-configs", default="",
                    help="';'-separated Blade configurations, each 'default' or 'field=value,...'")
    args = ap.parse_args()
    b, h, w = (int(v) for v in args.shape.split("x"))
    if args.model == "unet":
        model = models.unet(torch.float16, "cuda")
        inputs = models.unet_inputs(b, h, w, dtype=torch.float16, device="cuda")
    else:
        model = models.vae_decoder(torch.float16, "cuda")
        inputs = models.vae_inputs(b, h, w, dtype=torch.float16, device="cuda")
    result = {"model": args.model, "shape": args.shape}
    from bench_models import parse_config  # benchmarks/ is this script's directory

    for label, config in [parse_config(t) for t in (args.blade_configs or "default").split(";")]:
        key = "blade" if label == "default" else f"blade {label}"
        events = _blade_events(model, inputs, config)
        result[key] = summarize(f"Blade ({label}) {args.model} {args.shape}", events,
                                lambda n: n.startswith(BLADE_PREFIXES), _blade_key)
        if args.timeline:
            result[key]["timeline"] = timeline(f"Blade ({label}) timeline", events)
    if args.inductor:
        import torch._inductor.config as ic
        ic.conv_1x1_as_mm = True
        cl = model.to(memory_format=torch.channels_last)
        compiled = torch.compile(cl, mode="reduce-overhead", fullgraph=True)
        events = _profile(lambda: compiled(*inputs))
        result["inductor"] = summarize(f"torch.compile {args.model} {args.shape}", events,
                                       lambda n: n.startswith("triton_"), _inductor_key)
        if args.timeline:
            result["inductor"]["timeline"] = timeline("torch.compile timeline", events)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
