"""The compile pipeline, in order. Read this file top to bottom to know what ``optimize`` does.

    nn.Module + example inputs
      1. capture    torch.export (or TorchScript -> torch.export)      frontend/export.py, torchscript.py
      2. import     ATen FX graph -> blade tensor dialect             frontend/fx_importer.py
      3. passes     canonicalize, shape-propagation,                  passes/
                    [convert-fp16, canonicalize] when enable_fp16,
                    cluster-supported, layout-nhwc, canonicalize, fuse-stitch
      4. codegen    one Triton kernel per blade.fused group,          codegen/emit.py
                    compiled ahead of time to cubins (cached)        codegen/aot.py
      5. execute    generated kernels + PyTorch library ops (CUDA)    compiler/executors/triton_executor.py
                    or the reference executor (PyTorch ops)          compiler/executors/reference.py

Every stage is timed into the ``CompileReport``; ``Config.dump_dir`` receives the IR after import
and after every pass (``00-import.mlir``, ``01-canonicalize.mlir``, ...).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch.export import ExportedProgram
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import VerifyException

from blade.config import Config
from blade.frontend.eager_results import data_dependent_names
from blade.ir import ModulePass, make_context, print_module, read_symbol_table
from blade.passes import get_pass
from blade.report import CompileReport
from blade.symbolic import ShapeError


def pass_names(config: Config) -> list[str]:
    """The pass pipeline for ``config``, by registered name."""
    names = ["canonicalize", "shape-propagation"]
    if config.enable_fp16:
        names += ["convert-fp16", "canonicalize"]
    names += ["cluster-supported", "layout-nhwc", "canonicalize", "fuse-stitch"]
    if config.enable_fp16:
        names += ["sink-weight-casts"]  # the casts convert-fp16 made, next to their first use
    return names


def run_passes(module: ModuleOp, names: list[str], report: CompileReport, dump_dir: str | None,
               first_index: int = 1) -> None:
    ctx = make_context()
    for i, name in enumerate(names, start=first_index):
        p: ModulePass = get_pass(name)()
        try:
            with report.stage(name):
                p.apply(ctx, module)
                module.verify()
        except Exception as e:
            e.add_note(f"in pass '{name}'")
            raise
        if dump_dir:
            dump(module, dump_dir, f"{i:02d}-{name}")


def dump(module: ModuleOp, dump_dir: str, stem: str) -> None:
    os.makedirs(dump_dir, exist_ok=True)
    with open(os.path.join(dump_dir, stem + ".mlir"), "w") as f:
        f.write(print_module(module))


@dataclass
class CompiledProgram:
    """One compiled variant: the IR plus what is needed to call it."""

    module: ModuleOp
    ep: ExportedProgram
    import_result: Any
    report: CompileReport
    launch_stats: Any = None


def capture(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config, allow_tracing: bool | None,
            report: CompileReport, pin_ones: bool = False) -> ExportedProgram:
    """The module's ExportedProgram for the call ``(args, kwargs)``, traced in the call's
    ``torch.autocast`` regions (this thread's): their casts are ops of the program. The capture
    itself runs with autocast off (it re-enters the call's inside ``forward`` only)."""
    from blade.runtime.call_signature import autocast_scope, autocast_state

    state = autocast_state()
    with autocast_scope(()):
        return _capture(module, args, kwargs, config, allow_tracing, report, pin_ones, state)


def _capture(module, args, kwargs, config: Config, allow_tracing: bool | None, report: CompileReport,
             pin_ones: bool, autocast: tuple) -> ExportedProgram:
    from blade.runtime.call_signature import describe_autocast
    from blade.frontend.export import CaptureError, decompose_unsupported, export_module, graph_targets
    from blade.frontend.export import FOLLOW_UP, drop_metadata_asserts, has_context_regions, has_value_mutation
    from blade.frontend.fx_importer import HANDLERS
    from blade.frontend.torchscript import is_torchscript, torchscript_to_export

    use_ts = config.frontend == "torchscript" or (
        config.frontend == "auto" and (is_torchscript(module) or bool(allow_tracing)))
    if autocast:
        report.notes.append(f"traced under torch.autocast ({describe_autocast(autocast)}), as the call ran")
    if use_ts and autocast:
        raise CaptureError(f"{type(module).__name__} is called under torch.autocast "
                           f"({describe_autocast(autocast)}): Blade captures autocast regions through torch.export "
                           "only, not through TorchScript (Config(frontend='export') where the model exports)")
    if use_ts:
        report.frontend = "torchscript"
        with report.stage("capture (torchscript)"):
            ep = torchscript_to_export(module, args, kwargs, trace=not is_torchscript(module))
    else:
        report.frontend = "torch.export"
        with report.stage("capture (torch.export)"):
            ep = export_module(module, args, kwargs, config, pin_ones=pin_ones, autocast=autocast)
        if torch.ops.aten.scaled_dot_product_attention.default in graph_targets(ep):
            from blade.frontend.export import SDPA_NOTE
            report.notes.append(SDPA_NOTE)
    in_place = getattr(ep, "blade_state_in_place", False)  # the forward updates a state object it returns
    from blade.frontend import aten_table  # noqa: F401 - fills HANDLERS

    unknown = {t for t in graph_targets(ep) if t not in HANDLERS}
    # in-place ops and context-manager regions (autocast, no_grad inside forward) need the
    # functionalising retrace even when nothing is decomposed
    retrace = has_value_mutation(ep) or has_context_regions(ep)
    if has_context_regions(ep):
        drop_metadata_asserts(ep)
    if unknown or retrace:
        with report.stage("decompose unsupported"):
            try:
                ep = decompose_unsupported(ep, unknown, force=retrace)
                # a decomposition can produce an activation that has one (F.logsigmoid:
                # log_sigmoid -> log_sigmoid_forward -> elementwise ops): a few more rounds, for
                # those only (decomposing the scatters functionalisation leaves behind added an
                # s0 > 1 guard, a variant more for batch 1)
                for _ in range(3):
                    more = {t for t in graph_targets(ep) if t not in HANDLERS and t in FOLLOW_UP} - unknown
                    if not more:
                        break
                    unknown |= more
                    ep = decompose_unsupported(ep, more)
            except Exception as e:  # noqa: BLE001 - e.g. a decomposition that guards on tensor data
                # the ops stay whole and run in eager PyTorch (the importer's fallback)
                names = ", ".join(sorted(str(t) for t in unknown))[:300]
                report.notes.append(f"decomposing {names} failed ({type(e).__name__}); they run in eager PyTorch")
                ep = decompose_unsupported(ep, set(), force=retrace)
    ep.blade_state_in_place = in_place  # what export saw of the forward (a decomposition's ep is new)
    return ep


class CompileError(RuntimeError):
    """A compile stage failed inside Blade (after capture): names the stage, the node or pass, the
    input shapes and what the user can do. The internal error is chained as ``__cause__``."""


#: Error types raised by Blade's own code (shape service, verifier, lowering bugs); they never reach
#: the user as such, only wrapped in ``CompileError``.
INTERNAL_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError, AssertionError,
                   NotImplementedError, VerifyException)


def _shapes(args: tuple, kwargs: dict) -> str:
    import torch.utils._pytree as pytree

    return ", ".join(f"{tuple(t.shape)}:{str(t.dtype).removeprefix('torch.')}"
                     for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)) or "-"


