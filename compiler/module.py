"""``BladeModule``: the drop-in ``nn.Module`` that ``blade.optimize`` returns.

It takes the same arguments as the original module and returns the same output structure
(diffusers/transformers output classes included, through the exported pytree specs). Each call:

1. binds the arguments to ``forward``'s signature (``runtime/call_signature.py``): positional or
   keyword, and defaults left out or passed, reach the same variant; a wrong number or name of
   arguments raises eager's own ``TypeError`` before anything compiles;
2. picks the first variant whose call signature (structure, dtypes, devices, non-tensor values,
   training flag) equals the call's and whose guards hold for its sizes;
3. when none does, compiles one more variant with the call's inputs as the example (logged,
   bounded by ``Config.max_variants``), never running code compiled for another guard class or
   dtype. A compile that fails, or a fresh variant that does not accept the very call it was
   compiled for (an internal error, reported loudly), makes that call and every later call of the
   same signature run the original module in eager PyTorch; that signature never compiles again.

Thread safety: calls may come from several threads. Compiles of one module are serialised (the
others wait, then find the new variant); torch.export swaps a module's parameters for fake tensors
while it traces, so eager runs of the original wait for a running compile of it
(``structure_watch.ModuleGate``, one per original module), and captures are serialised
process-wide (``CAPTURE_LOCK``).

Weights are read from the original module at call time (no copies), so in-place updates of its
parameters are seen; structure changes (a replaced submodule, a new parameter, buffer or hook)
drop the variants (``runtime/structure_watch.py``). Guard classes whose program is one already
compiled share its code. A variant (``compiler/variant.py``) runs through the executor
``Config.executor`` picks: on CUDA by default a ``Program`` run by the runtime's Program executor
(``executors/program_backed.py``), with CUDA graphs per shape on top (the section below). Attributes
the wrapper does not have (``config``, ``dtype``...) are looked up on the original module; its
public methods (``generate``, ``decode``) run through this module (``compiler/methods.py``);
``training`` is the original's.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import threading
import time
import weakref

import torch
import torch.utils._pytree as pytree

from blade.config import Config
from blade.frontend.export import CAPTURE_LOCK, CaptureError
from blade.ir import code_key
from blade.pipeline import build_kernels, compile_program, executor_kind
from blade.report import SLOW_STAGE_S
from blade.runtime.call_signature import (CallLayouts, CallSignature, bind_call, describe_inputs, flatten_call,
                                         forward_signature, is_size_carrier, takes_as_size, takes_as_value,
                                         value_dtype)
from blade.executors.reference import ReferenceExecutor
from blade.methods import method_entry
from blade.runtime.cuda_capture import CUDA_CAPTURE_LOCK, end_generator_capture, synchronizes
from blade.runtime.graph_pool import GraphPool
from blade.runtime.program_executor import no_recording
from blade.runtime.state_objects import carry_state, register_model_pytrees
from blade.runtime.structure_watch import StructureSnapshot, gate_for
from blade.executors.triton_executor import KernelExecutor
from blade.executors.program_backed import ProgramBackedExecutor
from blade.runtime.host_provider import TorchProvider, module_call
from blade.symbolic import ShapeError
from blade.variant import Variant, _Graph, compiled_programs, _program_weights, _weight_resolver  # noqa: F401 - tests import them here


class _NewCode(Exception):
    """A capture past ``Config.max_variants`` whose program is not one already compiled."""

    def __init__(self, variant: "Variant"):
        super().__init__("new program past max_variants")
        self.variant = variant


class GuardError(RuntimeError):
    """A call matches no compiled variant and no more variants may be compiled (raised in strict
    mode; otherwise such calls run in eager PyTorch, with a message)."""


class BladeModule(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, config: Config, allow_tracing: bool | None):
        super().__init__()
        register_model_pytrees()  # before any call is flattened (runtime/state_objects.py)
        self.original = module
        self._config = config
        self._allow_tracing = allow_tracing
        self._variants: list[Variant] = []
        self._forward_signature = forward_signature(module)
        from blade.frontend.torchscript import is_torchscript

        # the TorchScript frontend traces tensor arguments only: defaults are not filled in there
        self._fill_defaults = not (config.frontend == "torchscript" or (
            config.frontend == "auto" and (is_torchscript(module) or bool(allow_tracing))))
        # a call shaped like an earlier one skips binding and flattening (tens of us per call)
        self._call_layouts = CallLayouts(self._forward_signature, self._fill_defaults)
        # signatures answered eagerly for good: their compile failed, or produced a variant that
        # refused the call it was compiled for
        self._eager_signatures: list[CallSignature] = []
        self._compile_lock = threading.Lock()
        self._said_max_variants = False
        #: a compile for a call with a zero-size dimension failed: such calls run eagerly from then
        #: on, and the failure says nothing of the call structure (other calls still compile)
        self._empty_failed = False
        #: thread id -> the message of a compile that just failed, said once eager has answered the
        #: call (inputs eager refuses too are said as such, not as Blade's failure)
        self._failed_compiles: dict[int, str] = {}
        #: a compile with int arguments as symbols kept none of them symbolic, or one with float
        #: arguments as inputs failed (``_scalars_differ``): later calls compile them as constants
        self._ints_stay_constant = False
        self._floats_stay_constant = False
        #: calls answered by the original module in eager PyTorch (a fallback, a refused shape...)
        self.eager_calls = 0
        self._prepared_weights: dict = {}  # channels-last weight copies, shared by every variant
        self._prepared_casts: dict = {}  # weights cast to the program's dtype once, the same
        #: the library provider of Config(executor="program") variants, one per module (as above)
        self._torch_provider = TorchProvider(self._config.conv_algorithm_search,
                                             self._config.convert_weights_in_place, self._config.gemm_library,
                                             self._config.conv_library, self._config.attention_library)
        #: guard classes captured past Config.max_variants whose program was new: they run eagerly
        #: (their variants are kept only to recognise the class; nothing of them was compiled)
        self._beyond_limit: list[Variant] = []
        self._gate = gate_for(module)
        self._structure_seen = self._gate.watch.version
        self._snapshot = StructureSnapshot(self.original)  # what the variants are compiled from
        self._graph_pool_lock = threading.Lock()
        self._graph_pool = self._new_graph_pool()
        self._precompile: threading.Thread | None = None  # Config.precompile_guard_classes

    def _new_graph_pool(self) -> GraphPool:
        c = self._config
        return GraphPool(c.max_cuda_graphs, c.max_cuda_graph_bytes, capture_after=c.cuda_graph_after)

    @property
    def training(self) -> bool:  # the original's mode is the truth (train()/eval() recurse into it)
        original = self.__dict__.get("_modules", {}).get("original")
        return bool(original.training) if original is not None else False

    @training.setter
    def training(self, mode: bool) -> None:
        original = self.__dict__.get("_modules", {}).get("original")
        if original is not None:
            original.training = mode

    @property
    def name(self) -> str:
        return type(self.original).__name__

    @property
    def cuda_graphs(self) -> bool:
        """Whether calls on CUDA replay CUDA graphs (``Config.cuda_graphs``)."""
        return self._config.cuda_graphs

    @cuda_graphs.setter
    def cuda_graphs(self, on: bool) -> None:
        """Turn CUDA graphs on or off for later calls (benchmarks compare both); turning them off
        drops the graphs kept, and their memory."""
        self._config = dataclasses.replace(self._config, cuda_graphs=bool(on))
        if not on:
            self._drop_graphs()
        for entry in self.__dict__.get("_method_entries", {}).values():  # compiled methods (blade/methods.py)
            if entry.compiled is not None:
                entry.compiled.cuda_graphs = on

    def _drop_graphs(self) -> None:
        """Forget every CUDA graph kept (their memory goes now, not at the next garbage collection)."""
        with self._graph_pool_lock:
            self._graph_pool = self._new_graph_pool()
            for v in self._variants:
                v.graphs.clear()

    # ---------------------------------------------------------------- compile
    def compile_first(self, args: tuple, kwargs: dict) -> None:
        """The compile ``blade.optimize`` does with the example inputs. A failure (the model
        cannot be captured, ...) makes the module run in eager PyTorch, with a one-line message,
        unless ``Config(fallback="strict")``."""
        args, kwargs = bind_call(self._forward_signature, args, kwargs, self._fill_defaults)
        tensors, _, signature = flatten_call(args, kwargs, self.original.training)
        with self._compile_lock:
            try:
                start = time.perf_counter()
                variant = self.compile_variant(args, kwargs)
                seconds = time.perf_counter() - start
                if seconds >= SLOW_STAGE_S:  # a long compile says that it ended and where the time went
                    print(f"[blade] {self.name}: compiled in {seconds:.1f} s "
                          f"({variant.program.report.stage_summary()})", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - the module still answers every call (eagerly)
                if self._config.fallback == "strict":
                    raise
                self._eager_signatures.append(signature)
                print(f"[blade] {self.name} runs in eager PyTorch: it could not be compiled for inputs "
                      f"{describe_inputs(tensors)} ({_one_line(e)}). Config(fallback=\"strict\") raises instead.",
                      file=sys.stderr, flush=True)
                return
        hooked = _hooked_modules(self.original)
        if hooked:
            note = (f"forward hooks on {', '.join(hooked[:6])}{' ...' if len(hooked) > 6 else ''}: what they do to "
                    "tensors is compiled in; their Python side effects (storing activations, counting, "
                    "printing) ran once, while the model was traced, and do not run on calls")
            print(f"[blade] {self.name}: {note}", file=sys.stderr, flush=True)
            if self._variants:
                self._variants[0].program.report.notes.append(note)
        if self._config.precompile_guard_classes > 0:
            from blade.speculate import precompile_neighbours

            self._precompile = threading.Thread(target=precompile_neighbours,
                                                args=(self, args, kwargs, signature.autocast),
                                                name=f"blade-precompile-{self.name}", daemon=True)
            self._precompile.start()

    def wait_precompiled(self, timeout: float | None = None) -> bool:
        """Wait for the background compiles of ``Config.precompile_guard_classes``; whether they
        are done (False only when ``timeout`` seconds passed first)."""
        thread = self._precompile
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _scalars_differ(self, signature: CallSignature) -> tuple[bool, bool]:
        """Whether a call no variant accepts should compile its int arguments as symbols
        (``Config.int_arguments="auto"``) and its float arguments as inputs
        (``Config.float_arguments="auto"``): it differs from a compiled variant in the values of
        such arguments only, and no such compile was tried yet that had to keep them constants."""
        ints = self._config.int_arguments == "auto" and not self._ints_stay_constant
        floats = self._config.float_arguments == "auto" and not self._floats_stay_constant
        if not (ints or floats):
            return False, False
        for v in self._variants:
            old = v.signature
            if (old.spec, old.leaves, old.tensors, old.training, old.autocast) != (
                    signature.spec, signature.leaves, signature.tensors, signature.training, signature.autocast):
                continue
            changed = [(a, b) for a, b in zip(signature.constants, old.constants) if a != b]
            # (a negative int is a constant: export takes int arguments as sizes)
            if changed and all((ints and takes_as_size(a[1]) and b[0] is int) or
                               (floats and takes_as_value(a[1]) and b[0] is float) for a, b in changed):
                return (any(b[0] is int for _, b in changed) or bool(old.sized),
                        any(b[0] is float for _, b in changed) or bool(old.valued))
        return False, False

    def compile_variant(self, args: tuple, kwargs: dict, share_only: bool = False, int_sizes: bool = False,
                        float_values: bool = False) -> Variant:
        """Compile one variant for the canonical call ``(args, kwargs)`` (see ``bind_call``).
        ``share_only``: keep it only if its program is an earlier variant's (else ``_NewCode``).
        ``int_sizes``: its int arguments are symbols (``Config.int_arguments="dynamic"``).
        ``float_values``: its float arguments are inputs (``Config.float_arguments="dynamic"``)."""
        tensors, _, signature = flatten_call(args, kwargs, self.original.training)
        valued = ()
        if float_values or (self._config.float_arguments == "dynamic" and not self._floats_stay_constant):
            valued = tuple(i for i, (kind, _) in enumerate(signature.constants) if kind is float)
        if valued:
            try:
                return self._compile_floats_as_inputs(args, kwargs, share_only, int_sizes, valued)
            except _NewCode:
                raise
            except Exception as e:  # noqa: BLE001 - floats the model cannot take as tensors: constants
                self._floats_stay_constant = True
                print(f"[blade] {self.name}: compiling its float arguments as inputs failed ({_one_line(e)}); "
                      "they stay constants (a variant per value)", file=sys.stderr, flush=True)
        return self._compile(args, kwargs, share_only, int_sizes, signature, tensors, (), None)

    def _compile_floats_as_inputs(self, args, kwargs, share_only: bool, int_sizes: bool, valued: tuple) -> Variant:
        """``compile_variant`` traced with a 0-dim tensor in each float argument's place (torch.export
        fixes floats), which then takes every float value."""
        tensors, _, signature = flatten_call(args, kwargs, self.original.training)
        device = tensors[0].device if tensors else torch.device("cpu")
        dtype = value_dtype(d for d, _ in signature.tensors)
        traced = pytree.tree_map(lambda v: torch.full((), v, dtype=dtype, device=device) if takes_as_value(v) else v,
                                 (args, kwargs))
        return self._compile(*traced, share_only, int_sizes, signature, tensors, valued, dtype)

    def _check_float_outputs(self, program, signature: CallSignature) -> None:
        """A program traced with tensors in place of float arguments returns a 0-dim tensor where
        the model returns a float computed from one (``return x, scale * 2``): refused (the
        floats stay constants) unless a variant of the same call made with the floats as constants
        returned the same kinds of outputs, tensors where this one does."""
        kinds = [kind for kind, _ in program.import_result.outputs]
        for v in self._variants:
            old = v.signature
            if (old.spec, old.leaves, old.tensors, old.training, old.autocast) == (
                    signature.spec, signature.leaves, signature.tensors, signature.training, signature.autocast):
                if [kind for kind, _ in v.program.import_result.outputs] != kinds or \
                        v.program.import_result.out_spec != program.import_result.out_spec:
                    raise CaptureError("with its float arguments as tensors the model returns other kinds of "
                                       "outputs (a float it computes from one becomes a tensor)")
                return
        out = next(n for n in program.ep.graph.nodes if n.op == "output")
        if any(isinstance(getattr(n, "meta", {}).get("val"), torch.Tensor) and n.meta["val"].dim() == 0
               for n in pytree.tree_leaves(out.args)):
            raise CaptureError("with its float arguments as tensors the model returns a 0-dim tensor, which may be "
                               "a float it computes from one: they stay constants")

    def _compile(self, args, kwargs, share_only: bool, int_sizes: bool, signature: CallSignature, tensors,
                 valued: tuple, dtype) -> Variant:
        label = f"{self.name}#{len(self._variants)}"
        config = dataclasses.replace(self._config, int_arguments="dynamic") if int_sizes else self._config
        device = tensors[0].device if tensors else torch.device("cpu")
        # The capture, and the import and passes that still read its fake tensors, run alone in
        # the process (torch.export is not thread-safe) and while no eager run of the module is
        # in flight (export swaps its parameters). The gate is taken first: an eager run may call
        # another optimized module that needs CAPTURE_LOCK to compile.
        with self._gate.compile(), CAPTURE_LOCK:
            program = compile_program(self.original, args, kwargs, config, self._allow_tracing, label)
            weights = _weight_resolver(self.original, program)
        ir = program.import_result
        if valued:
            self._check_float_outputs(program, signature)
        if valued and ir.size_inputs:  # the importer counted the non-tensor leaves without the floats
            others = [i for i in range(len(signature.constants)) if i not in valued]
            program.import_result = ir = dataclasses.replace(
                ir, size_inputs=tuple((position, others[k]) for position, k in ir.size_inputs))
        sized = tuple(index for _, index in ir.size_inputs)
        if sized or valued:
            signature = dataclasses.replace(signature, sized=sized, valued=valued)
        if int_sizes and not sized:  # export fixed every int (a loop count, a shape): later calls compile per value
            self._ints_stay_constant = True
        if ir.in_spec is not None and ir.in_spec != signature.spec:
            raise RuntimeError(f"internal error: the captured program takes {ir.in_spec}, "
                               f"the call was {signature.spec}")
        same_device = [v for v in self._variants if v.device == device]
        key = code_key(program.module) if same_device else None
        # Another guard class often compiles to the very same program (diffusers' upsampling asks
        # which of h/w grows more only to decide a .contiguous()): then the code is shared
        same = next((i for i, v in enumerate(self._variants) if v.device == device and v.code_key == key), None)
        if same is not None and isinstance(self._variants[same].executor, ProgramBackedExecutor):
            executor = self._variants[same].executor.twin_for(program, weights)
            program.report.notes.append(f"the program is variant {same}'s but for its guards: its compiled "
                                        "kernels serve this guard class too (nothing generated or compiled)")
        elif same is not None:
            executor = self._variants[same].executor.twin(program.module, weights)
            program.launch_stats = self._variants[same].program.launch_stats  # the launchers count there
            program.report.notes.append(f"the program is variant {same}'s but for its guards: its compiled "
                                        "code serves this guard class too (nothing generated or compiled)")
        elif share_only:
            raise _NewCode(Variant(program, ReferenceExecutor(program.module, weights), signature, _code_key=key,
                                   device=device))
        elif (kind := executor_kind(self._config, device, program.module)) == "program":
            executor = ProgramBackedExecutor(program, self.original, weights, device, self._torch_provider,
                                             self._config.kernel_cache_dir, self._config.check_shapes,
                                             self._config.prepare_weights, self._config.native_step_loop,
                                             self._config.bounds_check)
        elif kind == "kernels":
            launchers = build_kernels(program, self._config, device)
            executor = KernelExecutor(program.module, weights, launchers, check_shapes=self._config.check_shapes,
                                      conv_algorithm_search=self._config.conv_algorithm_search,
                                      convert_weights_in_place=self._config.convert_weights_in_place,
                                      prepared_weights=self._prepared_weights, prepared_casts=self._prepared_casts,
                                      prepare_weights=self._config.prepare_weights)
        else:
            executor = ReferenceExecutor(program.module, weights, check_shapes=self._config.check_shapes)
        variant = Variant(program, executor, signature, _code_key=key, device=device, value_dtype=dtype)
        self._variants.append(variant)
        if self._config.verbose:
            print(program.report.format(), file=sys.stderr, flush=True)
        return variant

    @property
    def variants(self) -> list[Variant]:
        return list(self._variants)

    @property
    def report(self):
        """The compile report of the first variant."""
        if not self._variants:
            raise RuntimeError(f"{self.name} was not compiled (it runs in eager PyTorch; the reason was "
                               "printed when blade.optimize ran)")
        return self._variants[0].program.report

    # ---------------------------------------------------------------- call
    def forward(self, *args, **kwargs):
        if self._gate.watch.version != self._structure_seen:
            self._structure_changed()
        try:
            tensors, signature = self._call_layouts.normalise(args, kwargs, self.original.training)
        except TypeError:
            return self._run_eager(args, kwargs)  # raises eager's own TypeError
        chosen, values, reasons = self._select(tensors, signature, self._variants)
        if chosen is None:
            cargs, ckwargs = bind_call(self._forward_signature, args, kwargs, self._fill_defaults)
            chosen, values = self._compile_for_call(cargs, ckwargs, tensors, signature, reasons)
            if chosen is None:
                return self._eager_after_compile(args, kwargs, tensors)
        tensors = chosen.inputs(tensors, signature)
        try:
            with module_call():  # what a shape's "first call" means to the library ops' tuning
                if self._use_graphs(chosen, tensors):
                    outs = self._run_graph(chosen, tensors, values)
                else:
                    outs = chosen.executor.run(tensors, values)
        except Exception as e:  # noqa: BLE001 - answered as eager answers (which may be the same error)
            return self._answer_after_failed_run(chosen, tensors, e, args, kwargs)
        ir = chosen.program.import_result
        if ir.mutations:
            outs = list(outs)
            self._write_back(ir.mutations, outs, tensors)
        flat_out = [outs[i] if kind == "tensor" else outs[i].item() if kind == "scalar" else i
                    for kind, i in ir.outputs]
        for i, device in ir.output_devices:  # where eager returns it (a CPU tensor of a CUDA model)
            flat_out[i] = flat_out[i].to(device)
        out = pytree.tree_unflatten(flat_out, ir.out_spec)
        return carry_state(args, kwargs, out) if chosen.takes_state_objects else out

    def _write_back(self, mutations: tuple, outs: list[torch.Tensor], inputs: list[torch.Tensor]) -> None:
        """Eager's in-place writes (``x.add_(1)`` on an input, ``self.count += 1`` on a buffer): the
        program computed the new values as extra results; they go into the caller's tensor and the
        module's buffer, as eager leaves them.

        A result that shares memory with a tensor written here (an output the program returns as a
        view of its input, such as ``x.unsqueeze(0) * 1`` once the multiply by one is folded) holds
        the values computed before the write, as eager's own result does: it is copied out first,
        so the write does not change it (``outs`` is updated in place)."""
        with torch.no_grad():
            dests = [(inputs[target] if kind == "input" else self.original.get_buffer(target), i)
                     for kind, target, i in mutations]
            written = {d.untyped_storage().data_ptr() for d, _ in dests if d.numel()}
            for j, t in enumerate(outs):
                if isinstance(t, torch.Tensor) and t.numel() and t.untyped_storage().data_ptr() in written:
                    outs[j] = t.clone()
            for dest, i in dests:
                dest.copy_(outs[i])

    @staticmethod
    def _select(tensors, signature: CallSignature, variants) -> tuple[Variant | None, dict | None, list[str]]:
        reasons = []
        for v in tuple(variants):  # a snapshot: another thread may append meanwhile
            values, why = v.accepts(tensors, signature)
            if values is not None:
                return v, values, []
            reasons.append(why)
        return None, None, reasons

    def _compile_for_call(self, args, kwargs, tensors, signature, reasons) -> tuple[Variant | None, dict | None]:
        """A variant for this call, compiled now (once per signature, whichever thread asks first),
        or ``(None, None)``: the call runs eagerly."""
        if any(signature == s for s in tuple(self._eager_signatures)):
            return None, None  # without waiting for a compile another thread may be running
        empty = any(t.numel() == 0 for t in tensors)  # a zero-size dimension: an empty batch
        if empty and self._empty_failed:
            return None, None
        with self._compile_lock:
            seen = len(reasons)
            chosen, values, more = self._select(tensors, signature, self._variants[seen:])
            if chosen is not None:  # compiled by another thread while this one waited
                return chosen, values
            if any(signature == s for s in self._eager_signatures):
                return None, None
            reasons = reasons + more
            int_sizes, float_values = self._scalars_differ(signature)
            twin = None if int_sizes or float_values else self._same_program_variant(args, kwargs, tensors, signature)
            if twin is not None:
                return twin
            shapes = [tuple(t.shape) for t in tensors]
            compiled = compiled_programs(self._variants)
            share_only = compiled >= self._config.max_variants and not empty  # an empty call's variant is free
            if share_only and (self._select(tensors, signature, self._beyond_limit)[0] is not None
                               or len(self._variants) + len(self._beyond_limit) >= 4 * self._config.max_variants):
                return self._refuse_beyond_limit(shapes, reasons)
            print(f"[blade] {'capturing' if share_only else 'compiling'} variant {len(self._variants)} of {self.name} "
                  f"for inputs {describe_inputs(tensors)}: {'; '.join(reasons) or 'first call'}"
                  + (f" (max_variants={self._config.max_variants} programs are compiled: it is kept only if its "
                     "program is one of them)" if share_only else "")
                  + ("; its int arguments are compiled as symbols, to serve every value" if int_sizes else "")
                  + ("; its float arguments are compiled as inputs, to serve every value" if float_values else ""),
                  file=sys.stderr, flush=True)
            start = time.perf_counter()
            try:
                try:
                    variant = self.compile_variant(args, kwargs, share_only=share_only, int_sizes=int_sizes,
                                                   float_values=float_values)
                except Exception as e:  # noqa: BLE001 - int symbols the model cannot take: constants again
                    if not int_sizes or isinstance(e, _NewCode):
                        raise
                    self._ints_stay_constant = True
                    print(f"[blade] {self.name}: compiling its int arguments as symbols failed ({_one_line(e)}); "
                          "they stay constants (a variant per value)", file=sys.stderr, flush=True)
                    variant = self.compile_variant(args, kwargs, share_only=share_only)
            except _NewCode as e:  # its guard class, remembered so the next such call runs eagerly at once
                self._beyond_limit.append(e.variant)
                return self._refuse_beyond_limit(shapes, reasons)
            except Exception as e:  # noqa: BLE001 - the call still gets a correct (eager) answer
                if self._config.fallback == "strict":
                    raise
                if empty:
                    self._empty_failed = True
                    print(f"[blade] {self.name}: compiling a variant for inputs {describe_inputs(tensors)} (a size "
                          f"of 0) failed ({_one_line(e)}); calls with empty tensors that no variant serves run in "
                          "eager PyTorch, other calls still compile", file=sys.stderr, flush=True)
                    return None, None
                self._eager_signatures.append(signature)
                self._failed_compiles[threading.get_ident()] = (
                    f"[blade] ERROR: compiling a variant of {self.name} for inputs {describe_inputs(tensors)} "
                    f"failed ({_one_line(e)}); this call and later ones with the same argument structure and "
                    "dtypes that no variant accepts run the original module in eager PyTorch")
                return None, None
            variant.empty_call = empty
            values, why = variant.accepts(tensors, signature)
            if values is None:
                self._eager_signatures.append(signature)
                print(f"[blade] INTERNAL ERROR: variant {len(self._variants) - 1} of {self.name} was compiled for "
                      f"inputs {describe_inputs(tensors)} but does not accept them ({why}). This call and later "
                      "ones with the same argument structure and dtypes that no variant accepts run the original "
                      "module in eager PyTorch. Please report this with the model and the shapes.",
                      file=sys.stderr, flush=True)
                return None, None
            shared = variant.executor.code is not variant.executor
            print(f"[blade] {self.name}: variant {len(self._variants) - 1} ready in "
                  f"{time.perf_counter() - start:.1f} s ({variant.program.report.stage_summary()})"
                  + ("; it shares the compiled code of an earlier variant" if shared else ""),
                  file=sys.stderr, flush=True)
            return variant, values

    def _structure_changed(self) -> None:
        """The user changed the module's submodules, parameters, buffers or hooks: the compiled
        code computes the old model, so every variant is dropped and calls compile again."""
        if self.original._modules.get("forward") is self or self.original.__dict__.get("forward") is self:
            raise TypeError(f"this optimized {self.name} was assigned to the model's own forward "
                            "(model.forward = blade.optimize(model, ...)): it would call itself. Use the optimized "
                            "module in the model's place instead: model = blade.optimize(model, ...), or "
                            "pipe.unet = blade.optimize(pipe.unet, ...)")
        with self._compile_lock:
            watch = self._gate.watch
            if watch.version == self._structure_seen:
                return  # another thread handled it
            if self._variants and self._snapshot is not None and self._snapshot.matches(self.original):
                # changed and changed back (fuse_lora + unload_lora): the compiled code still holds
                print(f"[blade] {self.name} changed ({watch.last_change}) but its structure is the compiled "
                      "one again: its compiled variants are kept", file=sys.stderr, flush=True)
                watch.wrap(self.original)
                self._structure_seen = watch.version
                return
            print(f"[blade] {self.name} changed since it was compiled ({watch.last_change}): "
                  "its compiled variants are dropped and the next call compiles again", file=sys.stderr, flush=True)
            self._drop_graphs()
            self._variants, self._beyond_limit, self._eager_signatures = [], [], []
            self._prepared_weights.clear()
            self._prepared_casts.clear()
            self._torch_provider = TorchProvider(self._config.conv_algorithm_search,
                                                 self._config.convert_weights_in_place, self._config.gemm_library,
                                                 self._config.conv_library, self._config.attention_library)
            self._said_max_variants = False
            watch.wrap(self.original)  # new submodules are watched too
            self._structure_seen = watch.version
            self._snapshot = StructureSnapshot(self.original)

    def _refuse_beyond_limit(self, shapes, reasons) -> tuple[None, None]:
        message = (f"no compiled variant of {self.name} accepts input shapes {shapes}: "
                   f"{'; '.join(reasons)[:1000]}. Raise Config.max_variants (now "
                   f"{self._config.max_variants}) to compile more.")
        if self._config.fallback == "strict":
            raise GuardError(message)
        # a correct answer, not a crash: eager PyTorch (said once per module, it can repeat)
        if not self._said_max_variants:
            self._said_max_variants = True
            print(f"[blade] {message} Until then such calls run in eager PyTorch.", file=sys.stderr, flush=True)
        return None, None

    def _same_program_variant(self, args, kwargs, tensors, signature) -> tuple[Variant, dict] | None:
        """A variant for a call that differs from a compiled one only in non-tensor arguments
        which do not change the program, e.g. ``return_dict=False`` (a tuple instead of an output
        class) or an argument passed that equals the default: the call is captured again (a
        capture only, no passes or kernels) and, when the captured program is the compiled one,
        that variant's code serves the call with the new input and output structure."""
        from blade.frontend.export import same_program
        from blade.pipeline import capture
        from blade.report import CompileReport

        for v in tuple(self._variants):
            if (v.signature.spec, v.signature.tensors, v.signature.training) != (
                    signature.spec, signature.tensors, signature.training):
                continue
            try:
                values = v.executor.bind(tensors)
            except ShapeError:
                continue
            if not all(v.guard_program.run_named(values)):
                continue
            try:
                with self._gate.compile(), CAPTURE_LOCK:
                    ep = capture(self.original, args, kwargs, self._config, self._allow_tracing,
                                 CompileReport(self.name, verbose=self._config.verbose))
            except Exception:  # noqa: BLE001 - the full compile that follows reports the failure
                return None
            if not same_program(ep, v.program.ep):
                return None
            ir = dataclasses.replace(v.program.import_result, in_spec=ep.call_spec.in_spec,
                                     out_spec=ep.call_spec.out_spec)
            twin = Variant(dataclasses.replace(v.program, ep=ep, import_result=ir), v.executor, signature)
            self._variants.append(twin)
            changed = ", ".join(f"{old!r} -> {new!r}" for (_, new), (_, old) in
                                zip(signature.constants, v.signature.constants) if (type(new), new) != (type(old), old))
            print(f"[blade] {self.name}: with non-tensor arguments changed ({changed}) the captured program is "
                  f"the one compiled as variant {self._variants.index(v)}; reusing its code",
                  file=sys.stderr, flush=True)
            return twin, values
        return None

    def _answer_after_failed_run(self, variant: Variant, tensors, error: Exception, args, kwargs):
        """A compiled program raised. Compiled programs have no side effects, so the call is run
        eagerly: where eager raises too (float64 into float32 weights...), the user gets eager's
        own error; where it does not, the failure was Blade's and is reported loudly.
        ``Config(fallback="strict")`` raises the compiled program's error instead."""
        if self._config.fallback == "strict":
            raise error
        try:
            result = self._run_eager(args, kwargs)
        except Exception:
            raise  # eager's error, as the original module would have raised it
        print(f"[blade] INTERNAL ERROR: variant {self._variants.index(variant)} of {self.name} failed on inputs "
              f"{describe_inputs(tensors)} ({_one_line(error)}); this call was answered by the original module "
              "in eager PyTorch. Please report this with the model and the shapes.", file=sys.stderr, flush=True)
        return result

    def _eager_after_compile(self, args: tuple, kwargs: dict, tensors: list[torch.Tensor]):
        """Eager's answer to a call no variant serves; where a compile for it just failed, that is
        said after eager answers, or, where eager raises too, the inputs are said to be ones the
        module itself refuses (a float32 input into float16 weights: not a Blade failure)."""
        failed = self._failed_compiles.pop(threading.get_ident(), None)
        if failed is None:
            return self._run_eager(args, kwargs)
        try:
            out = self._run_eager(args, kwargs)
        except Exception as e:
            print(f"[blade] {self.name}: inputs {describe_inputs(tensors)} fail in eager PyTorch too "
                  f"({_one_line(e)}); raised as eager raises it (no variant was compiled for "
                  "them; later calls like them run eagerly)", file=sys.stderr, flush=True)
            raise
        print(failed, file=sys.stderr, flush=True)
        return out

    def _run_eager(self, args: tuple, kwargs: dict):
        self.eager_calls += 1
        with self._gate.eager_run():
            return self.original(*args, **kwargs)

    # ---------------------------------------------------------------- CUDA graphs
    def _use_graphs(self, variant: Variant, tensors: list[torch.Tensor]) -> bool:
        return (self._config.cuda_graphs and not variant.graphs_failed
                and isinstance(variant.executor, (KernelExecutor, ProgramBackedExecutor))
                and not variant.uses_rng and not variant.executor.data_dependent
                and bool(tensors) and all(t.is_cuda for t in tensors)
                and not torch.cuda.is_current_stream_capturing())

    def _run_graph(self, variant: Variant, tensors: list[torch.Tensor], values: dict[str, int]) -> list[torch.Tensor]:
        """A CUDA graph per input-shape signature, by the module's graph pool (``runtime/graph_pool.py``):
        a shape's first call runs without one, a repeated shape is captured and replayed after,
        the pool is bounded in count and bytes. A graph reads and writes fixed buffers, so calls
        from several threads take turns."""
        shape_key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
        key = (id(variant), shape_key)
        with self._graph_pool_lock:
            pool = self._graph_pool
            entry = pool.get(key)
            capture = entry is None and pool.wants(key)
        if entry is None and not capture:
            return variant.executor.run(tensors, values)
        with variant.graph_lock:
            if entry is None:
                with self._graph_pool_lock:
                    entry = pool.get(key)  # another thread may have captured it meanwhile
            if entry is None:
                entry, nbytes = self._capture_or_report(variant, tensors, values)
                if entry is None:
                    return variant.executor.run(tensors, values)
                entry.owner, entry.key = weakref.ref(variant), shape_key
                with self._graph_pool_lock:
                    if pool is not self._graph_pool:  # graphs switched off or variants dropped meanwhile
                        outs = self._replay(variant, entry, tensors)  # used once, not kept
                        return outs if outs is not None else variant.executor.run(tensors, values)
                    evicted = pool.add(key, entry, nbytes)
                    for old in evicted:  # first: an evicted graph may have this entry's key
                        owner = old.owner()
                        if owner is not None:
                            owner.graphs.pop(old.key, None)
                    kept = not any(old is entry for old in evicted)  # else over the byte bound alone
                    if kept:
                        variant.graphs[shape_key] = entry
                if not kept:
                    return variant.executor.run(tensors, values)
            outs = self._replay(variant, entry, tensors)
        if outs is None:
            print(f"[blade] {self.name}: a weight's storage was replaced since its CUDA graphs were captured "
                  "(.data assigned, .half(), .to()...): the graphs are dropped and captured again",
                  file=sys.stderr, flush=True)
            self._drop_graphs()
            return variant.executor.run(tensors, values)
        return outs

    def _replay(self, variant: Variant, entry: _Graph, tensors: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """The graph's outputs for ``tensors``, or None when a weight's storage moved since the
        capture (the caller drops the module's graphs, outside its locks, and runs the program)."""
        if entry.weights_moved():
            return None
        for static, t in zip(entry.inputs, tensors):
            if static is not t and not is_size_carrier(static):
                static.copy_(t)
        variant.executor.refresh_prepared_weights()
        entry.graph.replay()
        return [o.clone() for o in entry.outputs]

    def _capture_or_report(self, variant: Variant, tensors, values) -> tuple[_Graph | None, int]:
        """``_capture`` one capture at a time in the process (``torch.cuda.graph`` shares one capture
        stream and empties the allocator's cache on entry, which asserts while another capture
        runs); a failure is reported once, cleaned up, and the variant runs without graphs."""
        device = tensors[0].device
        stream = torch.cuda.current_stream(device)
        with CUDA_CAPTURE_LOCK:
            try:
                return self._capture(variant, tensors, values)
            except Exception as e:  # noqa: BLE001 - e.g. an eager fallback op that synchronises
                torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
                variant.graphs_failed = True
                end_generator_capture(device)
                print(f"[blade] CUDA graph capture failed ({type(e).__name__}: {e}); running without graphs",
                      file=sys.stderr, flush=True)
                return None, 0

    def _capture(self, variant: Variant, tensors: list[torch.Tensor], values: dict[str, int]) -> tuple[_Graph, int]:
        """Capture the program at these inputs; returns the graph and the device bytes it holds
        (its static inputs plus what the device reserved during the capture: the graph's private
        memory pool; other threads' allocations meanwhile count too, an overestimate)."""
        device = tensors[0].device
        with torch.cuda.device(device):
            static = [t if is_size_carrier(t) else t.clone() for t in tensors]  # a carrier is its size only
            # warm-up on the caller's stream, ordered with every other run there (a side stream
            # would run beside other threads' calls, which share GroupNorm's ticket counter):
            # library handles, prepared weights, workspaces, one-time work that may synchronise
            # (cuDNN's algorithm search, at a shape's second call: runtime/host_provider.py's _SecondCall)
            with no_recording():  # a C++ step loop recorded here would rarely run, and costs a peak
                variant.executor.run(static, values)
                # Blade's own kernels and library calls never synchronise; eager fallback ops may
                if variant.program.report.unsupported and synchronizes(lambda: variant.executor.run(static, values)):
                    # never start a capture that will fail: a failed capture leaves the CUDA generator
                    # in capture mode, and every later random op of the process fails
                    raise RuntimeError("the program synchronizes with the host (an eager op such as nonzero, "
                                       "item or a linear-algebra check), which a CUDA graph cannot contain")
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()  # as torch.cuda.graph does on entry: measured from here
            reserved = torch.cuda.memory_reserved(device)
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA calls other threads make meanwhile (their own calls of this module,
            # allocations) neither break this capture nor fail themselves
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = variant.executor.run(static, values)
            nbytes = max(0, torch.cuda.memory_reserved(device) - reserved) + sum(t.nbytes for t in static)
        weights = [(w, w.data_ptr()) for w in _program_weights(variant)]
        return _Graph(graph, static, outputs, weights=weights), nbytes

    # ---------------------------------------------------------------- copies
    def __deepcopy__(self, memo: dict) -> "BladeModule":
        """A deep copy: the original module deep-copied, optimized with the same configuration and
        compiled again on its first call (the compiled variants read the weights of the module they
        were compiled from, so they are not shared: the copy and this module never see each
        other's weight updates)."""
        copied = BladeModule(copy.deepcopy(self.original, memo), self._config, self._allow_tracing)
        memo[id(self)] = copied
        return copied

    def __reduce_ex__(self, protocol):
        raise TypeError(f"a Blade-optimized {self.name} is not pickled (torch.save(module), pickle): save its "
                        "compiled form with blade.save(module, path) and serve it with blade.load(path, model), "
                        "or save model.state_dict() and optimize the model again")

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = super().__getattr__("original")
            return method_entry(self, name, getattr(original, name))


def _hooked_modules(module: torch.nn.Module) -> list[str]:
    """Names of the submodules with forward (pre-)hooks, and "every module" where a global one is
    registered (``register_module_forward_hook``)."""
    import torch.nn.modules.module as nn_module

    names = [name or "the module itself" for name, m in module.named_modules()
             if m._forward_hooks or m._forward_pre_hooks]
    if getattr(nn_module, "_global_forward_hooks", None) or getattr(nn_module, "_global_forward_pre_hooks", None):
        names.append("every module (a global hook)")
    return names


def _one_line(e: BaseException) -> str:
    """An exception as one line of at most 600 characters."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:600]}{'...' if len(text) > 600 else ''}"
