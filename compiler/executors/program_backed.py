"""``BladeModule`` on Programs: a compiled variant run as its lowered ``Program``.

``Config(executor="program")`` makes every variant of a ``BladeModule`` lower its optimized IR to
a ``Program`` (``blade.lower_program``; on CUDA with a cubin per kernel variant, compiled for the
device's arch, Triton's cache serving kernels the pipeline already compiled) and run it with the
runtime's ``ProgramExecutor``: the native call planner (sizes, checks, arena plan), call plans
cached per size signature, cubins launched through the C++ driver launcher, library ops through
the torch provider. It is the executor an artifact loaded with ``blade.artifact.load`` uses, so
the compiled module and the saved one run the same steps.

The IR side (``ReferenceExecutor``) is kept for what ``BladeModule`` asks of an executor before a
call: binding the symbols and naming a failed guard. One ``TorchProvider`` per module serves all
its variants, so the channels-last weight copies it keeps exist once (``refresh_prepared_weights``
copies in-place weight updates into them, keeping their addresses for CUDA graph replays).

On CUDA a size signature's generated-kernel launches run from a C++ step list from its second call
(``Config.native_step_loop``, ``runtime/native_loop.py``); library calls stay Python steps.
``Config(gemm_library="cublaslt")`` computes the GEMMs with cuBLASLt from the C++ runtime instead of
torch (``runtime/cublaslt_gemm.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from blade.executors.reference import ReferenceExecutor
from blade.runtime.host_provider import TorchProvider
from blade.runtime.program import StepKind
from blade.runtime.program_executor import ProgramExecutor


def program_target(device: torch.device) -> tuple[str, int, int] | None:
    """The cubin target of ``device`` (None on a CPU: kernels run under Triton's interpreter)."""
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return ("cuda", major * 10 + minor, 32)


class ProgramBackedExecutor(ReferenceExecutor):
    def __init__(self, compiled, module: torch.nn.Module, weights: Callable[[str], torch.Tensor],
                 device: torch.device, provider: TorchProvider, cache_dir: str | None = None,
                 check_shapes: bool = False, prepare_weights: bool = False, native_loop: bool = True,
                 bounds_check: bool = False):
        from blade.lower_program import lower_program

        super().__init__(compiled.module, weights, check_shapes)
        if self.data_dependent:
            # refused at compile time (the module then runs eagerly with one message); "auto" picks
            # the IR kernel executor for such programs (blade.pipeline.executor_kind)
            raise RuntimeError(
                "Config(executor='program') cannot run this program: sizes "
                f"{sorted(self.data_dependent)} depend on tensor values (nonzero, masked_select, unique...), "
                "and a Program computes every size from the input sizes before a call; use "
                "Config(executor='auto') or 'kernels'")
        self.program = lower_program(compiled, target=program_target(device), cache_dir=cache_dir,
                                     bounds_check=bounds_check)
        if (device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1"
                and any(s.kind == StepKind.LAUNCH.value for s in self.program.steps)):
            # as the kernel executor does: refused at compile time (the module then runs eagerly with
            # one message), not an internal error reported on every call
            raise RuntimeError("running generated kernels on the CPU needs TRITON_INTERPRET=1 set before "
                               "triton is imported (start the process with it), or Config(executor='reference')")
        self.provider = provider
        self.runner = ProgramExecutor(self.program, weights,  # the module's resolver (constants included)
                                      providers={"torch": provider}, prepare_weights=prepare_weights,
                                      native_loop=native_loop)
        self._twin_args = (module, device, provider, cache_dir, prepare_weights, native_loop, bounds_check)

    def twin_for(self, compiled, weights: Callable[[str], torch.Tensor]) -> "ProgramBackedExecutor":
        """The executor of another guard class with the same code: its own Program (the Program
        checks its own guards and ranges), the kernels compiled once (Triton's cache)."""
        module, device, provider, cache_dir, prepare, native_loop, bounds_check = self._twin_args
        twin = ProgramBackedExecutor(compiled, module, weights, device, provider, cache_dir, self.check_shapes, prepare,
                                     native_loop, bounds_check)
        twin.code = self.code
        return twin

    def run(self, inputs: Sequence[torch.Tensor], symbols: dict[str, int] | None = None) -> list[torch.Tensor]:
        return self.runner.run(list(inputs))

    def refresh_prepared_weights(self) -> None:
        self.runner.refresh()  # weight-only launches (casts) first: the provider's copies may be of them
        self.provider.refresh()