def _compile_error(model: str, stage: str, e: BaseException, args: tuple, kwargs: dict) -> CompileError:
    notes = "; ".join(getattr(e, "__notes__", []) or [])
    msg = " ".join(str(e).split())[:600]
    return CompileError(
        f"Blade failed to compile {model} in stage '{stage}' ({type(e).__name__}: {msg})"
        f"{'; ' + notes if notes else ''}; example input shapes [{_shapes(args, kwargs)}]. This is a "
        "Blade limitation or bug: please report this message. Meanwhile run the module in eager "
        "PyTorch, or pin the dims involved with Config(static_dims=...) (often enough when the failure "
        "is about a shape condition).")


def compile_program(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config,
                    allow_tracing: bool | None = None, label: str | None = None) -> CompiledProgram:
    from blade.frontend.fx_importer import import_program

    report = CompileReport(label or type(module).__name__, config=config.describe(), verbose=config.verbose)
    ep = capture(module, args, kwargs, config, allow_tracing, report)
    ranges = {(name, d): rng for name, dims in config.dim_ranges.items() for d, rng in dims.items()}
    stage = "import"
    try:
        try:
            with report.stage("import"):
                result = import_program(ep, strict=config.fallback == "strict", dim_ranges=ranges)
                result.module.verify()
        except (ShapeError, VerifyException) as e:
            # Size-oblivious export treats an example dim of 1 as "not 1" and may drop the fact that
            # it is 1 (layer_norm over a normalized shape with a 1 in it): export it static instead.
            from blade.frontend.export import has_dynamic_ones
            if report.frontend != "torch.export" or not has_dynamic_ones(args, kwargs, config):
                raise
            report.notes.append(f"exported again with the example's size-1 dims static "
                                f"({str(e).splitlines()[0][:200]})")
            ep = capture(module, args, kwargs, config, allow_tracing, report, pin_ones=True)
            with report.stage("import"):
                result = import_program(ep, strict=config.fallback == "strict", dim_ranges=ranges)
                result.module.verify()
        report.unsupported = result.unsupported
        report.notes += result.notes
        if config.dump_dir:
            dump(result.module, config.dump_dir, "00-import")
        stage = "passes"
        run_passes(result.module, pass_names(config), report, config.dump_dir)
        stage = "codegen check"
        if unfuse_unsupported(result.module, report, config.bounds_check) and config.dump_dir:
            dump(result.module, config.dump_dir, f"{len(pass_names(config)) + 1:02d}-unfuse-unsupported")
    except INTERNAL_ERRORS as e:
        raise _compile_error(report.model, stage, e, args, kwargs) from e
    report.module = result.module
    return CompiledProgram(result.module, ep, result, report)


