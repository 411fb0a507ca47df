"""Saving an optimized module as an artifact, and loading it back without the compiler.

    blade.artifact.save(opt, "unet.blade")              # every compiled variant, as Programs
    m = blade.artifact.load("unet.blade", unet)          # weights: the user's module, by name

``save`` lowers each compiled variant of a ``BladeModule`` to a ``Program``
(``blade.lower_program``) and writes them with a manifest (``runtime/program_module.py`` holds
the format and the loader). No pickle: JSON and content-hashed blobs. ``load`` imports no
compiler module (this file imports the compiler only inside ``save``), so a serving process
needs neither xDSL nor Triton's compiler; its versions are checked against the artifact's.

On a GPU a loaded module launches the cubins ``save(..., target=("cuda", 90, 32))`` stored, through
the C++ runtime's driver launcher (no Triton compile); on a CPU it runs the kernels' source under
``TRITON_INTERPRET=1``. Its library calls are computed as the saved module's ``Config`` chose
(``gemm_library``, ``conv_library``, ``attention_library``, ``conv_algorithm_search``: the
manifest's ``libraries``). ``BladeModule`` runs Programs only with ``Config(executor="program")``
(``compiler/executors/program_backed.py``); by default it runs the IR executors.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch.utils._pytree as pytree

from blade.runtime.program_module import (LIBRARY_SETTINGS, MANIFEST, MANIFEST_FORMAT, ProgramModule, load_module,
                                         signature_key)


def save(module, path: str | os.PathLike, target: tuple[str, int, int] | None = None) -> list[str]:
    """Write every compiled variant of ``module`` (a ``BladeModule``) to the directory ``path``;
    returns the Programs' content hashes. ``target`` (``("cuda", 90, 32)``): also store every
    kernel variant's cubin for that GPU (compiled here, with or without a GPU)."""
    from blade.lower_program import lower_program

    variants = getattr(module, "variants", None)
    if not variants:
        raise ValueError(f"{type(module).__name__} has no compiled variant to save (call blade.optimize, and "
                         "call the module once per shape class it should serve)")
    os.makedirs(path, exist_ok=True)
    entries: list[dict[str, Any]] = []
    hashes = []
    for i, v in enumerate(variants):
        ir = v.program.import_result
        if ir.mutations:
            raise ValueError(f"variant {i} writes its inputs or buffers in place "
                             f"({', '.join(str(t) for _, t, _ in ir.mutations)}); saving such a module is not "
                             "supported yet (blade.load would not write them back)")
        for kind, value in ir.outputs:
            if kind != "tensor" and not isinstance(value, (type(None), bool, int, float, str)):
                raise ValueError(f"output constant {value!r} of variant {i} cannot be saved (not a JSON value)")
        d = f"variant-{i}"
        config = module.__dict__.get("_config")  # the BladeModule's own (never the wrapped module's)
        program = lower_program(v.program, target=target, cache_dir=config.kernel_cache_dir if config else None,
                                bounds_check=bool(config and config.bounds_check))
        hashes.append(program.save(os.path.join(path, d)))
        entry = {"dir": d, "signature": signature_key(v.signature, v.signature.sized, v.signature.valued),
                 "outputs": [[kind, value] for kind, value in ir.outputs],
                 "out_spec": pytree.treespec_dumps(ir.out_spec)}
        if ir.output_devices:  # outputs eager returns on another device (runtime/program_module.py)
            entry["output_devices"] = [list(p) for p in ir.output_devices]
        if v.takes_state_objects:  # its calls update the caller's cache object, as eager does
            entry["state_in_place"] = True
        if v.signature.sized:
            entry["sized"], entry["size_inputs"] = list(v.signature.sized), [list(p) for p in v.size_inputs]
        if v.signature.valued:
            entry["valued"], entry["value_dtype"] = list(v.signature.valued), str(v.value_dtype).removeprefix("torch.")
        entries.append(entry)
    manifest = {"format": MANIFEST_FORMAT, "module": type(module.original).__name__, "variants": entries}
    if config is not None:  # who computes the library calls, as the saved module chose (Config)
        manifest["libraries"] = {k: getattr(config, k) for k in LIBRARY_SETTINGS}
    tmp = os.path.join(path, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(path, MANIFEST))
    return hashes


def load(path: str | os.PathLike, module, expect: dict[str, Any] | None = None) -> ProgramModule:
    """The saved module at ``path``, reading its weights from ``module`` (see the module docstring)."""
    return load_module(path, module, expect=expect)
