"""``blade.Config``: every compile option, typed and documented, in one place.

Use it as an argument or as a context manager (like ``torch_blade.Config``):

    cfg = blade.Config(enable_fp16=True, dump_dir="ir_dump")
    with cfg, torch.no_grad():
        unet = blade.optimize(unet, model_inputs=(x, t, ctx))

Attributes can also be set after construction (``cfg.enable_fp16 = True``). Nothing in Blade reads
environment variables; there is no other place options come from.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Literal

_STACK = threading.local()


@dataclass
class Config:
    #: Compute in float16: float32 inputs and weights are converted once, outputs are converted
    #: back to the caller's dtype. Norm statistics and softmax still accumulate in float32.
    enable_fp16: bool = False

    #: ``"all"``: every dim of every tensor input is a symbol (one compile serves every batch,
    #: resolution and sequence length); ``"none"``: every dim is pinned to the example's size.
    dynamic: Literal["all", "none"] = "all"

    #: Python int arguments (``unet(x, 981, ctx)``: a timestep): ``"auto"`` compiles them as
    #: constants, and when a call differs from a compiled variant only in int values, compiles one
    #: variant that takes every int argument as a symbol (as a size, >= 0), which serves every
    #: value without compiling again (ints the program must fix, such as a loop count, stay
    #: constants); ``"static"``: always constants (a variant per value); ``"dynamic"``: symbols
    #: from the first compile. Bools are always constants.
    int_arguments: Literal["auto", "static", "dynamic"] = "auto"

    #: Python float arguments (``controlnet(..., conditioning_scale=0.8)``, a float timestep):
    #: ``"auto"`` compiles them as constants, and when a call differs from a compiled variant only
    #: in float (and int) values, compiles one variant that takes every float argument as an input
    #: (a 0-dim tensor of the default dtype, float64 where the call has float64 tensors), which
    #: serves every value. torch.export fixes floats, so the model is traced with that tensor in
    #: the float's place: where it cannot take one (``if scale > 0``, ``math.sqrt(scale)``,
    #: ``F.interpolate(scale_factor=...)``), floats stay constants. ``"static"``: always constants
    #: (a variant per value); ``"dynamic"``: inputs from the first compile.
    float_arguments: Literal["auto", "static", "dynamic"] = "auto"

    #: Dims pinned to the example's size, by input name: ``{"sample": [1]}`` keeps the channel dim
    #: of ``sample`` static. Nested inputs use pytree paths: ``{"inputs['ids']": [1]}``.
    static_dims: dict[str, list[int]] = field(default_factory=dict)

    #: Ranges of dynamic dims, by input name and dim: ``{"sample": {0: (1, 16)}}`` (inclusive;
    #: ``None`` for an open end). Calls outside the range compile another variant.
    dim_ranges: dict[str, dict[int, tuple[int | None, int | None]]] = field(default_factory=dict)

    #: What to do with an op Blade cannot compile: ``"eager"`` runs it in PyTorch between compiled
    #: clusters and lists it in the report; ``"strict"`` raises ``UnsupportedOpError`` naming it.
    fallback: Literal["eager", "strict"] = "eager"

    #: ``"auto"``: torch.export, or TorchScript for a ``ScriptModule`` / ``allow_tracing=True``.
    frontend: Literal["auto", "export", "torchscript"] = "auto"

    #: Write the IR after every pass of a real compile to this folder (``NN-pass-name.mlir``).
    dump_dir: str | None = None

    #: How many guard classes (variants) one optimized module may compile; a call outside all of
    #: them then runs in eager PyTorch, with a message (``fallback="strict"``: raises ``GuardError``).
    #: A variant made for an empty batch (a size of 0) does not count.
    max_variants: int = 4

    #: After the first compile, compile up to this many more guard classes in a background thread
    #: (``compiler/speculate.py``): the sizes next to the example's that no variant accepts (an odd
    #: latent where the example's is a multiple of 8, batch 1 where a branch tests for it), so a
    #: later call there finds its variant ready instead of waiting for a capture (16-18 s for the
    #: SD 1.5 UNet on an H200). Costs host CPU and compile time in the background while the module
    #: already serves calls; counts against ``max_variants``. ``BladeModule.wait_precompiled()``
    #: waits for it. 0: off.
    precompile_guard_classes: int = 0

    #: Print progress and the per-stage times of each compile.
    verbose: bool = False

    #: Check at run time that every tensor the program computes has the shape its symbolic type
    #: predicts (slow; for tests and debugging).
    check_shapes: bool = False

    #: Compile bounds checks into every generated kernel: each kernel receives the element span of
    #: every tensor it reads or writes and ``tl.device_assert``s that each offset lies inside it,
    #: so a wrong address stops the program naming the kernel instead of reading or writing other
    #: memory (an illegal memory access, or worse, a silent wrong answer). Slower (extra compares,
    #: kernels compiled in Triton's debug mode); the kernels are separate cache entries. For tests
    #: and debugging; the launch-time shape and stride checks are always on regardless.
    bounds_check: bool = False

    #: How compiled programs run. ``"program"`` lowers each variant to a ``Program`` and runs it
    #: with the runtime's Program executor (cubins and cuBLASLt GEMMs from the C++ step list on
    #: CUDA; ``blade/executors/program_backed.py``), as a loaded artifact runs; ``"kernels"`` runs
    #: the IR with generated Triton kernels plus PyTorch library ops (on a CPU this needs
    #: ``TRITON_INTERPRET=1`` and runs them in Triton's interpreter); ``"reference"`` never runs
    #: generated kernels. ``"auto"``: ``"program"`` on CUDA, except ``"kernels"`` where sizes depend
    #: on tensor values (``nonzero``, ``masked_select``) or ``bounds_check`` is on (the bounds-checked
    #: path verified on GPUs; ``Config(executor="program", bounds_check=True)`` checks the Program's
    #: kernels, verified so far on the CPU interpreter); ``"reference"`` elsewhere
    #: (``blade.pipeline.executor_kind``).
    executor: Literal["auto", "kernels", "reference", "program"] = "auto"

    #: On CUDA, replay a CUDA graph per input-shape signature (``runtime/graph_pool.py``): a
    #: shape's first ``cuda_graph_after - 1`` calls run without one (a new shape pays no capture),
    #: the next captures it; at most ``max_cuda_graphs`` graphs holding at most
    #: ``max_cuda_graph_bytes`` of device memory are kept per module, least recently used first out.
    cuda_graphs: bool = True
    max_cuda_graphs: int = 8
    max_cuda_graph_bytes: int | None = 8 << 30  # a VAE decode at 1024x1024 keeps ~1-2 GiB
    cuda_graph_after: int = 2

    #: Let cuDNN time its convolution algorithms for each new convolution shape at the second call
    #: of that shape (the CUDA-graph warm-up run; the first call of a new input shape takes cuDNN's
    #: heuristic pick and stays cheap) and keep the fastest; off: cuDNN's heuristic pick always.
    #: Only Blade's own convolution calls are affected, not ``torch.backends.cudnn.benchmark``.
    #: With ``conv_library="cudnn"`` (the default) it applies to the legacy-call fallback only:
    #: cuDNN's graph-API plans are taken in its heuristic order, untimed.
    conv_algorithm_search: bool = True

    #: Who computes the ``linear`` / ``matmul`` library calls of a Program on CUDA (float16 and
    #: bfloat16; ``Config(executor="program")`` and loaded artifacts): ``"cublaslt"`` calls cuBLASLt
    #: from Blade's C++ runtime (``runtime/cublaslt_gemm.py``: one native call instead of torch's
    #: dispatcher, the bias in cuBLASLt's epilogue), ``"torch"`` calls torch's operators. Where the
    #: C++ runtime or cuBLASLt is missing, or a layout is not one it describes, torch computes it.
    #: Also the 1x1 channels-last convolutions, computed as GEMMs over the pixels.
    gemm_library: Literal["torch", "cublaslt"] = "cublaslt"

    #: Who computes the convolutions of a Program on CUDA (float16 and bfloat16, packed channels-last
    #: or channels-first; ``Config(executor="program")``): ``"cudnn"`` calls cuDNN from Blade's C++
    #: runtime (``runtime/cudnn_conv.py``: execution plans of cuDNN's graph API, no dispatcher, and
    #: the C++ step loop runs them without Python), ``"torch"`` calls torch's operators. Where the
    #: C++ runtime or cuDNN is missing, or a layout is not one it describes, torch computes it.
    #: Default since session 15: host cost per call below torch's (10-39 us against 15-45 on an
    #: H200), the same GPU kernels as torch's timed choice in the SD 1.5 UNet, and graphs off its
    #: convolutions leave Python. (Session 14's "0.2 ms slower with CUDA graphs" was the order the
    #: modules were made in one process, not cuDNN: ``benchmarks/graph_replay_probe.py``.)
    conv_library: Literal["torch", "cudnn"] = "cudnn"

    #: Who computes the attention library calls of a Program on CUDA: ``"cudnn"`` calls cuDNN's
    #: fused attention from Blade's C++ runtime (``runtime/cudnn_attention.py``: float16/bfloat16,
    #: no mask tensor, causal or not; the C++ step loop runs it without Python), from a shape's
    #: second call on (a plan costs tens of milliseconds; the first call takes torch's plan-free
    #: backend); ``"torch"`` calls ``scaled_dot_product_attention``. What cuDNN does not describe
    #: (masks, other dtypes, unaligned strides) goes to torch. Default since session 15: the same
    #: GPU kernel as torch's cuDNN backend (graphs-on replay span equal), and graphs off the UNet's
    #: 32 attention calls leave Python (SD 1.5 UNet 2x512: 8.4 ms against 10.9 on an H200).
    attention_library: Literal["torch", "cudnn"] = "cudnn"

    #: The Program executor's step loop on CUDA (``Config(executor="program")`` and loaded
    #: artifacts): from a size signature's second call, its generated-kernel launches run from
    #: one C++ step list and its views cost nothing (``runtime/native_loop.py``); library calls and
    #: fallbacks stay Python steps between them. False: every step from Python.
    native_step_loop: bool = True

    #: Convolutions run channels-last and want channels-last weights. True: the module's own
    #: convolution weights are converted to channels-last *in place* on the first GPU call (values
    #: unchanged; the module still works eagerly, its convolutions then return channels-last
    #: tensors), so no second copy of every weight is kept (1 GiB for the SD 1.5 UNet in fp16).
    #: False: the module is left untouched and Blade keeps channels-last copies, refreshed when a
    #: weight's version or storage changes; an update written in place through ``.data`` changes
    #: neither and is then not seen (keep True for PEFT/diffusers LoRA fusing).
    convert_weights_in_place: bool = True

    #: Keep the results of computations that read only weights across calls: the float16 casts of
    #: a float32 model's weights under ``enable_fp16`` (an SD 1.5 UNet: 686 cast launches and ~5 GB
    #: of memory traffic per call saved), recomputed in place when a weight's version or storage
    #: changes. Off by default: an update written in place through ``param.data`` (PEFT's default
    #: LoRA merge, ``weight.data += delta``, which diffusers' ``fuse_lora`` uses) changes neither,
    #: and the kept casts would be stale. Turn it on when weights change only through
    #: ``load_state_dict``, in-place ops under ``torch.no_grad()`` or by assigning ``.data``.
    prepare_weights: bool = False

    #: Where generated kernel sources and cubins are cached (default ``~/.cache/blade``).
    kernel_cache_dir: str | None = None

    #: Parallel kernel compile jobs (default: one per CPU core).
    compile_jobs: int | None = None

    # ----------------------------------------------------------------- context manager
    def __enter__(self) -> Config:
        stack = getattr(_STACK, "configs", None)
        if stack is None:
            stack = _STACK.configs = []
        stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _STACK.configs.pop()

    @staticmethod
    def current() -> Config:
        """The innermost ``with Config(...)`` of this thread, or the defaults."""
        stack = getattr(_STACK, "configs", None)
        return stack[-1] if stack else Config()

    def describe(self) -> str:
        defaults = Config()
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if getattr(self, f.name) != getattr(defaults, f.name)]
        return "Config(" + ", ".join(changed) + ")"

    def __post_init__(self) -> None:
        if self.fallback not in ("eager", "strict"):
            raise ValueError(f"Config.fallback must be 'eager' or 'strict', not {self.fallback!r}")
        if self.dynamic not in ("all", "none"):
            raise ValueError(f"Config.dynamic must be 'all' or 'none', not {self.dynamic!r}")
        if self.int_arguments not in ("auto", "static", "dynamic"):
            raise ValueError(f"Config.int_arguments must be 'auto', 'static' or 'dynamic', not {self.int_arguments!r}")
        if self.float_arguments not in ("auto", "static", "dynamic"):
            raise ValueError("Config.float_arguments must be 'auto', 'static' or 'dynamic', not "
                             f"{self.float_arguments!r}")
        if self.frontend not in ("auto", "export", "torchscript"):
            raise ValueError(f"Config.frontend must be 'auto', 'export' or 'torchscript', not {self.frontend!r}")
        if self.conv_library not in ("torch", "cudnn"):
            raise ValueError(f"Config.conv_library must be 'torch' or 'cudnn', not {self.conv_library!r}")
        if self.attention_library not in ("torch", "cudnn"):
            raise ValueError(f"Config.attention_library must be 'torch' or 'cudnn', not {self.attention_library!r}")
        if self.gemm_library not in ("torch", "cublaslt"):
            raise ValueError(f"Config.gemm_library must be 'torch' or 'cublaslt', not {self.gemm_library!r}")
        if self.executor not in ("auto", "kernels", "reference", "program"):
            raise ValueError("Config.executor must be 'auto', 'kernels', 'reference' or 'program', not "
                             f"{self.executor!r}")
        if self.max_variants < 1:
            raise ValueError("Config.max_variants must be at least 1")
        if self.precompile_guard_classes < 0:
            raise ValueError("Config.precompile_guard_classes must be at least 0 (0: off)")
        if self.max_cuda_graphs < 0 or self.cuda_graph_after < 1:
            raise ValueError(f"Config.max_cuda_graphs must be at least 0 (got {self.max_cuda_graphs}) and "
                             f"Config.cuda_graph_after at least 1 (got {self.cuda_graph_after})")
