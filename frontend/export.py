"""The torch.export frontend: run ``torch.export`` with Blade's dynamic-shape policy.

Policy: every dim of every tensor input is dynamic (``Dim.AUTO``: dims the program fixes, such as
channels that must match a weight, become constants) unless ``Config`` pins it;
``Config.dim_ranges`` bounds a dim; int arguments are ``Dim.AUTO`` too where
``Config.int_arguments`` asks for symbols (the module does after a call that differs only in
ints; export fixes those the program needs fixed, a loop count). Export runs in non-strict mode
with PyTorch's *size-oblivious* treatment of backed sizes, so an example dim of size 2 does not make the
program assume "size != 1": one export serves batch 1 too.

No decomposition pass is run: Blade imports the pre-dispatch ATen graph that export produces, in
which the high-level ops it implements itself (``conv2d``, ``linear``, ``group_norm``,
``layer_norm``, ``scaled_dot_product_attention``, ``softmax``, ``upsample_nearest2d``...) are
still whole. Only when the graph holds ops Blade has no lowering for, or in-place ops, does it
run ``run_decompositions`` with a table restricted to those ops (functionalising the graph), so
the cost of a full core-ATen decomposition is never paid for models Blade covers.

torch.export is not thread-safe: while it traces, it swaps a module's parameters for fake tensors
and patches process-wide state. Two captures at once leave a module with fake parameters, so every
capture (export, tracing, decomposition) holds ``CAPTURE_LOCK``.

A capture that fails raises ``CaptureError`` naming the construct: for data-dependent control flow
(``if x.sum() > 0:``) the file, line and code, with the one rewrite that keeps the answer right
(``torch.cond``). Tracing instead would record one branch and answer wrongly for inputs that take
the other, so Blade never advises it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
import traceback
import threading
from typing import Any

import torch
import torch.fx.experimental._config as fx_config
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch.export import Dim, ExportedProgram
from torch.fx.experimental import symbolic_shapes
from torch.fx.experimental.symbolic_shapes import ShapeEnv, SLoc
from torch.overrides import TorchFunctionMode

from blade.config import Config

#: Held by every torch.export / torch.jit.trace / run_decompositions call of Blade.
CAPTURE_LOCK = threading.RLock()


class CaptureError(RuntimeError):
    """torch.export (or tracing) could not capture the model; the message names the construct."""


def dynamic_shapes_for(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config,
                       pin_ones: bool = False) -> dict[str, Any]:
    """``dynamic_shapes`` for torch.export, keyed by forward's parameter names; ``pin_ones`` keeps
    every example dim of size 1 static."""
    sig = inspect.signature(module.forward)
    bound = sig.bind(*args, **kwargs)
    spec: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            spec[name] = tuple(_spec_for(f"{name}[{i}]", v, config, pin_ones) for i, v in enumerate(value))
        elif param.kind == inspect.Parameter.VAR_KEYWORD:
            spec[name] = {k: _spec_for(k, v, config, pin_ones) for k, v in value.items()}
        else:
            spec[name] = _spec_for(name, value, config, pin_ones)
    return spec


def _spec_for(name: str, value: Any, config: Config, pin_ones: bool = False) -> Any:
    from blade.runtime.call_signature import takes_as_size

    def leaf(path, v):
        if takes_as_size(v) and config.int_arguments == "dynamic" and config.dynamic != "none":
            return Dim.AUTO  # a SymInt placeholder (a size carrier of the program), or fixed where it must be
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            return None
        key = name + pytree.keystr(path)
        pinned = set(config.static_dims.get(key, ()))
        out = {}
        for i in range(v.dim()):
            if i in pinned or config.dynamic == "none" or v.shape[i] == 0 or (pin_ones and v.shape[i] == 1):
                continue  # pinned by the user, a zero-size dim, or a size-1 dim (see export_module)
            lo, hi = config.dim_ranges.get(key, {}).get(i, (None, None))
            out[i] = Dim.AUTO(min=lo, max=hi) if (lo is not None or hi is not None) else Dim.AUTO
        return out or None

    return _map_dynamic_shapes(leaf, value)


def _map_dynamic_shapes(leaf, value: Any) -> Any:
    """``leaf(path, v)`` over ``value``'s leaves, in the structure torch.export matches
    ``dynamic_shapes`` against: containers as they are, a class registered with pytree (a
    transformers ``DynamicCache``) by its flattened children (rebuilding the class around dim
    specs fails: a cache made of dicts)."""
    from torch.export import dynamic_shapes as export_shapes

    mapper = getattr(export_shapes, "_tree_map_with_path", None)
    if mapper is None:  # another torch: pytree's own (classes are rebuilt)
        return pytree.tree_map_with_path(leaf, value)
    return mapper(leaf, value)


def _unalias(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Example inputs that share storage would be traced as one tensor (``f(x, x)`` becomes a
    program that reads its first argument twice); give each input its own copy."""
    seen: set[int] = set()

    def fresh(t):
        if not isinstance(t, torch.Tensor):
            return t
        key = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if key in seen:
            return t.clone()
        seen.add(key)
        return t

    return pytree.tree_map(fresh, (args, kwargs))


