"""Probe Blade on models and call patterns no test names: compile once at one shape on the CPU
(fp32, default executor), serve other shapes (batch 1 and 3, odd sizes), compare with eager and
report max error, variants and eager fallback answers. Run: python benchmarks/probe_heldout.py [name...]
"""

from __future__ import annotations

import sys
import time
import traceback

import torch
import torch.utils._pytree as pytree

import blade

import heldout_cases_models
import heldout_cases_nn
from probe_registry import CASES

#: importing them registers their cases: plain torch.nn patterns, then transformers/diffusers models
CASE_MODULES = (heldout_cases_nn, heldout_cases_models)


def leaves(out):
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def run_case(name):
    fn, example, shapes = CASES[name]
    torch.manual_seed(0)
    model, make = fn()
    model.eval()
    args, kwargs = make(*example)
    t0 = time.time()
    with torch.no_grad():
        opt = blade.optimize(model, args, model_kwargs=kwargs)
    ct = time.time() - t0
    worst = 0.0
    for i, shape in enumerate([example] + list(shapes)):
        torch.manual_seed(100 + i)
        args, kwargs = make(*shape)
        with torch.no_grad():
            out = opt(*args, **kwargs)
            ref = model(*args, **kwargs)
        assert type(out) is type(ref), (type(out), type(ref))
        g, w = leaves(out), leaves(ref)
        assert len(g) == len(w), (len(g), len(w))
        for a, b in zip(g, w):
            assert a.shape == b.shape and a.dtype == b.dtype, (shape, a.shape, b.shape, a.dtype, b.dtype)
            if a.is_floating_point():
                err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item() if a.numel() else 0.0
                worst = max(worst, err)
                assert err < 1e-4, f"shape {shape}: rel err {err:.2e}"
            else:
                assert torch.equal(a, b), f"shape {shape}: integer/bool output differs"
    fallbacks = sorted({u.target for v in opt.variants for u in v.program.report.unsupported})
    return dict(variants=len(opt.variants), eager_calls=opt.eager_calls, err=worst, compile_s=round(ct, 1),
                fallbacks=fallbacks)


def main():
    names = sys.argv[1:] or list(CASES)
    for name in names:
        try:
            r = run_case(name)
            status = "OK" if r["eager_calls"] == 0 and r["variants"] == 1 and not r["fallbacks"] else "NOTE"
            print(f"{status:5} {name}: {r}", flush=True)
        except Exception as e:  # noqa: BLE001 - a probe reports every failure and goes on
            print(f"FAIL  {name}: {type(e).__name__}: {str(e)[:600]}", flush=True)
            if "-v" in sys.argv or len(names) == 1:
                traceback.print_exc()


if __name__ == "__main__":
    main()
