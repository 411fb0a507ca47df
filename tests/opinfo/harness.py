"""Run one PyTorch OpInfo through ``blade.optimize`` and say how it went.

PyTorch's ``op_db`` (``torch.testing._internal.common_methods_invocations``) holds sample inputs for
every operator; it is the broadest conformance suite there is for a PyTorch compiler. This module
is the machinery the pytest suite (``test_opinfo.py``) and the command-line walk
(``python -m tests.opinfo.harness``, which prints every outcome by class) share:

* each op's first usable sample becomes a one-op ``nn.Module`` whose tensor leaves are its inputs
  and whose non-tensor arguments are baked in; it is compiled once, with every dim dynamic;
* every other sample with the same argument structure (same pytree, same tensor ranks and dtypes,
  same non-tensor values) is run through that one compiled module and compared with eager;
* separately, the base sample with one dim narrowed to size 1 (where eager accepts that) is run,
  since size-1 dims change the meaning of squeeze, broadcasting and ``view(-1)``;
* ops that are random by nature are compared by shape, dtype and (where there are enough
  elements) summary statistics, never by value.

An outcome is ``"pass"`` or a failure class with a message: ``"wrong"`` (a result differs from
eager: never acceptable), ``"error"`` (an exception reached the caller) or ``"skip"`` (no sample
that eager itself can run).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree

#: Ops whose results are random (or uninitialised memory) by nature: compared by shape and dtype.
RANDOM_OPS = {
    "randn", "rand", "bernoulli", "multinomial", "normal", "normal.number_mean", "rand_like", "randint_like",
    "randn_like", "randint", "nn.functional.dropout", "nn.functional.dropout2d",
    "nn.functional.dropout3d", "nn.functional.alpha_dropout", "nn.functional.feature_alpha_dropout",
    "nn.functional.feature_alpha_dropout.with_train", "nn.functional.feature_alpha_dropout.without_train",
    "nn.functional.rrelu", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
    "empty_permuted", "uniform", "cauchy", "exponential", "geometric", "log_normal",
    # an in-place random fill compiles since in-place writes to inputs do (session 20)
    "normal.in_place",
    "nn.functional.fractional_max_pool2d", "nn.functional.fractional_max_pool3d",
    "nn.functional.multi_head_attention_forward", "torch._refs.rand_like",
    # growing a tensor in place leaves the new elements uninitialised (eager twice can agree by
    # reusing the same memory, Blade's call then reads other garbage: a flaky "wrong")
    "resize_", "resize_as_",
}
#: Random ops whose values have a meaningful mean to compare (empty_* hold arbitrary memory).
NO_STATISTICS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted",
                 "nn.functional.fractional_max_pool2d", "nn.functional.fractional_max_pool3d", "multinomial",
                 "nn.functional.multi_head_attention_forward", "resize_", "resize_as_"}


def op_id(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def float32_ops() -> list:
    from torch.testing._internal.common_methods_invocations import op_db

    return [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]


@dataclass
class Outcome:
    op: str
    status: str  # pass | wrong | error | skip
    message: str = ""
    checked: int = 0  # samples compared with eager
    seconds: float = 0.0
    fallbacks: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.op}: {self.status} ({self.checked} samples, {self.seconds:.1f} s) {self.message}"


class OneOp(torch.nn.Module):
    """``fn(sample.input, *sample.args, **sample.kwargs)`` with the tensors as module inputs."""

    def __init__(self, fn, spec, leaves: list[Any]):
        super().__init__()
        self.fn = fn
        self.spec = spec
        self.slots = [isinstance(x, torch.Tensor) for x in leaves]
        self.leaves = [None if slot else x for x, slot in zip(leaves, self.slots)]

    def forward(self, *tensors):
        it = iter(tensors)
        leaves = [next(it) if slot else x for x, slot in zip(self.leaves, self.slots)]
        inp, args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return self.fn(inp, *args, **kwargs)


def _flatten(sample):
    leaves, spec = pytree.tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))
    return leaves, spec


def structure(sample) -> tuple:
    leaves, spec = _flatten(sample)
    return (str(spec), tuple((x.dim(), x.dtype, x.layout) if isinstance(x, torch.Tensor) else repr(x)
                             for x in leaves))


def make_module(op, sample) -> tuple[OneOp, list[torch.Tensor]]:
    leaves, spec = _flatten(sample)
    mod = OneOp(op.op, spec, leaves)
    return mod.eval(), [x for x in leaves if isinstance(x, torch.Tensor)]


def tensors_of(sample) -> list[torch.Tensor]:
    return [x for x in _flatten(sample)[0] if isinstance(x, torch.Tensor)]


def _clone(ts):
    return [t.clone() for t in ts]


def _run_eager(mod, ts, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return mod(*_clone(ts))


#: (rtol, atol) by dtype: the compiled program may reassociate reductions and fuse elementwise ops
TOLERANCE = {torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-2), torch.bfloat16: (3e-2, 3e-2)}


def compare(op: str, got, want, random: bool = False) -> str | None:
    """None when ``got`` matches eager's ``want``; else what differs (``random``: shapes, dtypes
    and means only)."""
    if op in SVD_LIKE and isinstance(want, tuple) and isinstance(got, tuple) and len(got) == 3:
        # singular vectors of repeated or zero singular values are any basis: compare U S V^T
        got, want = [_usv(got)], [_usv(want)]
    g_leaves, g_spec = pytree.tree_flatten(got)
    w_leaves, w_spec = pytree.tree_flatten(want)
    if len(g_leaves) != len(w_leaves):
        return f"output structure {g_spec} differs from eager's {w_spec}"
    random = random or op in RANDOM_OPS
    for i, (g, w) in enumerate(zip(g_leaves, w_leaves)):
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor):
                return f"output {i}: got {type(g).__name__}, eager a tensor"
            if g.shape != w.shape or g.dtype != w.dtype:
                return f"output {i}: shape {tuple(g.shape)} {g.dtype}, eager {tuple(w.shape)} {w.dtype}"
            if random:
                if op not in NO_STATISTICS and w.is_floating_point() and w.numel() >= 256:
                    gm, wm = g.float().nanmean().item(), w.float().nanmean().item()
                    ws = max(w.float().std().item(), 1e-3)
                    if not abs(gm - wm) <= 6 * ws / math.sqrt(w.numel()) + 1e-3:
                        return f"output {i}: mean {gm:.4g}, eager's {wm:.4g} (std {ws:.3g})"
                continue
            try:
                rtol, atol = TOLERANCE.get(w.dtype, (1e-4, 1e-5))
                torch.testing.assert_close(g, w, rtol=rtol, atol=atol, equal_nan=True, check_stride=False,
                                           check_device=False)
            except AssertionError as e:
                return f"output {i}: " + " ".join(str(e).split())[:300]
        elif isinstance(w, float) and isinstance(g, (float, int)):
            if not (g == w or (math.isnan(g) and math.isnan(w)) or abs(g - w) <= 1e-5 + 1e-4 * abs(w)):
                return f"output {i}: {g} vs eager {w}"
        elif g != w and not random:
            return f"output {i}: {g!r} vs eager {w!r}"
    return None


#: ops returning (U, S, V) whose singular vectors are unique only for distinct nonzero singular values
SVD_LIKE = {"svd_lowrank", "pca_lowrank"}


LOW_PRECISION = (torch.float16, torch.bfloat16)


def _within_bar(mod, args, got, want) -> bool:
    """The project's bar for low-precision results, where eager's own rounding differs from a
    compiled kernel's (which computes in float32 inside: ``soft_margin_loss`` overflows to inf in
    eager float16, not in Blade): against a float64 run on the same inputs, Blade's error is at
    most twice eager's, plus the dtype's tolerance."""
    for high in (torch.float64, torch.float32):
        try:
            ref = _run_eager(mod, [t.to(high) if t.is_floating_point() else t for t in args])
            break
        except Exception:  # noqa: BLE001 - an op without float64 kernels: try float32
            continue
    else:
        return False
    g_leaves, w_leaves, r_leaves = (pytree.tree_leaves(x) for x in (got, want, ref))
    if not len(g_leaves) == len(w_leaves) == len(r_leaves):
        return False
    for g, w, r in zip(g_leaves, w_leaves, r_leaves):
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            if compare("", g, w) is not None:
                return False
            continue
        if not isinstance(g, torch.Tensor) or g.shape != w.shape or g.dtype != w.dtype:
            return False
        r = r.to(torch.float64).cpu()
        err = (g.to(torch.float64).cpu() - r).abs().nan_to_num(nan=math.inf, posinf=math.inf)
        eager = (w.to(torch.float64).cpu() - r).abs().nan_to_num(nan=math.inf, posinf=math.inf)
        err = err.masked_fill(torch.isnan(g.cpu()) & torch.isnan(r), 0)  # NaN where the reference has one
        rtol, atol = TOLERANCE.get(w.dtype, (1e-4, 1e-5))
        if not bool((err <= 2 * eager + atol + rtol * r.abs()).all()):
            return False
    return True


def _usv(usv):
    u, s_, v = usv
    return u @ torch.diag_embed(s_).to(u.dtype) @ v.mT


def _differs_by_seed(mod, ts) -> bool:
    """Random by nature (randomised algorithms like svd_lowrank included): eager under two seeds
    gives two answers."""
    try:
        return compare("", _run_eager(mod, ts, seed=0), _run_eager(mod, ts, seed=1)) is not None
    except Exception:  # noqa: BLE001
        return False


def size_one_variant(mod, ts, random: bool) -> list[torch.Tensor] | None:
    """The inputs with one dim narrowed to 1 in the highest-rank inputs (lower-rank ones, often
    weights or broadcast operands, keep their sizes), for the first dim, from the right, that eager
    accepts and computes deterministically; None when the sample has no room for one."""
    if any(t.is_cuda for t in ts) and any(not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
                                          for t in ts):
        # integer inputs are often indices: narrowed, they point out of range, which CUDA reports
        # as a device-side assert that ends the process's CUDA context (eager's own take/gather)
        return None
    rank = max((t.dim() for t in ts), default=0)
    # the largest value of each integer input: indices into a dim, if they fit it
    index_max = [int(t.max()) for t in ts if t.numel() and not (t.is_floating_point() or t.is_complex()
                                                                 or t.dtype == torch.bool)]
    for back in range(1, rank + 1):
        main = [t for t in ts if t.dim() == rank]
        sizes = {t.shape[-back] for t in main}
        if len(sizes) != 1 or next(iter(sizes)) <= 1:
            continue
        if any(1 <= m < next(iter(sizes)) for m in index_max):
            # integer inputs that fit this dim and not its narrowed size may be indices into it,
            # which some eager kernels do not check (ctc_loss reads past its class dim): an invalid
            # input, not a test
            continue
        cand = [t.narrow(t.dim() - back, 0, 1).clone() if t.dim() == rank else t for t in ts]
        try:
            first = _run_eager(mod, cand)
            again = _run_eager(mod, cand)
        except Exception:  # noqa: BLE001 - eager refuses: not a valid size-1 input for this op
            continue
        if not random and compare("", first, again) is not None:
            continue  # eager reads memory it should not (an input it does not check): no test
        return cand
    return None


def run_op(op, config_kwargs: dict | None = None, dtype=torch.float32, device="cpu",
           max_samples: int | None = None) -> Outcome:
    import blade

    name = op_id(op)
    t0 = time.perf_counter()
    out = Outcome(name, "skip")
    try:
        samples = list(op.sample_inputs(device, dtype, requires_grad=False))
    except Exception as e:  # noqa: BLE001
        out.message = f"sample_inputs failed: {type(e).__name__}: {e}"
        if "graph capture" in str(e) or "CUDA error" in str(e):
            # the process's CUDA state was broken by an earlier op (a failed graph capture leaves
            # the generator capturing): that is a Blade bug to report, not a skip
            out.status = "error"
        return out
    base = None
    for s in samples:
        mod, ts = make_module(op, s)
        try:
            _run_eager(mod, ts)
        except Exception:  # noqa: BLE001 - a sample eager rejects is not a test
            continue
        base = s
        break
    if base is None:
        out.message = "eager rejects every sample"
        return out
    mod, ts = make_module(op, base)
    random = name in RANDOM_OPS or _differs_by_seed(mod, ts)
    key = structure(base)
    same = [s for s in samples if structure(s) == key]
    if max_samples is not None:
        same = same[:max_samples]
    config = blade.Config(**{"max_variants": 64, **(config_kwargs or {})})
    stage = "compile"
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf), torch.no_grad():
            opt = blade.optimize(mod, tuple(_clone(ts)), config=config)
            # no variant: capture failed (an op torch.export refuses) and the module runs eagerly
            out.fallbacks = [u.target for u in opt.report.unsupported] if opt.variants else ["whole module"]
            cases = [("sample", tensors_of(s)) for s in same]
            stage = "size-1 variant"
            one = size_one_variant(mod, ts, random)
            if one is not None:
                cases.append(("size-1 variant", one))
            for label, args in cases:
                stage = f"{label} {[tuple(t.shape) for t in args]}"
                try:
                    want = _run_eager(mod, args)
                except Exception:  # noqa: BLE001
                    continue
                torch.manual_seed(0)
                got = opt(*_clone(args))
                why = compare(name, got, want, random or (label != "sample" and _differs_by_seed(mod, args)))
                if why is not None and dtype in LOW_PRECISION and not random and _within_bar(mod, args, got, want):
                    why = None
                if why is not None:
                    out.status, out.message = "wrong", f"{stage}: {why}"
                    return out
                out.checked += 1
        out.status = "pass"
        if "ERROR" in buf.getvalue():
            # a variant failed to compile and the call ran eagerly: correct but worth knowing
            out.message = buf.getvalue().strip().splitlines()[-1][:300]
    except Exception as e:  # noqa: BLE001
        out.status = "error"
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{f.filename.split('/')[-1]}:{f.lineno}" for f in reversed(tb)
                      if "/wt-" in f.filename or "/blade/" in f.filename), "")
        out.message = f"{stage}: {type(e).__name__}: {' '.join(str(e).split())[:400]} [{where}]"
    finally:
        out.seconds = time.perf_counter() - t0
    return out


def main(argv=None) -> None:
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(description="Walk op_db through blade.optimize and print every outcome")
    p.add_argument("-k", default="", help="only ops whose id contains this")
    p.add_argument("--json", help="write outcomes here")
    p.add_argument("--max-samples", type=int, default=None)
    a = p.parse_args(argv)
    ops = [op for op in float32_ops() if a.k in op_id(op)]
    outcomes = []
    t0 = time.perf_counter()
    for op in ops:
        o = run_op(op, max_samples=a.max_samples)
        outcomes.append(o)
        print(o.line(), flush=True)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print(f"{len(outcomes)} ops in {time.perf_counter() - t0:.0f} s: {counts}", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump([o.__dict__ for o in outcomes], f, indent=1)


if __name__ == "__main__":
    main()