def register_output_pytrees() -> None:
    """Teach pytree the container types models return that it does not know
    (``runtime/state_objects.register_model_pytrees``: transformers' ``DynamicCache``)."""
    from blade.runtime.state_objects import register_model_pytrees

    register_model_pytrees()


def export_module(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config,
                  pin_ones: bool = False, autocast: tuple = ()) -> ExportedProgram:
    """torch.export with Blade's policy; raises ``CaptureError`` naming the failing construct.

    Size-oblivious export treats every symbolic dim as "not 1" where an op's meaning depends on
    it, without recording a guard. For an example dim of size 2 that is what Blade wants (the
    importer adds ``s != 1`` guards where the meaning changes, e.g. ``squeeze``), but an example
    dim of size 1 traced that way gives a program that is wrong for the example itself
    (``squeeze`` keeps the dim). So when the traced program has a size-1-sensitive op over a
    symbolic dim whose example size is 1, or when export fails with size-1 example dims, export
    runs again with every size-1 example dim static (torch's usual 0/1 specialisation).
    ``pin_ones`` asks for that export directly (the importer could not use the other one).

    ``autocast``: the ``torch.autocast`` regions of the call (``call_signature.autocast_state``).
    torch.export ignores the autocast a caller is in, so ``forward`` is traced entered into them
    (``_traced_forward``): export records the region, and its casts become ops of the program
    when the capture inlines it (``has_context_regions``).
    """
    register_output_pytrees()  # first: the copy below rebuilds a DynamicCache too (export runs on it)
    args, kwargs = _unalias(args, kwargs)
    args, kwargs, generators = _generators_out(args, kwargs)
    observed: dict = {}
    with _traced_forward(module, autocast, kwargs, observed, generators):
        ep = _export_module(module, args, kwargs, config, pin_ones)
    if generators:
        _refuse_generator_use(ep, module)
    #: the traced forward returned a state object it was given (a key/value cache updated in
    #: place): calls must leave the caller's object as eager does (runtime/state_objects.py)
    ep.blade_state_in_place = observed.get("state_in_place", False)
    return ep


@contextlib.contextmanager
def _traced_forward(module: torch.nn.Module, autocast: tuple, kwargs: dict | None = None,
                    observed: dict | None = None, generators: list | None = None):
    """While the block runs, ``module.forward`` (an attribute of the instance over the class's
    method: hooks, parameter names and the signature stay the module's) runs inside the autocast
    regions of ``autocast``, and teaches pytree the dataclasses it returns
    (``_register_output_dataclasses``) before export flattens them. Held under ``CAPTURE_LOCK``
    by the caller's capture.

    Where the call passes ``kwargs`` that ``forward`` takes through ``**kwargs`` (transformers'
    ``output_hidden_states=True``), the wrapper's signature names them as keyword-only parameters
    instead: torch.export's non-strict tracing holds such a value twice (in the ``**kwargs`` dict
    and beside it) and fails matching it with any ``dynamic_shapes`` ("Must provide a tree_name").

    ``observed["state_in_place"]``: whether the (last) traced call returned a state object it was
    passed, such as the ``DynamicCache`` a decoder step updates (``runtime/state_objects.py``).

    ``generators``: the ``torch.Generator`` arguments ``_generators_out`` took out of the call;
    forward gets them back in their places."""
    import functools

    from blade.runtime.call_signature import autocast_scope
    from blade.runtime.state_objects import returns_its_state

    had = "forward" in module.__dict__
    saved = module.__dict__.get("forward")
    forward = module.forward

    cpu_autocast = any(device == "cpu" for device, _ in autocast)

    @functools.wraps(forward)
    def traced(*args, **kwargs):
        if generators:
            args, kwargs = _generators_in(args, kwargs, generators)
        with autocast_scope(autocast) if autocast else contextlib.nullcontext(), \
                _CpuAutocastFloat32Pads() if cpu_autocast else contextlib.nullcontext():
            out = forward(*args, **kwargs)
        _register_output_dataclasses(out)
        if observed is not None:
            observed["state_in_place"] = returns_its_state(args, kwargs, out)
        return out

    explicit = _explicit_keywords(forward, kwargs or {})
    if explicit is not None:
        traced.__signature__ = explicit
    module.forward = traced
    try:
        yield
    finally:
        if had:
            module.forward = saved
        else:
            del module.forward


