"""A saved compiled module, loaded without the compiler: ``load_module(path, module)``.

``blade.artifact.save`` writes a directory holding one Program per compiled variant
(``variant-<i>/``, see ``runtime/program.py``) and a manifest (``blade-module.json``) saying how a
call reaches a variant and how the outputs are rebuilt: each variant's call signature (the
pytree structure of the canonical call, the tensors' dtypes, the non-tensor arguments, the
training flag) and its output structure (a JSON pytree spec plus, per output leaf, a Program
output index or a constant). Weights are not in the artifact: the loaded module reads them from
``module`` (the user's, by name, never copied), so in-place updates are seen.

The manifest's ``libraries`` (``LIBRARY_SETTINGS``: who computes GEMMs, convolutions and
attention, whether convolution algorithms are timed) say how the saved module computed its library
calls: the loaded module's ``TorchProvider`` is made with them (an artifact without them, written
before they were saved, gets the process-wide default provider; an unknown setting is refused).

``ProgramModule.forward`` binds and flattens the call as ``BladeModule`` does
(``runtime/call_signature.py``), takes the first variant with the same signature whose Program
accepts the sizes (its checks and guards), runs it with ``ProgramExecutor`` and rebuilds the
output. A call no variant accepts is refused, naming each variant's reason: a loaded artifact
never compiles. Like the executor, this file imports no compiler module.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.utils._pytree as pytree

from blade.runtime.call_signature import (CallLayouts, CallSignature, forward_signature, takes_as_size,
                                         value_plan, with_scalar_inputs)
from blade.runtime.program import Program, ProgramFormatError, read_versioned_json
from blade.runtime.state_objects import carry_state, register_model_pytrees
from blade.runtime.program_executor import PROVIDERS, ProgramExecutor, ProgramShapeError, module_weights

MANIFEST = "blade-module.json"
MANIFEST_FORMAT = 4  # 2: signatures say where the tensors are ("leaves"), ints taken as sizes; 3: floats as values;
#                    4: outputs eager returns on another device ("output_devices"), item() outputs
#: the ``Config`` fields a manifest's ``libraries`` holds (``TorchProvider``'s arguments of those names)
LIBRARY_SETTINGS = ("gemm_library", "conv_library", "attention_library", "conv_algorithm_search")


def library_provider(libraries: dict[str, Any] | None, path: str | os.PathLike = "the artifact"):
    """The torch provider of a loaded module: made with the manifest's ``libraries`` settings,
    or the process-wide default where it has none. A setting this runtime does not know is
    refused with a message naming it."""
    from blade.runtime.host_provider import TorchProvider

    if libraries is None:
        return PROVIDERS["torch"]
    unknown = sorted(set(libraries) - set(LIBRARY_SETTINGS))
    if unknown:
        raise ProgramFormatError(f"{path}: library settings {unknown} are not known to this Blade runtime "
                                 f"(it knows {list(LIBRARY_SETTINGS)})")
    try:
        return TorchProvider(**libraries)
    except (TypeError, ValueError) as e:
        raise ProgramFormatError(f"{path}: library settings {libraries}: {e}") from e


def signature_key(sig: CallSignature, sized: tuple = (), valued: tuple = ()) -> dict[str, Any]:
    """The device-independent, JSON form of a call signature (an artifact serves any device); the
    constants at the ``sized`` indices (ints taken as sizes) are written as ``["int", null]``, the
    floats at the ``valued`` indices (taken as values) as ``["float", null]``."""
    constants = []
    for i, (kind, value) in enumerate(sig.constants):
        if i in sized:
            constants.append(["int", None])
            continue
        if i in valued and kind is float:
            constants.append(["float", None])
            continue
        if not isinstance(value, (type(None), bool, int, float, str)):
            raise ProgramFormatError(f"a non-tensor argument {value!r} ({kind.__name__}) cannot be saved in an "
                                     "artifact (only None, bool, int, float and str can)")
        constants.append([kind.__name__, value])
    key = {"spec": pytree.treespec_dumps(sig.spec), "dtypes": [str(d).removeprefix("torch.") for d, _ in sig.tensors],
           "constants": constants, "training": sig.training, "leaves": sig.leaves}
    if sig.autocast:  # only where on: artifacts saved before autocast was recorded keep their keys
        key["autocast"] = [[device, str(dtype).removeprefix("torch.")] for device, dtype in sig.autocast]
    return key


class _Variant:
    def __init__(self, entry: dict[str, Any], program: Program, module: torch.nn.Module, provider=None):
        self.key = entry["signature"]
        #: int arguments taken as sizes: their indices among the constants, and where their size
        #: carriers go among the program's inputs (``call_signature.with_size_carriers``)
        self.sized = tuple(entry.get("sized", ()))
        self.size_inputs = tuple(tuple(p) for p in entry.get("size_inputs", ()))
        #: float arguments taken as values: their indices among the constants, and their dtype
        self.valued = tuple(entry.get("valued", ()))
        self.value_dtype = getattr(torch, entry["value_dtype"]) if "value_dtype" in entry else None
        self.state_in_place = bool(entry.get("state_in_place", False))  # runtime/state_objects.py
        self.outputs = entry["outputs"]
        #: flat outputs eager returns on another device than the program's: (index, device) each
        self.output_devices = tuple((i, torch.device(d)) for i, d in entry.get("output_devices", ()))
        self.out_spec = pytree.treespec_loads(entry["out_spec"])
        self.program = program
        providers = None if provider is None else {**PROVIDERS, "torch": provider}
        self.executor = ProgramExecutor(program, module_weights(program, module), native_loop=True,
                                        providers=providers)


class ProgramModule(torch.nn.Module):
    """The drop-in module of a loaded artifact (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, variants: list[_Variant]):
        super().__init__()
        object.__setattr__(self, "original", module)  # not a submodule: its weights stay the user's
        self.variants = variants
        self._forward_signature = forward_signature(module)
        self._call_layouts = CallLayouts(self._forward_signature)

    @property
    def training(self) -> bool:
        return self.original.training

    @training.setter
    def training(self, mode: bool) -> None:
        pass  # the original's mode is the truth; nn.Module.__init__ sets this once

    def forward(self, *args, **kwargs):
        tensors, signature = self._call_layouts.normalise(args, kwargs, self.original.training)
        keys = {((), ()): signature_key(signature)}
        reasons = []
        for i, v in enumerate(self.variants):
            key = keys.get((v.sized, v.valued))
            if key is None:
                key = keys[v.sized, v.valued] = signature_key(signature, v.sized, v.valued)
            if v.key != key:
                reasons.append(f"variant {i}: call signature {key} differs from the saved {v.key}")
                continue
            negative = [signature.constants[j][1] for j in v.sized if not takes_as_size(signature.constants[j][1])]
            if negative:
                reasons.append(f"variant {i}: int arguments {negative} are not ints in [0, 2**62), which it takes "
                               "as sizes")
                continue
            inputs = with_scalar_inputs(tensors, signature.constants, value_plan(signature.leaves, v.valued),
                                        v.value_dtype, v.size_inputs, tensors[0].device if tensors else torch.device("cpu"))
            try:
                outs = v.executor.run(inputs)
            except ProgramShapeError as e:  # raised before any step runs
                reasons.append(f"variant {i}: {e}")
                continue
            flat = [outs[x] if kind == "tensor" else outs[x].item() if kind == "scalar" else x
                    for kind, x in v.outputs]
            for j, device in v.output_devices:
                flat[j] = flat[j].to(device)
            out = pytree.tree_unflatten(flat, v.out_spec)
            return carry_state(args, kwargs, out) if v.state_in_place else out
        raise ProgramShapeError(f"no saved variant of {type(self.original).__name__} accepts this call (a loaded "
                                "artifact never compiles; save the module after calling it at this shape class): "
                                + " | ".join(reasons))


def load_module(path: str | os.PathLike, module: torch.nn.Module,
                expect: dict[str, Any] | None = None) -> ProgramModule:
    """Load an artifact written by ``blade.artifact.save``; ``module`` provides the weights."""
    register_model_pytrees()  # the saved call structures may name a DynamicCache
    manifest = read_versioned_json(os.path.join(path, MANIFEST), "saved Blade module", MANIFEST_FORMAT)
    if manifest.get("module") != type(module).__name__:
        raise ProgramFormatError(f"{path} was saved from a {manifest.get('module')}, not a {type(module).__name__}")
    provider = library_provider(manifest.get("libraries"), path)  # one per loaded module, as BladeModule's
    variants = [_Variant(e, Program.load(os.path.join(path, e["dir"]), expect=expect), module, provider)
                for e in manifest["variants"]]
    return ProgramModule(module, variants)
