"""Launching one generated kernel of a Program (``runtime/program_executor.py`` binds a launch
step through it): the argument packing follows the entry point's recorded signature, the variant and
grid come from the step's table, row addressing from the actual strides. On CUDA the variant's cubin
goes through the C++ runtime's driver launcher (``runtime/cpp/cuda_driver.h``), one launch from
Python or, recorded with ``native_spec``, from the C++ step list (``runtime/native_loop.py``); on a
CPU the kernel source runs under Triton's interpreter (``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from blade.runtime import shape_eval
from blade.runtime.cuda_stream import launch_stream
from blade.runtime.program import KernelRole, Program
from blade.runtime.program_errors import ProgramRunError
from blade.runtime.strides import collapsed_stride as _collapsed_stride, element_span, table_args


class KernelRunner:
    """Launches one generated kernel of a Program from its data: the argument packing follows the
    entry point's recorded signature, the variant and grid come from the step's table."""

    def __init__(self, key: str, program: Program):
        self.key = key
        self.data = program.kernels[key]
        self.source = program.blobs[self.data["source"]].decode()
        self._blobs = program.blobs
        self._module = None
        self._counters: dict[torch.device, torch.Tensor] = {}
        self._retired: list[torch.Tensor] = []  # outgrown counters (see _counter)
        self._cuda: dict[int, tuple[Any, str, list[str]]] = {}  # variant -> (native kernel, type codes, arg names)

    def bind(self, step, slots: list[int]) -> Callable[[list], None]:
        """The launch(es) of ``step`` at these sizes as a function of the call's values. What the
        input strides decide (row addressing, copies of inputs whose rows do not collapse) is
        cached per stride signature; the variant row per stride signature and alignment."""
        a = step.attrs
        space = tuple(slots[d] for d in a["space"])
        m, k = slots[a["M"]], slots[a["K"]]
        if m == 0 or k == 0:
            return lambda env: None  # empty result: nothing to launch
        base: dict[str, Any] = {"M": m, "K": k}
        if "P" in a:
            base["P"] = slots[a["P"]]
        ins_idx, outs_idx, scratch_idx = step.inputs, step.outputs, a.get("scratch", [])
        by_strides: dict[tuple, tuple[list[bool], dict[str, Any], bool]] = {}
        rows: dict[tuple, list[tuple[int, tuple, str, dict]]] = {}
        cuda_fast: dict[tuple, tuple] = {}

        def resolve(ins, outs):
            """(copies, named arguments, launch plan) of these tensors: cached per stride signature
            (addressing) and alignment (variant row)."""
            skey = tuple(t.stride() for t in ins)
            hit = by_strides.get(skey)
            if hit is None:
                tensors, address = self._address(ins, space)
                copies = [t is not x for t, x in zip(tensors, ins)]
                strides_aligned = k % 16 == 0 and all(v % 16 == 0 for n, v in address.items()
                                                      if n.startswith(("s", "rs")))
                named = base | address
                if self.data.get("bounds_check"):  # the element span of every tensor it addresses
                    named |= {f"n{i}": element_span(t) for i, t in enumerate(tensors)}
                    named |= {f"nout{j}": o.numel() for j, o in enumerate(outs)}
                hit = by_strides[skey] = (copies, named, strides_aligned)
            copies, named, strides_aligned = hit
            tensors = [t.contiguous() if c else t for t, c in zip(ins, copies)]
            aligned = strides_aligned and all(t.data_ptr() % 16 == 0 for t in tensors) and \
                all(t.data_ptr() % 16 == 0 for t in outs)
            plan = rows.get((skey, aligned))
            if plan is None:
                plan = rows[(skey, aligned)] = self._launch_plan(step, slots, aligned, k, space)
            return skey, aligned, copies, tensors, named, plan

        def launch(env):
            ins = [env[i] for i in ins_idx]
            outs = [env[o] for o in outs_idx]
            skey, aligned, copies, tensors, named, plan = resolve(ins, outs)
            ctx = env[-1]
            if ctx is not None and len(plan) == 1 and plan[0][2] == "one":  # CUDA: one cubin launch
                fast = cuda_fast.get((skey, aligned))
                if fast is None:
                    fast = cuda_fast[(skey, aligned)] = self._cuda_recipe(plan[0][0], plan[0][1], named,
                                                                          len(tensors))
                kernel, grid3, codes, recipe = fast
                bufs = tensors + outs
                kernel.launch(grid3, ctx[0], codes, [bufs[i].data_ptr() if i >= 0 else v for i, v in recipe], ctx[1])
                return
            values = {f"in{i}": t for i, t in enumerate(tensors)} | {f"out{j}": o for j, o in enumerate(outs)}
            extra = [env[v] for v in scratch_idx]
            for variant, grid, kind, gn in plan:
                if kind == "stats":
                    partial, stats = extra
                    counter = self._counter(partial.device, gn["counters"])
                    self._launch(variant, grid, values | named | {
                        "partial": partial, "stats": stats, "counter": counter, "nchunks": gn["nchunks"],
                        "rows_per_chunk": gn["rows_per_chunk"], "eps": self.data["eps"]},
                        tensors + [partial, stats, counter])
                elif kind == "apply":
                    self._launch(variant, grid, values | named | {"stats": extra[1]}, tensors + outs + [extra[1]])
                else:
                    self._launch(variant, grid, values | named, tensors + outs)

        def native_spec(env, with_kernel: bool = True):
            """This launch at the tensors of ``env`` as cubin launches for the C++ step loop
            (``runtime/native_loop.py``): a list of (kernel, 3-d grid, type codes, per argument
            ``(value, None)`` for the pointer of a Program value, ``(-1, scalar)``, or ``(-2,
            getter)`` for the pointer of the executor's GroupNorm tickets, read per call), one per
            launch (GroupNorm's two-launch schedule has two); None where an input must be copied
            to make its rows collapse. ``with_kernel=False`` leaves the kernels out (None): no
            cubin or CUDA needed."""
            ins = [env[i] for i in ins_idx]
            outs = [env[o] for o in outs_idx]
            _, _, copies, tensors, named, plan = resolve(ins, outs)
            if any(copies):
                return None
            where: dict[str, tuple[int, Any]] = {f"in{i}": (v, None) for i, v in enumerate(ins_idx)}
            where |= {f"out{j}": (v, None) for j, v in enumerate(outs_idx)}
            where |= {n: (-1, x) for n, x in named.items() if not isinstance(x, torch.Tensor)}
            specs = []
            for variant, grid, kind, gn in plan:
                args = dict(where)
                if kind in ("stats", "apply"):
                    args["stats"] = (scratch_idx[1], None)
                if kind == "stats":
                    n = gn["counters"]
                    device = ins[0].device
                    self._counter(device, n)  # made now (not inside a capture)
                    args |= {"partial": (scratch_idx[0], None), "counter": (-2, lambda: self._counter(device, n)),
                             "nchunks": (-1, gn["nchunks"]), "rows_per_chunk": (-1, gn["rows_per_chunk"]),
                             "eps": (-1, self.data["eps"])}
                codes, names = self._signature(variant)
                missing = [n for n in names if n not in args]
                if missing:
                    raise ProgramRunError(f"kernel {self.data['name']}: no value for launch arguments {missing}")
                kernel = self._cuda_entry(variant)[0] if with_kernel else None
                specs.append((kernel, tuple(grid) + (1,) * (3 - len(grid)), codes, [args[n] for n in names]))
            return specs

        launch.native_spec = native_spec
        launch.resolve = resolve  # what the Python launch computes from the tensors (tests compare)
        return launch

    def _cuda_recipe(self, index: int, grid, named: dict[str, Any], n_inputs: int):
        """(native kernel, 3-d grid, type codes, argument recipe) of a single launch (``_recipe``)."""
        kernel, codes, names = self._cuda_entry(index)
        return kernel, tuple(grid) + (1,) * (3 - len(grid)), codes, self._recipe(names, named, n_inputs)

    def _recipe(self, names: list[str], named: dict[str, Any], n_inputs: int) -> list[tuple[int, Any]]:
        """Per launch argument ``(i, None)`` for the pointer of tensor ``i`` (inputs, then outputs)
        or ``(-1, value)``."""
        recipe = []
        for n in names:
            if n.startswith("in") and n[2:].isdigit():
                recipe.append((int(n[2:]), None))
            elif n.startswith("out") and n[3:].isdigit():
                recipe.append((n_inputs + int(n[3:]), None))
            elif n in named and not isinstance(named[n], torch.Tensor):
                recipe.append((-1, named[n]))
            else:
                raise ProgramRunError(f"kernel {self.data['name']}: no value for launch argument {n!r}")
        return recipe

    def _launch_plan(self, step, slots, aligned: bool, k: int, space) -> list[tuple[int, tuple, str, dict]]:
        """(variant, grid, kind, GroupNorm sizes) of each launch: one, or GroupNorm's statistics
        then apply."""
        row = self._row(step.table, slots, aligned, k, space)
        if row.get("schedule") == "two_launch":  # GroupNorm statistics, then normalise + epilogue
            srow = self._row(row["stats"], slots, aligned, k, space, role=KernelRole.GN_STATS.value)
            arow = self._row(row["apply"], slots, aligned, k, space, role=KernelRole.GN_APPLY.value)
            gn = {n: slots[srow[n]] for n in ("counters", "nchunks", "rows_per_chunk")}
            return [(srow["variant"], tuple(slots[g] for g in srow["grid"]), "stats", gn),
                    (arow["variant"], tuple(slots[g] for g in arow["grid"]), "apply", gn)]
        return [(row["variant"], tuple(slots[g] for g in row["grid"]), "one", {})]

    def _row(self, table, slots, aligned: bool, k: int, space, role: str | None = None) -> dict[str, Any]:
        """The first row of a variant table whose predicate holds and whose alignment is met (and,
        when given, whose variant has ``role``)."""
        for r in table:
            if (r["when"] is None or slots[r["when"]]) and (aligned or not r["aligned"]):
                if role is not None and self.data["variants"][r["variant"]]["role"] != role:
                    raise ProgramRunError(f"kernel {self.data['name']}: a {role} row names a "
                                          f"{self.data['variants'][r['variant']]['role']} variant (malformed Program)")
                return r
        raise ProgramRunError(f"kernel {self.data['name']} ({self.data['label']}): no variant in its table fits "
                              f"K={k}, space {space}, aligned={aligned}")

    def _counter(self, device: torch.device, n: int) -> torch.Tensor:
        """Per-(image, group block) tickets of the GroupNorm statistics launch: zero between calls
        (the last program of each resets its ticket), so they persist with the executor."""
        c = self._counters.get(device)
        if c is None or c.numel() < n:
            if c is not None:  # a CUDA graph captured earlier still replays with the old buffer's
                self._retired.append(c)  # address: it must outlive every such graph, so it is kept
            c = self._counters[device] = torch.zeros(max(n, 64), dtype=torch.int32, device=device)
        return c

    def _launch(self, index: int, grid, named, tensors) -> None:
        variant = self.data["variants"][index]
        if any(t.is_cuda for t in tensors):
            self._launch_cuda(index, grid, named, tensors[0].device)
            return
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise ProgramRunError(f"kernel {self.data['name']}: generated kernels run on the CPU only under Triton's "
                                  "interpreter; start the process with TRITON_INTERPRET=1")
        fn = getattr(self._load(), variant["entry"])
        plain = [named[n] for n, ty in variant["signature"] if ty != "constexpr"]
        consts = {n: variant["constexprs"][n] for n, ty in variant["signature"] if ty == "constexpr"}
        with interpreter_asserts() if self.data.get("bounds_check") else contextlib.nullcontext():
            fn[grid](*plain, **consts)

    def _launch_cuda(self, index: int, grid, named, device: torch.device) -> None:
        """The variant's cubin through the C++ runtime's driver launcher (``runtime/cpp/cuda_driver.h``)
        on the current stream: no Triton, no compile."""
        kernel, codes, names = self._cuda_entry(index)
        args = [named[n].data_ptr() if isinstance(named[n], torch.Tensor) else named[n] for n in names]
        g = tuple(grid) + (1,) * (3 - len(grid))
        stream, index = launch_stream(device)
        kernel.launch(g, stream, codes, args, index)

    def _cuda_entry(self, index: int):
        """(native kernel, type codes, argument names) of a variant, made once."""
        entry = self._cuda.get(index)
        if entry is None:
            entry = self._cuda[index] = self._cuda_kernel(index)
        return entry

    def _cuda_kernel(self, index: int):
        name = self.data["name"]
        native = shape_eval.load_native()
        if not native or not hasattr(native, "CudaKernel"):
            raise ProgramRunError(f"kernel {name}: launching cubins needs Blade's C++ runtime "
                                  "(runtime/_native*.so), which is not built here: see the README's build step")
        ok, why = native.cuda_available()
        if not ok:
            raise ProgramRunError(f"kernel {name}: {why}")
        cubin = (self.data.get("cubins") or {}).get(str(index))
        if cubin is None:
            raise ProgramRunError(f"kernel {name}: the Program holds no cubin for variant {index}; save it with "
                                  "blade.save(..., target=('cuda', <sm>, 32)) for this GPU")
        if cubin.get("global_scratch", 0) or cubin.get("profile_scratch", 0):
            raise ProgramRunError(f"kernel {name}: variant {index} needs Triton scratch memory, which the "
                                  "driver launcher does not provide")
        codes, names = self._signature(index)
        return native.CudaKernel(self._blobs[cubin["blob"]], cubin["entry"], cubin["shared"], cubin["num_warps"]), \
            codes, names

    def _signature(self, index: int) -> tuple[str, list[str]]:
        """(driver type codes, names) of a variant's non-constexpr parameters."""
        signature = self.data["variants"][index]["signature"]
        return ("".join(type_code(self.data["name"], ty) for _, ty in signature if ty != "constexpr"),
                [n for n, ty in signature if ty != "constexpr"])

    def _load(self):
        if self._module is None:  # triton.jit reads the source back from the file
            folder = os.path.join(tempfile.gettempdir(), f"blade-program-kernels-{os.getuid()}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"k_{self.key}.py")
            if not os.path.exists(path):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(self.source)
                os.replace(tmp, path)
            spec = importlib.util.spec_from_file_location(f"blade_program_kernel_{self.key}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._module = module
        return self._module

    def _address(self, tensors: list[torch.Tensor], space: tuple[int, ...]) -> tuple[list[torch.Tensor], dict]:
        """The row-addressing arguments of the kernel (``codegen/emit.py``'s module docstring)
        from the actual strides; an input whose row dims do not collapse is copied contiguous."""
        d = self.data
        r = len(space)
        rows = space[:-1]
        out: dict[str, int] = {}
        result = []
        for i, (spec, t) in enumerate(zip(d["inputs"], tensors)):
            if spec["last"] == "contig" and t.dim() > 0 and t.stride(-1) != 1 and t.shape[-1] != 1:
                t = t.contiguous()
            if spec["form"] == "table":  # read at the rows its gathers' indices name
                out |= table_args(i, t)
                result.append(t)
                continue
            dims = [j - (r - t.dim()) for j in spec["row_dims"]]
            if d["addressing"] == "coords":
                for j, jj in zip(spec["row_dims"], dims):
                    out[f"s{i}_{j}"] = t.stride(jj)
            elif spec["row_dims"]:
                stride = _collapsed_stride(t, dims)
                if stride is None:
                    t = t.contiguous()
                    stride = _collapsed_stride(t, dims)
                out[f"rs{i}"] = stride
                lo, hi = spec["row_dims"][0], spec["row_dims"][-1]
                if spec["form"] in ("prefix", "middle"):
                    out[f"a{i}"] = math.prod(rows[hi + 1:])
                if spec["form"] in ("suffix", "middle"):
                    out[f"b{i}"] = math.prod(rows[lo:hi + 1])
            result.append(t)
        if d["addressing"] == "coords":
            out.update({f"D{j}": rows[j] for j in d["needed_row_dims"]})
        return result, out


@contextlib.contextmanager
def interpreter_asserts():
    """Triton's interpreter skips ``tl.device_assert`` unless its builder runs in debug mode (on a
    GPU the bounds-checked variants are compiled with ``debug=True`` instead)."""
    import triton.runtime.interpreter as interp

    builder = interp.interpreter_builder
    saved = builder.options
    builder.options = dataclasses.replace(saved, debug=True)
    try:
        yield
    finally:
        builder.options = saved


def type_code(kernel: str, ty: str) -> str:
    """The driver launcher's type code (``runtime/cpp/cuda_driver.h``) of a Triton parameter type."""
    if ty.startswith("*"):
        return "p"
    code = {"i1": "b", "u1": "b", "i8": "b", "u8": "b", "i32": "i", "u32": "i", "i64": "l", "u64": "l",
            "fp32": "f", "fp64": "d"}.get(ty)
    if code is None:
        raise ProgramRunError(f"kernel {kernel}: a parameter of Triton type {ty!r} cannot be passed by the driver "
                              "launcher (it passes pointers, integers, fp32 and fp64)")
    return code