#: what a ``torch.Generator`` argument is while export traces (a constant it accepts)
_GENERATOR_PLACE = "<blade: a torch.Generator argument>"


def _generators_out(args: tuple, kwargs: dict) -> tuple[tuple, dict, list]:
    """The call with each ``torch.Generator`` argument replaced by a string constant, and the
    generators. torch.export takes no generator input ("Unfamiliar meta val"), while diffusers'
    pipelines pass one to methods that never draw from it (``vae.decode(z, generator=g)``). Call
    signatures compare generators by device only (``call_signature._constant_key``), so the program
    must not draw from them: ``_refuse_generator_use`` checks."""
    generators: list = []

    def out(v):
        if isinstance(v, torch.Generator):
            generators.append(v)
            return _GENERATOR_PLACE
        return v

    if not any(isinstance(v, torch.Generator) for v in pytree.tree_leaves((args, kwargs))):
        return args, kwargs, generators
    args, kwargs = pytree.tree_map(out, (args, kwargs))
    return args, kwargs, generators


def _generators_in(args: tuple, kwargs: dict, generators: list) -> tuple[tuple, dict]:
    """The traced call with ``_generators_out``'s generators back in their places."""
    left = iter(generators)
    return pytree.tree_map(lambda v: next(left) if isinstance(v, str) and v == _GENERATOR_PLACE else v,
                           (args, kwargs))


def _refuse_generator_use(ep: ExportedProgram, module: torch.nn.Module) -> None:
    """A traced program that draws random numbers from a generator argument would draw them from
    the example call's generator on every call (and never advance the caller's): refused."""
    for node in ep.graph.nodes:
        target = node.target
        uses = node.op == "call_function" and (
            getattr(target, "_overloadname", "") == "generator" or node.kwargs.get("generator") is not None)
        if uses:
            raise CaptureError(f"{type(module).__name__} draws random numbers ({target}) from a torch.Generator "
                               "argument; Blade compiles no generator inputs, so such calls run in eager PyTorch")


