"""Launching generated kernels: argument packing, variant choice and grids from runtime sizes.

A ``KernelLauncher`` turns concrete tensors into the arguments a plan's signature asks for (data
pointers, ``M``, ``K``, the row sizes and each input's row strides), picks the precompiled variant
(tile width by ``K``; the *aligned* variant when every pointer, ``K`` and stride is a multiple of
16) and launches. It never compiles: on a GPU it calls ``CompiledKernel`` objects compiled ahead of
time; on a CPU (tests) it calls the same source under Triton's interpreter.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from blade.codegen.aot import CompiledPlan
from blade.codegen.emit import KernelPlan

_TORCH_DTYPE = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "i64": torch.int64,
                "i32": torch.int32, "i1": torch.bool}


class LaunchStats:
    """Counters a benchmark or test can read: launches and copies made to satisfy a layout."""

    def __init__(self):
        self.launches = 0
        self.layout_copies = 0
        self.by_kernel: Counter[str] = Counter()  # entry point name -> launches


class KernelLauncher:
    #: GroupNorm statistics programs per multiprocessor (chunks are sized to reach it)
    gn_programs_per_sm = 2
    #: GroupNorm statistics loop steps (UNROLL tiles each) a chunk has at least
    gn_min_steps = 2
    #: "auto": one launch (a register-resident program per group) when a group's pixels fit the
    #: largest compiled resident tile, else statistics + apply; "one" forces the one-launch kernel
    #: wherever it fits; "two" forces statistics + apply
    gn_schedule = "auto"

    def __init__(self, compiled: CompiledPlan | None = None, interpreted_module=None, stats: LaunchStats | None = None):
        self.plan: KernelPlan = compiled.plan if compiled is not None else None
        self.compiled = compiled
        self.module = interpreted_module
        self.stats = stats or LaunchStats()
        self._counters: dict[torch.device, torch.Tensor] = {}
        self._sm_count: dict[torch.device, int] = {}

    @classmethod
    def interpreted(cls, plan: KernelPlan, module, stats: LaunchStats | None = None) -> KernelLauncher:
        launcher = cls(CompiledPlan(plan), module, stats)
        return launcher

    # ------------------------------------------------------------------ entry point
    def __call__(self, inputs: list[torch.Tensor], space: tuple[int, ...]) -> list[torch.Tensor]:
        plan = self.plan
        device = next((t.device for t in inputs if t.dim() > 0), inputs[0].device)
        r = len(space)
        k = space[-1] if r else 1
        rows = space[:-1]
        m = math.prod(rows)
        if m >= 2**31:
            raise RuntimeError(f"{plan.name} ({plan.label}): {m} rows in shape {tuple(space)}; generated kernels "
                               "index rows in int32 (at most 2**31 - 1 rows)")
        tensors = []
        for t in inputs:
            if t.device != device:
                t = t.to(device)
            tensors.append(t)
        tensors, address = self._address(tensors, space)
        outputs = [torch.empty(space, dtype=_TORCH_DTYPE[dt], device=device) for dt in plan.outputs]
        if m == 0 or k == 0:
            return outputs  # empty result: nothing to launch
        scalars = {"M": m, "K": k, **address}
        aligned = (k % 16 == 0 and all(v % 16 == 0 for n, v in address.items() if n.startswith(("s", "rs")))
                   and all(t.data_ptr() % 16 == 0 for t in tensors + outputs))
        if plan.kind == "group_norm":
            self._group_norm(tensors, outputs, scalars, space, aligned, device)
        else:
            ptrs = {f"in{i}": t for i, t in enumerate(tensors)} | {f"out{j}": o for j, o in enumerate(outputs)}
            v = self._pick(plan.name, k, aligned)
            c = plan.variants[v].constexprs
            grid = (triton_cdiv(m, c["BLOCK_M"]), 1 if plan.kind == "row_norm" else triton_cdiv(k, c["BLOCK_K"]), 1)
            self._launch(v, grid, ptrs | scalars)
        return outputs

    def _address(self, tensors: list[torch.Tensor], space: tuple[int, ...]) -> tuple[list[torch.Tensor], dict]:
        """The address arguments of the plan's row addressing (``KernelPlan.address_args``).

        Linear addressing needs each input's row dims to collapse into one stride; an input whose
        strides do not (a permuted view) is copied contiguous first and counted in
        ``stats.layout_copies``."""
        plan = self.plan
        r = len(space)
        rows = space[:-1]
        out: dict[str, int] = {}
        result = []
        for i, (spec, t) in enumerate(zip(plan.inputs, tensors)):
            if spec.last == "contig" and t.dim() > 0 and t.stride(-1) != 1 and t.shape[-1] != 1:
                t = t.contiguous()
                self.stats.layout_copies += 1
            dims = [d - (r - t.dim()) for d in spec.row_dims]
            if plan.addressing == "coords":
                for d, j in zip(spec.row_dims, dims):
                    out[f"s{i}_{d}"] = t.stride(j)
            elif spec.row_dims:
                stride = _collapsed_stride(t, dims)
                if stride is None:
                    t = t.contiguous()
                    self.stats.layout_copies += 1
                    stride = _collapsed_stride(t, dims)
                out[f"rs{i}"] = stride
                lo, hi = spec.row_dims[0], spec.row_dims[-1]
                if spec.form in ("prefix", "middle"):
                    out[f"a{i}"] = math.prod(rows[hi + 1:])
                if spec.form in ("suffix", "middle"):
                    out[f"b{i}"] = math.prod(rows[lo:hi + 1])
            result.append(t)
        if plan.addressing == "coords":
            out.update({f"D{d}": rows[d] for d in plan.needed_row_dims()})
        return result, out

    # ------------------------------------------------------------------ kinds
    def _group_norm(self, tensors, outputs, scalars, space, aligned, device) -> None:
        plan = self.plan
        n = space[0]
        p = math.prod(space[1:-1])
        g = plan.num_groups
        ins = {f"in{i}": t for i, t in enumerate(tensors)}
        outs = {f"out{j}": o for j, o in enumerate(outputs)}
        if self.gn_schedule != "two":
            vr = self._pick_resident(p, aligned)
            if vr is not None:
                self._launch(vr, (n * g, 1, 1), ins | outs | scalars | {"P": p})
                return
        vs = self._pick(plan.name + "_stats", scalars["K"], aligned)
        c = plan.variants[vs].constexprs
        block_m, gblk = c["BLOCK_M"] * c["UNROLL"], g // c["GB"]  # chunks are whole loop steps
        # enough programs to fill the GPU twice, at most CHMAX chunks per (image, group block), and
        # at least gn_min_steps loop steps per chunk (a program's fixed cost: merge, atomics)
        per_column = max(1, math.ceil(self.gn_programs_per_sm * self._sms(device) / max(n * gblk, 1)))
        nchunks = max(1, min(c["CHMAX"], per_column, triton_cdiv(p, block_m * self.gn_min_steps)))
        rows_per_chunk = triton_cdiv(triton_cdiv(p, nchunks), block_m) * block_m
        nchunks = triton_cdiv(p, rows_per_chunk)
        partial = torch.empty(n * nchunks * g * 2, dtype=torch.float32, device=device)
        stats = torch.empty(n * g * 2, dtype=torch.float32, device=device)
        counter = self._counter(device, n * gblk)
        self._launch(vs, (n * gblk, nchunks, 1), ins | {"partial": partial, "stats": stats, "counter": counter}
                     | scalars | {"P": p, "nchunks": nchunks, "rows_per_chunk": rows_per_chunk, "eps": plan.eps})
        va = self._pick(plan.name + "_apply", scalars["K"], aligned, single_image=None, p=p)
        c = plan.variants[va].constexprs
        grid = (triton_cdiv(scalars["M"], c["BLOCK_M"]), triton_cdiv(scalars["K"], c["BLOCK_K"]), 1)
        self._launch(va, grid, ins | outs | {"stats": stats} | scalars | {"P": p})

    def _pick_resident(self, p: int, aligned: bool) -> int | None:
        """The smallest register-resident GroupNorm variant whose tile holds ``p`` pixels."""
        best = None
        for i, v in enumerate(self.plan.variants):
            if v.kernel.endswith("_res") and (aligned or not v.aligned) and v.constexprs["BLOCK_M"] >= p:
                if best is None or (v.constexprs["BLOCK_M"], not v.aligned) < (
                        self.plan.variants[best].constexprs["BLOCK_M"], not self.plan.variants[best].aligned):
                    best = i
        return best

    # ------------------------------------------------------------------ helpers
    def _pick(self, kernel: str, k: int, aligned: bool, single_image=None, p: int = 0,
              required: bool = True) -> int | None:
        """Index of the variant of ``kernel`` for this ``K``, alignment and (GroupNorm apply) whether
        every tile lies inside one image (``P`` a multiple of the tile height)."""
        best = None
        for i, v in enumerate(self.plan.variants):
            if v.kernel != kernel or (v.aligned and not aligned):
                continue
            if self.plan.static_k is None and v.constexprs["BLOCK_K"] != (32 if k < 128 else 256):
                continue
            if "SINGLE_IMAGE" in v.constexprs and v.constexprs["SINGLE_IMAGE"] != int(p % v.constexprs["BLOCK_M"] == 0):
                continue
            if best is None or (v.aligned and not self.plan.variants[best].aligned):
                best = i
        if best is None and required:
            raise RuntimeError(f"no compiled variant of {kernel} for K={k}")
        return best

    def _launch(self, index: int, grid: tuple[int, int, int], named: dict) -> None:
        plan = self.plan
        v = plan.variants[index]
        sig = plan.signature(v.kernel)
        args = [v.constexprs[name] if ty == "constexpr" else named[name] for name, ty in sig.items()]
        self.stats.launches += 1
        self.stats.by_kernel[v.kernel] += 1
        if self.module is not None:  # CPU interpreter (TRITON_INTERPRET=1 in this process)
            fn = getattr(self.module, v.kernel)
            plain = [named[name] for name, ty in sig.items() if ty != "constexpr"]
            consts = {name: v.constexprs[name] for name, ty in sig.items() if ty == "constexpr"}
            fn[grid](*plain, **consts)
            return
        self.compiled.kernels[index][grid](*args)

    def _sms(self, device: torch.device) -> int:
        if device not in self._sm_count:
            self._sm_count[device] = (torch.cuda.get_device_properties(device).multi_processor_count
                                      if device.type == "cuda" else 4)
        return self._sm_count[device]

    def _counter(self, device: torch.device, n: int) -> torch.Tensor:
        """Per-image tickets of the GroupNorm stats launch; the last program resets its ticket."""
        c = self._counters.get(device)
        if c is None or c.numel() < n:
            c = torch.zeros(max(n, 64), dtype=torch.int32, device=device)
            self._counters[device] = c
        return c


def _collapsed_stride(t: torch.Tensor, dims: list[int]) -> int | None:
    """The one stride that addresses the (consecutive) dims ``dims`` of ``t`` as a flat index, or
    ``None`` when they do not collapse. Size-1 dims are ignored (their stride is arbitrary)."""
    live = [j for j in dims if t.shape[j] != 1]
    if not live:
        return 0
    for a, b in zip(live, live[1:]):
        if t.stride(a) != t.stride(b) * t.shape[b]:
            return None
    return t.stride(live[-1])


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
