"""The kernel executor: runs a compiled program with Blade's generated kernels for every fused
group and PyTorch for library ops (convolution, GEMM, attention) and views.

It is the Python-level executor that proves fusion on the GPU before the C++ runtime exists: it
walks the same IR as the reference executor (``ReferenceExecutor``), so anything it does not
launch itself is executed by the same reference semantics. Channels-last convolutions need
channels-last weights: with ``convert_weights_in_place`` the module's parameters are re-laid-out
once (no second copy), else a channels-last copy is kept (refreshed when the weight changes in
place). With ``conv_algorithm_search`` cuDNN times its algorithms once per convolution shape, at
the shape's second call (``ConvSearch``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from xdsl.dialects.builtin import ModuleOp

from blade.codegen.emit import iteration_space
from blade.dialects.data_movement import WeightOp
from blade.dialects.kernel import FusedOp
from blade.dialects.structured import ConvOp
from blade.executors.launch import KernelLauncher
from blade.executors.reference import ReferenceExecutor
# cudnn.benchmark is process-wide: one lock for every place that sets and restores it (the torch
# provider's own would let the two interleave and leave the user's setting changed)
from blade.runtime.host_provider import _CUDNN_FLAG_LOCK, ConvSearch
from blade.symbolic import evaluate


class KernelExecutor(ReferenceExecutor):
    def __init__(self, module: ModuleOp, weights: Callable[[str], torch.Tensor],
                 launchers: dict[int, KernelLauncher], check_shapes: bool = False,
                 conv_algorithm_search: bool = False, convert_weights_in_place: bool = False,
                 prepared_weights: dict | None = None, prepared_casts: dict | None = None,
                 prepare_weights: bool = False):
        super().__init__(module, weights, check_shapes)
        self.launchers = launchers
        self.conv_algorithm_search = conv_algorithm_search
        self._search = ConvSearch(conv_algorithm_search)
        self.convert_weights_in_place = convert_weights_in_place
        #: channels-last copies by id(weight), shared by every executor of one optimized module
        #: (variants of one model use the same weights: one copy each, not one per variant)
        self._cl_weights: dict[int, tuple[int, torch.Tensor, torch.Tensor, int]] = (
            {} if prepared_weights is None else prepared_weights)
        #: results of fused groups that read only weights (``Config.enable_fp16`` on a float32
        #: model casts every weight in one), computed once: (ids of the weights, kernel source,
        #: result types) -> [weights, versions, data_ptrs, results, recompute], shared like the
        #: channels-last copies (so variants of one model hold one fp16 copy); refreshed in place
        #: when a weight changes
        self._casts: dict[tuple, list] = {} if prepared_casts is None else prepared_casts
        self.prepare_weights = prepare_weights  # Config.prepare_weights
        self._weight_only = {id(op) for op in module.walk() if isinstance(op, FusedOp)
                             and op.inputs and all(isinstance(v.owner, WeightOp) for v in op.inputs)
                             } if prepare_weights else set()

    def twin(self, module: ModuleOp, weights: Callable[[str], torch.Tensor]) -> "KernelExecutor":
        """An executor for ``module``, a program identical to this one's but for its guards and
        symbol ranges: it launches the same kernels (no codegen, no compile) and reads the same
        prepared weights; only which inputs it accepts differs."""
        twin = KernelExecutor(module, weights, self.launchers, self.check_shapes, self.conv_algorithm_search,
                              self.convert_weights_in_place, self._cl_weights, self._casts, self.prepare_weights)
        twin.code = self.code
        twin._search = self._search  # a shape searched for one guard class is searched for all
        return twin

    def refresh_prepared_weights(self) -> None:
        """Copy in-place weight updates into the prepared copies (casts first, then channels-last
        copies, which may be of a cast), keeping their addresses: a captured CUDA graph reads the
        prepared copies."""
        for entry in list(self._casts.values()):
            if entry[1] != [a._version for a in entry[0]] or entry[2] != [a.data_ptr() for a in entry[0]]:
                self._refresh_group(entry)
        for key, (version, w, prepared, ptr) in list(self._cl_weights.items()):
            if w._version != version or w.data_ptr() != ptr:
                if w.shape != prepared.shape or w.dtype != prepared.dtype:
                    del self._cl_weights[key]  # replaced by another shape or dtype: made anew when used
                    continue
                with torch.no_grad():
                    prepared.copy_(w)
                self._cl_weights[key] = (w._version, w, prepared, w.data_ptr())

    def run_fused(self, op: FusedOp, args, symbols, device):
        launcher = self.launchers.get(op.p("id"))
        if launcher is None:
            return super().run_fused(op, args, symbols, device)
        if id(op) in self._weight_only:
            return self._prepared_group(op, launcher, args, symbols)
        return self._launch_group(op, launcher, args, symbols, device)

    def _prepared_group(self, op: FusedOp, launcher: KernelLauncher, args, symbols) -> list[torch.Tensor]:
        """A group that reads only weights (the casts ``convert-fp16`` puts right after each
        ``blade.weight``), run once and kept, not on every call: for an SD 1.5 UNet compiled from
        float32 that is 686 launches and 5 GB of memory traffic per call. Recomputed in place when
        a weight changes (its version or storage), here or before a CUDA graph replay."""
        key = (tuple(id(a) for a in args), launcher.plan.source, tuple(str(r.type) for r in op.results))
        entry = self._casts.get(key)
        if entry is None or any(e is not a for e, a in zip(entry[0], args)):
            outs = self._launch_group(op, launcher, args, symbols)
            entry = self._casts[key] = [list(args), [a._version for a in args], [a.data_ptr() for a in args],
                                        outs, lambda: self._launch_group(op, launcher, args, symbols)]
        elif entry[1] != [a._version for a in args] or entry[2] != [a.data_ptr() for a in args]:
            self._refresh_group(entry)
        return entry[3]

    @staticmethod
    def _refresh_group(entry: list) -> None:
        fresh = entry[4]()
        with torch.no_grad():
            for kept, new in zip(entry[3], fresh):
                kept.copy_(new)  # in place: a captured CUDA graph reads these addresses
        entry[1], entry[2] = [a._version for a in entry[0]], [a.data_ptr() for a in entry[0]]

    def _launch_group(self, op: FusedOp, launcher: KernelLauncher, args, symbols, device=None) -> list[torch.Tensor]:
        space = tuple(evaluate(d, symbols) for d in iteration_space(op).shape)
        if self.check_shapes:  # the tensors agree with the group's operand types (the launcher
            # itself checks them against the kernel plan, always)
            for i, (a, v) in enumerate(zip(args, op.inputs)):
                expect = tuple(evaluate(d, symbols) for d in v.type.shape)
                if tuple(a.shape) != expect:
                    raise RuntimeError(f"kernel {launcher.plan.name}: input {i} is {tuple(a.shape)}, but its "
                                       f"type evaluates to {expect}")
        outs = launcher(args, space, device)
        if self.check_shapes:
            for o, r in zip(outs, op.results):
                expect = tuple(evaluate(d, symbols) for d in r.type.shape)
                if tuple(o.shape) != expect:
                    raise RuntimeError(f"kernel {launcher.plan.name} wrote {tuple(o.shape)}, expected {expect}")
        return outs

    def _run_op(self, op, args, symbols, device):
        if isinstance(op, ConvOp) and op.channels_last and args[0].is_cuda and op.in_type(1).rank == 4:
            return [self._conv_nhwc(op, args)]
        return super()._run_op(op, args, symbols, device)

    def _conv_nhwc(self, op: ConvOp, args: list[torch.Tensor]) -> torch.Tensor:
        x, w = args[0], args[1]
        bias = args[2] if len(args) == 3 else None
        if isinstance(op.operands[1].owner, WeightOp) and self.convert_weights_in_place:
            if not w.is_contiguous(memory_format=torch.channels_last):
                with torch.no_grad():  # the parameter object stays; its storage is re-laid-out
                    w.data = w.data.contiguous(memory_format=torch.channels_last)
        elif isinstance(op.operands[1].owner, WeightOp) or id(op.operands[1].owner) in self._weight_only:
            key = id(w)  # a weight, or a weight's prepared cast (a stable tensor refreshed in place)
            hit = self._cl_weights.get(key)
            if hit is not None and hit[1] is w and (hit[0] != w._version or hit[3] != w.data_ptr()):
                self.refresh_prepared_weights()  # updated in place, or its .data replaced
                hit = self._cl_weights.get(key)
            if hit is None or hit[1] is not w or hit[2].shape != w.shape or hit[2].dtype != w.dtype:
                hit = (w._version, w, w.detach().contiguous(memory_format=torch.channels_last), w.data_ptr())
                self._cl_weights[key] = hit
            w = hit[2]
        # cudnn.benchmark is process-global: set and restored under one lock, so two threads
        # running convolutions cannot leave the user's setting changed
        with _CUDNN_FLAG_LOCK:
            return self._conv_with_search_flag(op, x, w, bias)

    def _conv_with_search_flag(self, op: ConvOp, x, w, bias) -> torch.Tensor:
        saved = torch.backends.cudnn.benchmark
        # timed at a shape's second call (``ConvSearch``), then cached by cuDNN
        params = (op.p("stride"), op.p("padding"), op.p("dilation"), op.p("groups"))
        torch.backends.cudnn.benchmark = self._search.benchmark(x, w, params)
        try:
            y = F.conv2d(x.movedim(-1, 1), w, bias, *params)
        finally:
            torch.backends.cudnn.benchmark = saved
        return y.movedim(1, -1)