class _CpuAutocastFloat32Pads(TorchFunctionMode):
    """CPU autocast runs ``reflection_pad*`` / ``replication_pad*`` in float32 (its fp32 policy):
    eager's ``F.pad(x_bf16, mode="reflect")`` under ``torch.autocast("cpu")`` returns float32. Export
    keeps ``aten.pad`` whole, so the inlined autocast region never meets those ops and the pad (and
    everything after it) would compute in the autocast dtype. While a forward is traced under CPU
    autocast, such a pad's low-precision float input is cast to float32 first, as autocast does."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.pad and torch.is_autocast_enabled("cpu") and args:
            mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
            x = args[0]
            if (mode in ("reflect", "replicate") and isinstance(x, torch.Tensor) and x.device.type == "cpu"
                    and x.dtype in (torch.float16, torch.bfloat16)):
                return func(x.float(), *args[1:], **kwargs)
        return func(*args, **kwargs)


def _explicit_keywords(forward, kwargs: dict) -> inspect.Signature | None:
    """``forward``'s signature with its ``**kwargs`` parameter replaced by a keyword-only
    parameter per keyword of ``kwargs`` it would take, or None where it takes none that way."""
    try:
        sig = inspect.signature(forward)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if not params or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return None
    named = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    extra = [k for k in kwargs if k not in named]
    if not extra:
        return None
    return sig.replace(parameters=params[:-1] + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in extra])


def _register_output_dataclasses(value: Any, depth: int = 0) -> None:
    """Register with pytree (``torch.export.register_dataclass``: every field a child) each
    dataclass type in a forward's output that pytree does not know, inside the containers it
    knows, so a model returning ``Out(a=..., b=...)`` compiles and its compiled module returns an
    ``Out`` too. Process-wide, as transformers registers its own output classes; a type that cannot
    be registered (a field outside ``__init__``) is left: export then names it and the module
    runs in eager PyTorch."""
    import dataclasses

    if depth > 8 or isinstance(value, torch.Tensor):
        return
    kind = type(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and kind not in pytree.SUPPORTED_NODES:
        try:
            torch.export.register_dataclass(kind, serialized_type_name=f"blade.output.{kind.__module__}."
                                                                       f"{kind.__qualname__}")
        except Exception:  # noqa: BLE001 - export reports the type it cannot flatten
            return
    if kind in pytree.SUPPORTED_NODES:
        for child in pytree.tree_flatten(value, is_leaf=lambda v: v is not value)[0]:
            _register_output_dataclasses(child, depth + 1)


def _export_module(module, args, kwargs, config: Config, pin_ones: bool) -> ExportedProgram:
    try:
        return _export_size_oblivious(module, args, kwargs, config, pin_ones)
    except CaptureError as first:
        # A size the program computes can be 1 where a broadcast depends on it (x.chunk(2, 1)[1]
        # of a 2-channel x has 1 channel and broadcasts against x): size-oblivious tracing assumes
        # it is not 1 and fails. torch's usual tracing asks the question instead and records the
        # answer as a guard, so that export is exact; it is tried once before giving up.
        try:
            return _export(module, args, kwargs, dynamic_shapes_for(module, args, kwargs, config),
                           size_oblivious=False)
        except Exception:  # noqa: BLE001 - the first error says more about the model
            raise first from None


def _export_size_oblivious(module, args, kwargs, config: Config, pin_ones: bool) -> ExportedProgram:
    ep = None
    if not pin_ones:
        try:
            ep = _export(module, args, kwargs, dynamic_shapes_for(module, args, kwargs, config))
        except Exception as e:  # noqa: BLE001 - retried or re-raised with context below
            if not has_dynamic_ones(args, kwargs, config):
                raise _export_error(module, e) from e
    if ep is None or _size_one_sensitive(ep):
        try:
            ep = _export(module, args, kwargs, dynamic_shapes_for(module, args, kwargs, config, pin_ones=True))
        except Exception as e:  # noqa: BLE001 - re-raised with the context the user needs
            raise _export_error(module, e) from e
    return ep


def _export(module, args, kwargs, dyn, size_oblivious: bool = True) -> ExportedProgram:
    with CAPTURE_LOCK, torch.no_grad(), fx_config.patch(backed_size_oblivious=size_oblivious), \
            AttentionBackendGuardsSuppressed(), _guards_name_model_lines(), _symbolic_min_max(), \
            _quiet_unbacked_symbol_warnings():
        return torch.export.export(module, args, kwargs, dynamic_shapes=dyn, strict=False)


@contextlib.contextmanager
def _quiet_unbacked_symbol_warnings():
    """torch logs a warning when a value read from a tensor (``.item()`` of
    a float Dynamo lifted into an input, such as a LayerNorm's ``eps`` under
    ``torch.compile(backend="blade", dynamic=True)``) has no line of user code; Blade handles such
    values (they are data, run where they are needed), so the dump is noise. Other warnings of
    that logger still print."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Unable to find user code corresponding to" not in str(record.msg)

    logger = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    f = _Drop()
    logger.addFilter(f)
    # torch.export also prints the partial graph of a failed attempt to stderr; Blade retries
    # some failures another way and reports the ones it cannot handle with the model's line, so
    # the dump (often hundreds of lines) is dropped: a module global ``print`` in torch's export
    # module shadows the builtin there only, while Blade holds CAPTURE_LOCK
    import builtins

    from torch.export import _trace

    def quiet_print(*args, **kwargs):
        if args and isinstance(args[0], str) and args[0].lstrip().startswith("def forward(") \
                and kwargs.get("file") is sys.stderr:
            return None
        return builtins.print(*args, **kwargs)

    had = "print" in vars(_trace)
    saved = vars(_trace).get("print")
    _trace.print = quiet_print
    try:
        yield
    finally:
        logger.removeFilter(f)
        if had:
            _trace.print = saved
        else:
            del _trace.print


_NON_STRICT_UTILS = os.path.join("_export", "non_strict_utils.py")


