"""Launching generated kernels: argument packing, variant choice and grids from runtime sizes.

A ``KernelLauncher`` turns concrete tensors into the arguments a plan's signature asks for (data
pointers, ``M``, ``K``, the row sizes and each input's row strides), picks the precompiled variant
(tile width by ``K``; the *aligned* variant when every pointer, ``K`` and stride is a multiple of
16) and launches. It never compiles: on a GPU it calls ``CompiledKernel`` objects compiled ahead of
time; on a CPU (tests) it calls the same source under Triton's interpreter.

Nothing about an input's layout is taken on trust. Before a launch every input's rank, sizes and
dtype are checked against what the plan assumed (``InputSpec.expected_shape``; a mismatch is a
``KernelLaunchError`` naming the kernel, the input and both shapes), and a collapse of row dims
into one stride is proven from the tensor's actual sizes and strides; where it does not hold the
input is copied contiguous (counted in ``LaunchStats.layout_copies``). A plan compiled with
``bounds_check`` additionally receives each tensor's element span and asserts every offset on the
device (``codegen/emit.py``).
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from blade.codegen.aot import CompiledPlan
from blade.codegen.emit import KernelPlan
from blade.runtime.kernel_runner import interpreter_asserts as _interpreter_asserts
from blade.runtime.strides import collapsed_stride as _collapsed_stride, element_span as _span, table_args

_TORCH_DTYPE = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "i64": torch.int64,
                "i32": torch.int32, "i1": torch.bool}


class KernelLaunchError(RuntimeError):
    """A kernel was about to be launched on tensors that contradict its plan (an internal error:
    the program's types and the tensors it computed disagree)."""


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

    def __init__(self, compiled: CompiledPlan | None = None, interpreted_module=None, stats: LaunchStats | None = None,
                 plan: KernelPlan | None = None):
        """``plan``: the fused group's own plan when ``compiled`` was built from another group's
        plan with the same source (compiled kernels are shared; addressing is not: the source
        does not say which dims an input varies along or its rank, ``InputSpec`` does)."""
        if plan is not None and compiled is not None and (
                plan.source != compiled.plan.source or plan.variants != compiled.plan.variants
                or any(plan.signature(v.kernel) != compiled.plan.signature(v.kernel) for v in plan.variants)):
            raise ValueError(f"kernel {plan.name}: the compiled kernels given were built from other source "
                             f"({compiled.plan.name})")
        self.plan: KernelPlan = plan if plan is not None else (compiled.plan if compiled is not None else None)
        self.compiled = compiled
        self.module = interpreted_module
        self.stats = stats or LaunchStats()
        self._counters: dict[torch.device, torch.Tensor] = {}
        self._retired: list[torch.Tensor] = []  # outgrown counters (see _counter)
        self._sm_count: dict[torch.device, int] = {}

    @classmethod
    def interpreted(cls, plan: KernelPlan, module, stats: LaunchStats | None = None) -> KernelLauncher:
        launcher = cls(CompiledPlan(plan), module, stats)
        return launcher

    # ------------------------------------------------------------------ entry point
    def __call__(self, inputs: list[torch.Tensor], space: tuple[int, ...],
                 device: torch.device | None = None) -> list[torch.Tensor]:
        """The group's outputs; ``device``: where a group that reads no tensor (a fused ``iota``)
        computes (else its inputs' device)."""
        plan = self.plan
        device = next((t.device for t in inputs if t.dim() > 0), inputs[0].device if inputs else device)
        if device is None:
            raise KernelLaunchError(f"kernel {plan.name} ({plan.label}) reads no tensor and was given no device")
        r = len(space)
        k = space[-1] if r else 1
        rows = space[:-1]
        m = math.prod(rows)
        if m >= 2**31:
            raise RuntimeError(f"{plan.name} ({plan.label}): {m} rows in shape {tuple(space)}; generated kernels "
                               "index rows in int32 (at most 2**31 - 1 rows)")
        if len(inputs) != len(plan.inputs):
            raise KernelLaunchError(f"kernel {plan.name} ({plan.label}) takes {len(plan.inputs)} inputs, "
                                    f"got {len(inputs)}")
        tensors = []
        for i, t in enumerate(inputs):
            if t.device != device:
                t = t.to(device)
            self._check_input(i, t, space)
            tensors.append(t)
        tensors, address = self._address(tensors, space)
        outputs = [torch.empty(space, dtype=_TORCH_DTYPE[dt], device=device) for dt in plan.outputs]
        if m == 0 or k == 0:
            return outputs  # empty result: nothing to launch
        scalars = {"M": m, "K": k, **address}
        if plan.bounds_check:
            scalars.update({f"n{i}": _span(t) for i, t in enumerate(tensors)})
            scalars.update({f"nout{j}": o.numel() for j, o in enumerate(outputs)})
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

    def _check_input(self, i: int, t: torch.Tensor, space: tuple[int, ...]) -> None:
        """``t`` has the rank, sizes (1 where the plan broadcasts) and dtype the plan assumed."""
        plan = self.plan
        spec = plan.inputs[i]
        if (spec.rank > len(space) and spec.form != "table") or t.dim() != spec.rank:
            raise KernelLaunchError(
                f"kernel {plan.name} ({plan.label}): input {i} has rank {t.dim()} (shape {tuple(t.shape)}), but "
                f"the kernel was planned for a rank-{spec.rank} input in the rank-{len(space)} iteration space "
                f"{tuple(space)}; launching it would read the wrong memory. This is a Blade bug: please report "
                "it with the model; Config(executor='reference') runs the program without generated kernels")
        if spec.form == "table":  # a row gather's table: any number of rows, rows of the space's width
            if t.shape[-1] != space[-1]:
                raise KernelLaunchError(
                    f"kernel {plan.name} ({plan.label}): input {i} is a gather's table of shape {tuple(t.shape)}, "
                    f"but the kernel was planned for rows of {space[-1]} elements (iteration space "
                    f"{tuple(space)}). This is a Blade bug: please report it with the model; "
                    "Config(executor='reference') runs the program without generated kernels")
            expect = tuple(t.shape)
        else:
            expect = spec.expected_shape(space)
        if tuple(t.shape) != expect:
            raise KernelLaunchError(
                f"kernel {plan.name} ({plan.label}): input {i} has shape {tuple(t.shape)}, but the kernel "
                f"was planned for shape {expect} in iteration space {tuple(space)} (rank {spec.rank}, varying "
                f"along row dims {spec.row_dims}, last dim {spec.last}); launching it would read the wrong "
                "memory. This is a Blade bug: please report it with the model; Config(executor='reference') "
                "runs the program without generated kernels")
        if t.dtype != _TORCH_DTYPE[spec.dtype]:
            raise KernelLaunchError(
                f"kernel {plan.name} ({plan.label}): input {i} is {t.dtype}, but the kernel reads it as "
                f"{spec.dtype}; launching it would read the wrong memory. This is a Blade bug: please report "
                "it with the model; Config(executor='reference') runs the program without generated kernels")

    def _address(self, tensors: list[torch.Tensor], space: tuple[int, ...]) -> tuple[list[torch.Tensor], dict]:
        """The address arguments of the plan's row addressing (``KernelPlan.address_args``).

        Shapes were checked (``_check_input``): each input has the plan's rank, and along every
        row dim either the space's size or 1. Linear addressing needs the input's row dims to
        collapse into one stride, which is proven here from the actual strides of every dim (a
        size-1 dim's coordinate is always 0, so its stride does not matter); an input whose dims
        do not collapse (a permuted or sliced view) is copied contiguous first and counted in
        ``stats.layout_copies``. The last dim of a ``contig`` input must have stride 1, else the
        same copy."""
        plan = self.plan
        r = len(space)
        rows = space[:-1]
        out: dict[str, int] = {}
        result = []
        for i, (spec, t) in enumerate(zip(plan.inputs, tensors)):
            if spec.last == "contig" and t.dim() > 0 and t.stride(-1) != 1 and t.shape[-1] != 1:
                t = t.contiguous()
                self.stats.layout_copies += 1
            if spec.form == "table":  # read at the rows its gathers' indices name
                out |= table_args(i, t)
                result.append(t)
                continue
            dims = [d - (r - t.dim()) for d in spec.row_dims]  # the tensor's dims (ranks are equal-aligned)
            if plan.addressing == "coords":
                for d, j in zip(spec.row_dims, dims):
                    out[f"s{i}_{d}"] = t.stride(j) if t.shape[j] != 1 else 0
            elif spec.row_dims:
                stride = _collapsed_stride(t, dims)
                if stride is None:
                    t = t.contiguous()
                    self.stats.layout_copies += 1
                    stride = _collapsed_stride(t, dims)
                    if stride is None:  # cannot happen for a contiguous tensor of the checked shape
                        raise KernelLaunchError(f"kernel {plan.name}: input {i} of shape {tuple(t.shape)} has "
                                                f"row dims {dims} that do not collapse even when contiguous")
                out[f"rs{i}"] = stride
                lo, hi = spec.row_dims[0], spec.row_dims[-1]
                if spec.form in ("prefix", "middle"):
                    out[f"a{i}"] = math.prod(rows[hi + 1:])
                if spec.form in ("suffix", "middle"):
                    out[f"b{i}"] = math.prod(rows[lo:hi + 1])
                _check_linear_reach(plan, i, t, dims, stride, spec.last == "contig")
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
            if plan.bounds_check:
                with _interpreter_asserts():
                    fn[grid](*plain, **consts)
            else:
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
            if c is not None:  # a CUDA graph captured earlier still replays with the old buffer's
                self._retired.append(c)  # address: it must outlive every such graph, so it is kept
            c = torch.zeros(max(n, 64), dtype=torch.int32, device=device)
            self._counters[device] = c
        return c


def _check_linear_reach(plan, i: int, t: torch.Tensor, dims: list[int], stride: int, contig: bool) -> None:
    """The largest offset linear addressing computes for input ``i`` stays inside the tensor: the
    flat row index ranges over the product of the input's row sizes. A cheap O(rank) check that
    turns an addressing bug into an error instead of a wild access."""
    rows = math.prod(t.shape[j] for j in dims)
    last = (t.shape[-1] - 1) * t.stride(-1) if contig and t.dim() > 0 else 0
    reach = (rows - 1) * stride + last + 1 if rows and t.numel() else 0
    if reach > _span(t):
        raise KernelLaunchError(
            f"kernel {plan.name} ({plan.label}): input {i} (shape {tuple(t.shape)}, strides {t.stride()}) "
            f"would be read up to element {reach - 1} with row stride {stride}, past its last element "
            f"{_span(t) - 1}")


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