def unfuse_unsupported(module: ModuleOp, report: CompileReport, bounds_check: bool = False) -> int:
    """Groups ``fuse-stitch`` made whose kernel the code generator cannot write (an integer ``pow``
    of two tensors, say) go back to their member ops, which then run like any op outside a group
    (library calls of the torch provider in a Program, torch in the IR executors): one group that
    cannot be generated no longer sends the whole module to eager PyTorch. Each is named in the
    report's notes. Returns how many groups were undone."""
    from blade.codegen.emit import plan_kernel
    from blade.codegen.expressions import Unsupported
    from blade.dialects.kernel import FusedOp
    from blade.dialects.program import YieldOp
    from blade.ir import walk_ops

    undone = 0
    for op in [o for o in walk_ops(module) if isinstance(o, FusedOp)]:
        try:
            plan_kernel(op, bounds_check=bounds_check)
            continue
        except Unsupported as e:
            report.notes.append(f"group {op.p('id')} ({op.p('ops')}) is not generated as a kernel ({e}): its "
                                "ops run one by one through torch")
        block = op.parent_block()
        remap = dict(zip(op.body.block.args, op.inputs))
        yielded = []
        for inner in list(op.body.block.ops):
            inner.detach()
            if isinstance(inner, YieldOp):
                yielded = [remap.get(v, v) for v in inner.operands]
                inner.erase()
                continue
            inner.operands = [remap.get(v, v) for v in inner.operands]
            block.insert_op_before(inner, op)
        for r, v in zip(op.results, yielded):
            r.replace_all_uses_with(v)
        op.detach()
        op.erase()
        undone += 1
    return undone