@contextlib.contextmanager
def _symbolic_min_max():
    """Python's ``max``/``min`` over symbolic sizes in the model's own code, without a guard.

    The builtins compare their arguments, and each comparison of two symbolic sizes becomes a
    guard that splits the model's shapes into classes: diffusers' ``Upsample2D`` takes
    ``max(out_h / h, out_w / w)`` (only to test it against 2**31), so a UNet at odd latent sizes
    compiled one guard class per aspect-ratio order (8 of the 11 classes of the GPU shape fuzz).
    ``torch.sym_max``/``sym_min`` compute the same value as an expression (``Max(a, b)``), which
    Blade's shapes carry like any other. Only calls from the model's own frames with symbolic
    arguments of one kind (all integers or all floats, no ``key=``/``default=``) change; PyTorch's,
    Blade's and the standard library's calls keep the builtins. The builtins are process-wide, so
    this holds only under ``CAPTURE_LOCK`` (nothing else traces meanwhile), and a non-symbolic call
    from any thread behaves exactly as before."""
    import builtins
    import functools
    import sys

    skip = _skipped_dirs() + ("<frozen", "<string>")

    def symbolic(py, sym):
        def fn(*args, **kwargs):
            caller = sys._getframe(1)
            # non-strict export wraps the builtins too (for tensor arguments, pairwise): its frames
            # are skipped to find who called max/min
            while caller is not None and caller.f_code.co_filename.endswith(_NON_STRICT_UTILS):
                caller = caller.f_back
            if kwargs or not args or caller is None or caller.f_code.co_filename.startswith(skip):
                del caller
                return py(*args, **kwargs)
            del caller
            items = list(args[0]) if len(args) == 1 else list(args)  # max(iterable) iterates it anyway
            if not any(isinstance(v, (torch.SymInt, torch.SymFloat)) for v in items):
                return py(items)
            ints = all(isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) for v in items)
            floats = all(isinstance(v, (float, torch.SymFloat)) for v in items)
            if not (ints or floats):
                return py(items)  # mixed kinds: the builtin's choice keeps the winner's type
            return functools.reduce(sym, items)

        fn.__name__, fn.__doc__ = py.__name__, py.__doc__
        return fn

    saved = builtins.max, builtins.min
    builtins.max, builtins.min = symbolic(builtins.max, torch.sym_max), symbolic(builtins.min, torch.sym_min)
    try:
        yield
    finally:
        builtins.max, builtins.min = saved


def _skipped_dirs() -> tuple[str, ...]:
    """Directories whose frames are never "the model's line": PyTorch, Blade, the standard library."""
    import importlib
    import sysconfig

    packages = ("torch", "blade", "blade.frontend", "blade.runtime", "blade.passes", "blade.codegen")
    dirs = [os.path.dirname(importlib.import_module(p).__file__) for p in packages]
    dirs.append(sysconfig.get_paths()["stdlib"])
    return tuple(d + os.sep for d in dirs)


@contextlib.contextmanager
def _guards_name_model_lines():
    """Record, with each guard, the innermost frame of the model's own code.

    torch names the innermost frame outside a fixed list of its files, which for a guard asked
    inside an op (a meta function called through ``_ops.py``) or inside Blade's own tracing
    helpers is that file: "s0 <= 1 at _ops.py:865" says nothing. Skipping every PyTorch, Blade
    and standard-library frame names the model line that made the call (diffusers'
    ``resnet.py:340``), which is what a user can act on; it fills ``maybe_user_loc`` where torch
    has none. torch's own ``framework_loc`` is kept: the layout-guard filter
    (``torch_symbols._is_layout_guard``) reads it, and a guard is layout-only only when the
    convolution's memory-format code asked it directly (a shape check of the convolution's meta
    function, also under that frame, must stay a guard). Held under ``CAPTURE_LOCK``."""
    original = getattr(ShapeEnv, "_get_stack_summary", None)
    uninteresting_files = getattr(symbolic_shapes, "uninteresting_files", None)
    if original is None or uninteresting_files is None:  # another torch release: keep its own sites
        yield
        return
    skip = _skipped_dirs()

    def summary(self, is_debug: bool = False, framework_loc=None):
        if framework_loc is None:  # torch's own choice, made from the caller (not from this frame)
            frame = inspect.currentframe().f_back
            while frame is not None and frame.f_code.co_filename in uninteresting_files():
                frame = frame.f_back
            if frame is not None:
                framework_loc = traceback.FrameSummary(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
            del frame
        sloc, extra = original(self, is_debug, framework_loc)
        if sloc.maybe_user_loc is not None:
            return sloc, extra
        frame = inspect.currentframe()
        while frame is not None and frame.f_code.co_filename.startswith(skip + ("<frozen", "<string>")):
            frame = frame.f_back
        model = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame is not None else None
        del frame
        return SLoc(sloc.framework_loc, model), extra

    ShapeEnv._get_stack_summary = summary
    try:
        yield
    finally:
        ShapeEnv._get_stack_summary = original


SDPA_NOTE = ("guards from scaled_dot_product_attention's backend selection were not recorded: they "
             "choose among flash/efficient/math kernels and output strides, never values or shapes, "
             "and Blade lowers the op itself")


_SDPA_OP = torch.ops.aten.scaled_dot_product_attention.default


class AttentionBackendGuardsSuppressed(TorchFunctionMode):
    """Trace ``F.scaled_dot_product_attention`` with the shape environment's guards suppressed.

    On CUDA, FakeTensor runs SDPA's C++ composite, whose backend choice (flash, memory-efficient
    or math, and the output strides each gives) asks questions such as ``batch != 1``; each
    answer becomes a guard, so batch 1 compiled a whole second variant of ViT/Llama/CLIP models
    (issue 8). The graph keeps the op whole (``aten.scaled_dot_product_attention``), its output
    shape is fixed by its schema, and every backend computes the same values, so those guards
    cannot change what Blade compiles. Suppressed guards also add no replacement or axiom that
    later code could rely on. Guards the model's own code asks (``if q.shape[0] != 1``) are
    outside the call and recorded as usual. The aten op is matched too: ``run_decompositions``
    re-propagates the graph's nodes and would otherwise record the same guards again.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention and func is not _SDPA_OP:
            return func(*args, **kwargs)
        fake_mode = torch._guards.detect_fake_mode(args)
        env = getattr(fake_mode, "shape_env", None)
        if env is None:
            return func(*args, **kwargs)
        with env.suppress_guards():
            return func(*args, **kwargs)


def _export_error(module: torch.nn.Module, e: Exception) -> CaptureError:
    return CaptureError(explain_export_failure(type(module).__name__, e))


def has_dynamic_ones(args: tuple, kwargs: dict, config: Config) -> bool:
    """Whether some example dim is 1 and would be exported as a symbol."""
    if config.dynamic == "none":
        return False
    return any(isinstance(t, torch.Tensor) and 1 in t.shape for t in pytree.tree_leaves((args, kwargs)))


# ops whose result shape depends on whether an input dim is 1 (dims they inspect: None = all)
_SQUEEZES = {"squeeze.default", "squeeze.dim", "squeeze.dims", "squeeze_copy.default",
             "squeeze_copy.dim", "squeeze_copy.dims"}


def squeezed_dims(node: torch.fx.Node) -> list[int]:
    """The input dims a squeeze node inspects (every dim for ``squeeze()``)."""
    rank = node.args[0].meta["val"].dim()
    if len(node.args) < 2:
        return list(range(rank))
    dims = node.args[1]
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted({d % rank for d in dims}) if rank else []


def _size_one_sensitive(ep: ExportedProgram) -> bool:
    """A squeeze over a symbolic dim whose example size is 1 (traced as if it were not 1)."""
    for node in ep.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        name = node.target._overloadpacket.__name__ + "." + node.target._overloadname
        if name not in _SQUEEZES:
            continue
        shape = node.args[0].meta["val"].shape
        for d in squeezed_dims(node):
            size = shape[d]
            if isinstance(size, torch.SymInt) and size.node.hint == 1:
                return True
    return False


_USER_FRAME = re.compile(r'The following call raised this error:\s*File "([^"]+)", line (\d+), in (\S+)\s*\n\s*(.*)')


def _user_frame(e: BaseException) -> str:
    """`` at file:line in function (`code`)`` of the innermost traceback frame outside PyTorch and
    Blade, or ''."""
    import os
    import traceback

    import importlib

    packages = ("torch", "blade", "blade.frontend", "blade.runtime", "blade.passes", "blade.codegen")
    skip = tuple(os.path.dirname(importlib.import_module(p).__file__) + os.sep for p in packages)
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(skip)]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f.filename}:{f.lineno} in {f.name} (`{(f.line or '').strip()}`)"


def explain_export_failure(model: str, e: BaseException) -> str:
    """One paragraph: what torch.export refused, where, and what the user can do."""
    text = str(e)
    where = ""
    m = _USER_FRAME.search(text)
    if m:
        where = f" at {m.group(1)}:{m.group(2)} in {m.group(3)} (`{m.group(4).strip()}`)"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(e).__name__)
    data_dependent = (type(e).__name__ in ("GuardOnDataDependentSymNode", "DataDependentOutputException",
                                           "DynamicOutputShapeException")
                      or "data-dependent" in text or "data dependent" in text)
    if not where:
        where = _user_frame(e)
    if type(e).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException"):
        return (f"{first}{where} returns a Python value or a size that depends on tensor values "
                f"({type(e).__name__}); torch.export cannot capture it, so Blade cannot compile this model")
    if data_dependent:
        return (f"data-dependent control flow or output size{where} ({type(e).__name__}): the program "
                "depends on tensor values. Rewrite a branch on a tensor value with torch.cond(pred, true_fn, "
                "false_fn, operands) so both branches are compiled (tracing would record one branch and "
                "answer wrongly for the other)")
    return (f"torch.export could not capture {model}{where}: {type(e).__name__}: {first}. Blade needs a "
            "forward that torch.export accepts (see the torch.export documentation for the construct "
            "named); shape-dependent branches can be pinned with Config(static_dims=...)")


def decompose_unsupported(ep: ExportedProgram, unsupported_targets: set, force: bool = False) -> ExportedProgram:
    """Decompose only ``unsupported_targets`` (those with a registered decomposition).

    ``force`` runs the (functionalising) retrace even with nothing to decompose, which removes
    in-place ops from the graph.
    """
    table = dict(torch.export.default_decompositions())
    table.update(_extra_decompositions())
    keep = {op: table[op] for op in list(table.keys()) if op in unsupported_targets}
    if not keep and not force:
        return ep
    _alias_submodule_constants(ep)
    with CAPTURE_LOCK, fx_config.patch(backed_size_oblivious=True), AttentionBackendGuardsSuppressed(), \
            _quiet_unbacked_symbol_warnings():
        return ep.run_decompositions(keep)


def _alias_submodule_constants(ep: ExportedProgram) -> None:
    """Tensors a submodule's forward makes from Python data (``torch.tensor([])``: transformers'
    cache layers start from one) are lifted as constants named ``decoder.block.0....lifted_tensor_0``;
    the retrace of ``run_decompositions`` then looks them up by their last name only and fails
    ("Constant tensor lifted_tensor_0 is not in the constants dictionary"). Each is also filed
    under that name (the same tensor)."""
    for key in [k for k in ep.constants if "." in k]:
        short = key.rsplit(".", 1)[1]
        if short.startswith("lifted_tensor_"):
            ep.constants.setdefault(short, ep.constants[key])


def _extra_decompositions() -> dict:
    """Core ATen ops without a default decomposition whose torch decomposition is made of ops
    Blade compiles (elementwise chains, views, ``expand``, index gathers, reductions), so they
    join the fused kernels instead of running in eager PyTorch:

    * activations: ReLU6 (``hardtanh``: MobileNetV2, EfficientNet), LeakyReLU, ELU;
    * bilinear upsampling (SegFormer's and DPT's heads, ``F.interpolate(mode="bilinear")``):
      index gathers at computed coordinates and a weighted sum;
    * vector norms (``torch.norm``/``F.normalize``), batch norm over the batch's own statistics
      (``InstanceNorm`` without running stats), ``any``, weight norm
      (wav2vec2's and HuBERT's positional convolution, vocoders: ``g * v / |v|`` every call, so an
      update of ``g`` or ``v`` is seen), Euclidean distances (``cdist``: VQ codebooks).

    RMS norm (``_fused_rms_norm``) has a handler of its own (``aten_windows.py``), used with every
    torch version (2.11 has no decomposition of it).
    """
    from torch._decomp import get_decompositions

    aten = torch.ops.aten
    return get_decompositions([
        aten.hardtanh.default, aten.leaky_relu.default, aten.elu.default,
        aten.upsample_bilinear2d.vec, aten.upsample_bilinear2d.default,
        aten.linalg_vector_norm.default, aten._native_batch_norm_legit.no_stats,
        aten._native_batch_norm_legit_functional.default, aten.any.default, aten.any.dim, aten.any.dims,
        aten._weight_norm_interface.default, aten._euclidean_dist.default,
    ])


#: ops decomposed again when an earlier decomposition produced them (elementwise results only)
FOLLOW_UP = {torch.ops.aten.log_sigmoid_forward.default, torch.ops.aten._prelu_kernel.default, torch.ops.aten.hardtanh.default,
             torch.ops.aten.leaky_relu.default, torch.ops.aten.elu.default,
             # instance_norm -> batch norm over its own statistics
             torch.ops.aten._native_batch_norm_legit.no_stats,
             # _weight_norm -> _weight_norm_interface (-> vector norm), cdist -> _euclidean_dist
             torch.ops.aten._weight_norm_interface.default, torch.ops.aten._euclidean_dist.default,
             torch.ops.aten.linalg_vector_norm.default,
             torch.ops.aten._native_batch_norm_legit_functional.default}


def graph_targets(ep: ExportedProgram) -> set:
    return {n.target for n in ep.graph.nodes if n.op == "call_function"}


#: in-place ops that change autograd metadata only, never values (imported as the identity);
#: transformers' caches start from ``torch.tensor([])`` constants that export lifts and ``detach_``es,
#: and torch's ``run_decompositions`` then fails on those constants
METADATA_ONLY_MUTATIONS = {torch.ops.aten.detach_.default}


def _context_regions() -> frozenset:
    """The higher-order ops export makes of a context manager entered inside ``forward``
    (``torch.autocast``, ``torch.no_grad`` / ``enable_grad``), where this torch has them."""
    hops = torch.ops.higher_order
    return frozenset(getattr(hops, name) for name in ("wrap_with_autocast", "wrap_with_set_grad_enabled")
                     if hasattr(hops, name))


def has_context_regions(ep: ExportedProgram) -> bool:
    """Whether the graph holds a context-manager region (``_context_regions``). The
    functionalising retrace (``decompose_unsupported(..., force=True)``) inlines them: an autocast
    region's casts become explicit ``_to_copy`` ops (so they compile), a grad-mode region's ops
    become plain ops (an inference program computes the same values either way). Left whole, each
    region and every op inside it would run in eager PyTorch."""
    regions = _context_regions()
    return any(t in regions for t in graph_targets(ep))


def drop_metadata_asserts(ep: ExportedProgram) -> None:
    """Remove ``aten._assert_tensor_metadata`` nodes (export's checks of a ``.to()``'s input dtype,
    which Blade imports as nothing) from ``ep`` in place. Before an autocast region is inlined: a
    graph captured by TorchDynamo (``torch.compile(backend="blade")``) records the region's result
    as float32 there, and the inlining retrace, which computes it in the autocast dtype, would stop
    at the assertion."""
    target = torch.ops.aten._assert_tensor_metadata.default
    for node in [n for n in ep.graph.nodes if n.op == "call_function" and n.target is target]:
        if not node.users:
            ep.graph.erase_node(node)
    ep.graph_module.recompile()


def has_value_mutation(ep: ExportedProgram) -> bool:
    """Whether the graph mutates values in place (and must be functionalised before import)."""
    return any(isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable and t not in METADATA_ONLY_MUTATIONS
               for t in graph_targets(ep))


def same_program(a: ExportedProgram, b: ExportedProgram) -> bool:
    """Whether two captures compile to the same code: equal graphs (ops, arguments, tensor types,
    the bodies of subgraphs such as ``torch.cond`` branches), signatures, dim ranges and guards,
    and equal lifted constants. They may differ in the pytree structure of their inputs and
    outputs (``return_dict=True`` vs ``False``). A non-tensor input is burned into the graph where
    it matters, so its placeholder's value is not compared."""
    if _fingerprint(a) != _fingerprint(b) or a.constants.keys() != b.constants.keys():
        return False
    for key, x in a.constants.items():
        y = b.constants[key]
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if isinstance(x, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
                return False
        elif x is not y:
            return False
    return True


def _fingerprint(ep: ExportedProgram) -> tuple:
    shape_envs: list = []
    nodes = _graph_fingerprint(ep.graph_module, shape_envs)
    guards = tuple(str(g.expr) for g in shape_envs[0].guards) if shape_envs else ()
    return (nodes, str(ep.graph_signature), str(sorted((str(k), str(v)) for k, v in ep.range_constraints.items())),
            guards)


def _graph_fingerprint(gm: torch.fx.GraphModule, shape_envs: list) -> tuple:
    nodes = []
    for n in gm.graph.nodes:
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            env = getattr(getattr(val, "fake_mode", None), "shape_env", None)
            if env is not None and not shape_envs:
                shape_envs.append(env)
            typ = f"{tuple(val.shape)}:{val.dtype}"
        elif n.op == "placeholder":
            typ = "constant"
        else:
            typ = repr(val)
        body = ()
        if n.op == "get_attr":
            sub = getattr(gm, str(n.target), None)
            if isinstance(sub, torch.fx.GraphModule):
                body = _graph_fingerprint(sub, shape_envs)
        nodes.append((n.op, str(n.target), str(n.args), str(n.kwargs), typ, body))
    return tuple(nodes)