def executor_kind(config: Config, device: torch.device, module=None) -> str:
    """What ``Config.executor="auto"`` means on ``device`` for the IR ``module``: the Program
    executor on CUDA, but the IR kernel executor when ``bounds_check`` asks for device-side offset
    assertions (its bounds-checked kernels are the ones run on GPUs so far; the Program's, with
    ``executor="program"``, only on the CPU interpreter) or when sizes depend on tensor values (``nonzero``,
    ``masked_select``: a Program's sizes are all known from the input sizes before a call runs);
    the reference executor elsewhere."""
    if config.executor == "auto":
        if device.type != "cuda":
            return "reference"
        if config.bounds_check or (module is not None and data_dependent_names(read_symbol_table(module))):
            return "kernels"
        return "program"
    return config.executor


def kernel_config_key(plan) -> str:
    """Compiled kernels are shared per distinct (source, variants): two groups with one source but
    another static channel count have other compile-time constants and need their own. Launchers
    are never shared: one source can serve groups whose inputs have other ranks or broadcast dims
    (an ``add`` over ``[B, L, C]`` and one over ``[B, H, W, C]``), and the launcher addresses each
    input by its group's own plan."""
    return plan.name + repr([(v.kernel, sorted(v.constexprs.items()), v.aligned) for v in plan.variants])


def build_kernels(program: CompiledProgram, config: Config, device: torch.device) -> dict:
    """Generate and compile one kernel per ``blade.fused`` group; returns launchers by group id."""
    import sys

    from blade.codegen.aot import CompiledPlan, compile_plans, load_interpreted
    from blade.codegen.emit import plan_kernel
    from blade.dialects.kernel import FusedOp
    from blade.ir import walk_ops
    from blade.executors.launch import KernelLauncher, LaunchStats

    report = program.report
    with report.stage("codegen"):
        fused = [op for op in walk_ops(program.module) if isinstance(op, FusedOp)]
        plans = {op.p("id"): plan_kernel(op, bounds_check=config.bounds_check) for op in fused}
    config_key = kernel_config_key
    unique = {config_key(p): p for p in plans.values()}
    report.notes.append(f"{len(fused)} fused groups, {len({p.name for p in plans.values()})} distinct kernels, "
                        f"{sum(len(p.variants) for p in unique.values())} compiled variants")
    stats = LaunchStats()
    program.launch_stats = stats
    if device.type != "cuda":  # the same sharing as on the GPU: one module per key, a launcher per group
        modules = {key: load_interpreted(p, config.kernel_cache_dir) for key, p in unique.items()}
        return {i: KernelLauncher(CompiledPlan(unique[config_key(p)]), modules[config_key(p)], stats, plan=p)
                for i, p in plans.items()}
    major, minor = torch.cuda.get_device_capability(device)

    def progress(done, total, seconds):
        if config.verbose or (seconds > 5 and done in (total // 2, total)):
            print(f"[blade] {report.model}: compiled {done}/{total} kernels ({seconds:.1f} s)",
                  file=sys.stderr, flush=True)

    where = (device.index if device.index is not None else torch.cuda.current_device(), str(config.kernel_cache_dir))
    with _LOADED_LOCK:
        by_key = {key: _LOADED[(key, *where)] for key in unique if (key, *where) in _LOADED}
    missing = [p for key, p in unique.items() if key not in by_key]
    if by_key:
        report.notes.append(f"{len(by_key)} of {len(unique)} kernels were already loaded by an earlier compile "
                            "in this process (another variant or model): reused, not compiled")
    with report.stage("compile kernels"):
        compiled = compile_plans(missing, target=("cuda", major * 10 + minor, 32),
                                 root=config.kernel_cache_dir, jobs=config.compile_jobs, load=True,
                                 progress=progress) if missing else []
    with _LOADED_LOCK:
        for cp in compiled:
            _LOADED[(config_key(cp.plan), *where)] = cp
            by_key[config_key(cp.plan)] = cp
    return {i: KernelLauncher(by_key[config_key(p)], stats=stats, plan=p) for i, p in plans.items()}


#: Loaded kernels by (kernel_config_key, device index, cache dir), for the life of the process: a
#: new variant or another model with the same group source launches the loaded cubin instead of
#: compiling or loading it again (a new guard class of the SD 1.5 UNet shares nearly all kernels).
_LOADED: dict = {}
_LOADED_LOCK = threading.Lock()
