"""Runs a generated network through Blade and eager PyTorch, and shrinks a failing one.

``check(net)`` compiles the network once, at its compile shape (probe 0), then calls it at the
compile shape, with an empty batch (batch 0: eager's outputs, or eager's exception type) and at
each check shape with fresh random inputs (the empty call must leave their compiles alone), and
compares every output with eager: float outputs within the network's tolerance (relative, scaled
by the output's magnitude), integer and boolean outputs exactly, and always the same shape and
dtype. Any exception from Blade is a failure too: with the default eager fallback, a valid PyTorch module must never crash.

A failure's message is a reproduction: the seed, the network as a runnable script that compiles
and compares at the failing shape, and the first differing output. ``shrink(net, failure)``
removes ops and shrinks sizes while the failure (of the same kind) persists, and returns the
smallest network and probes found.

Run one seed from the command line (prints the network, the outcome and, on failure, the shrunk
reproduction):

    python -m tests.generated.check 17 [--executor kernels|program|program-bounds] [--no-shrink]
    python -m tests.generated.check --range 300 700 --no-shrink     # bug hunting in bulk
"""

from __future__ import annotations

import argparse
import time
import traceback
from dataclasses import dataclass, replace

import torch
import torch.utils._pytree as pytree

import blade
from tests.generated.netgen import Network, generate


@dataclass
class Failure:
    kind: str  # "mismatch", "crash" (an exception from Blade), "compile" (an exception from optimize),
    #            "not compiled" (optimize fell back to running the whole module eagerly), "eager answer"
    #            (a call was answered by eager PyTorch: a compiled variant failed at run time),
    #            "empty batch" (a call with batch 0 answered otherwise than eager)
    probe: int  # the probe index of the failing call (0 for a compile failure)
    detail: str

    def signature(self) -> str:
        """What a shrunk network must still show to count as the same failure."""
        if self.kind == "mismatch":
            return "mismatch"
        lines = [ln for ln in self.detail.splitlines() if ln and not ln.startswith(" ")]
        return self.kind + ":" + (lines[0].split(":")[0] if lines else "")


#: generated-kernel launches of each passing check's first variant (0 for the reference executor)
KERNEL_LAUNCHES: dict[str, list[int]] = {}  # executor -> generated-kernel launches per network checked


#: executors a network is checked with: a Config executor, or "program-bounds" (the Program
#: executor with offset assertions compiled into its kernels)
BOUNDS = "program-bounds"


def config_for(executor: str) -> blade.Config:
    if executor == BOUNDS:
        return blade.Config(executor="program", check_shapes=True, bounds_check=True, kernel_cache_dir=None)
    return blade.Config(executor=executor, check_shapes=True, kernel_cache_dir=None)


def _compare(net: Network, outs, refs, same_nonfinite: bool = False) -> str | None:
    """None where Blade's outputs ``outs`` match eager's ``refs``, else what differs first. With
    ``same_nonfinite``, a NaN or infinity where eager has the same counts as equal (an empty batch's
    variance is NaN in both); otherwise any non-finite float output is a failure."""
    outs, refs = pytree.tree_leaves(outs), pytree.tree_leaves(refs)
    if len(outs) != len(refs):
        return f"{len(outs)} outputs, eager has {len(refs)}"
    for i, (o, r) in enumerate(zip(outs, refs)):
        where = f"output {i} ({net.outputs[i]})"
        if not isinstance(o, torch.Tensor):
            return f"{where}: {type(o).__name__}, eager gives a tensor"
        if o.shape != r.shape or o.dtype != r.dtype:
            return f"{where}: {tuple(o.shape)} {o.dtype}, eager {tuple(r.shape)} {r.dtype}"
        if not r.is_floating_point():
            bad = (o != r).nonzero()
            if len(bad):
                at = tuple(bad[0].tolist())
                return f"{where}: {len(bad)} of {r.numel()} elements differ, first at {at}: {o[at].item()} vs eager {r[at].item()}"
            continue
        tol = net.tolerance(i)
        o32, r32 = o.float(), r.float()
        scale = max(1.0, r32.abs().max().item()) if r.numel() else 1.0
        err = (o32 - r32).abs()
        limit = tol * scale + tol * r32.abs()
        nonfinite = ~torch.isfinite(o32)
        if same_nonfinite:
            same = (o32 == r32) | (o32.isnan() & r32.isnan())
            err, nonfinite = torch.where(same, 0.0, err), nonfinite & ~same
        if nonfinite.any() or (err > limit).any():
            bad = ((err > limit) | nonfinite).nonzero()
            at = tuple(bad[0].tolist())
            return (f"{where} {tuple(r.shape)} {r.dtype}: {len(bad)} of {r.numel()} elements differ, max abs error "
                    f"{err.nan_to_num(float('inf')).max().item():.3e} (tolerance {tol:g} x {scale:.3g}); first at {at}: "
                    f"{o32[at].item():.6g} vs eager {r32[at].item():.6g}")
    return None


def _copies(inputs: tuple) -> tuple:
    return tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in inputs)


def _compare_inputs(net: Network, mine: tuple, theirs: tuple) -> str | None:
    """None where every tensor input holds after Blade's call what it holds after eager's (a
    network that writes into an input in place), else which input differs and where. Float inputs
    compare at the coarsest output tolerance: the value written is the network's last output
    (``netops.add_input_write``), and may have gone through float16 or bfloat16."""
    tol = max(net.tolerance(j) for j in range(len(net.outputs)))
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if not isinstance(a, torch.Tensor):
            continue
        a, b = a.detach(), b.detach()
        if a.is_floating_point():
            a32, b32 = a.float(), b.float()
            scale = max(1.0, b32.abs().max().item()) if b.numel() else 1.0
            bad = ((a32 - b32).abs() > tol * scale + tol * b32.abs()) | (a32.isnan() != b32.isnan())
        else:
            bad = a != b
        if bad.any():
            at = tuple(bad.nonzero()[0].tolist())
            return (f"input {i} after the call: {int(bad.sum())} of {b.numel()} elements differ from eager's (an "
                    f"in-place write), first at {at}: {a[at].item():.6g} vs eager {b[at].item():.6g}")
    return None


def _short_traceback() -> str:
    """The innermost frames, then the exception's first lines (some errors carry a whole IR dump)."""
    import sys
    exc = sys.exc_info()[1]
    frames = "".join(traceback.format_tb(exc.__traceback__, limit=-3))
    msg = "\n".join(f"{type(exc).__name__}: {exc}".splitlines()[:6])[:1500]
    return frames + msg


def check(net: Network, executor: str = "reference", probes: list[int] | None = None) -> Failure | None:
    """None when Blade matches eager at every probe, else the first failure."""
    model, make = net.build()
    probes = list(range(len(net.probes))) if probes is None else probes
    empties = 0  # empty-batch calls answered eagerly (allowed: where their compile fails, Blade does so)
    try:
        opt = blade.optimize(model, make(**net.probes[0], seed=100), config=config_for(executor))
    except Exception:  # noqa: BLE001 - reported with the reproduction
        return Failure("compile", 0, _short_traceback())
    for p in probes:
        # each side gets its own copy of the inputs: a network may write into an input in place
        # (netops.add_input_write), and the inputs are compared after the calls too
        inputs = make(**net.probes[p], seed=p + 1)
        theirs = _copies(inputs)
        # the last probe is called in grad mode (parameters requiring grad, no torch.no_grad): a
        # user's plain call; compared detached
        grad_mode = p == probes[-1] and len(probes) > 1
        with torch.enable_grad() if grad_mode else torch.no_grad():
            refs = model(*theirs)
            try:
                outs = opt(*inputs)
            except Exception:  # noqa: BLE001
                return Failure("crash", p, _short_traceback())
        if grad_mode:
            refs, outs = (torch.utils._pytree.tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, o)
                          for o in (refs, outs))
        msg = _compare(net, outs, refs)
        if msg:
            return Failure("mismatch", p, msg)
        msg = _compare_inputs(net, inputs, theirs)
        if msg:
            return Failure("mismatch", p, msg)
        if p == probes[0] and "B" in net.probes[p]:
            empty = _check_empty_batch(net, model, make, opt, p)
            if isinstance(empty, Failure):
                return empty
            empties = empty
    if not opt.variants:  # capture failed: every call ran the module eagerly (correct, not compiled)
        return Failure("not compiled", 0, "blade.optimize could not compile the network and runs it in "
                       "eager PyTorch (see the [blade] message above)")
    if opt.eager_calls > empties:  # a compiled variant that failed at run time is answered eagerly: right, but a bug
        return Failure("eager answer", 0, f"{opt.eager_calls - empties} of {len(probes)} calls were answered by eager "
                       "PyTorch (an internal error of a compiled variant, or a refused shape: see the [blade] "
                       "messages above)")
    KERNEL_LAUNCHES.setdefault(executor, []).append(generated_launches(opt.variants[0]))
    return None


def _check_empty_batch(net: Network, model, make, opt, p: int) -> int | Failure:
    """Probe ``p`` with batch 0: Blade answers as eager does (its outputs, or an exception of the
    same type). Returns how many calls Blade answered eagerly (0 or 1), or the failure."""
    inputs = make(**{**net.probes[p], "B": 0}, seed=50)
    before = opt.eager_calls
    with torch.no_grad():
        try:
            refs = model(*_copies(inputs))
        except Exception as e:  # noqa: BLE001 - an empty batch eager refuses: Blade must refuse it too
            refs = e
        try:
            outs = opt(*inputs)
        except Exception as e:  # noqa: BLE001
            outs = e
    if isinstance(refs, Exception) or isinstance(outs, Exception):
        if type(refs) is not type(outs):
            what = lambda r: f"{type(r).__name__}: {str(r)[:300]}" if isinstance(r, Exception) else "outputs"  # noqa: E731
            return Failure("empty batch", p, f"batch 0: eager gives {what(refs)}, Blade {what(outs)}")
    else:
        msg = _compare(net, outs, refs, same_nonfinite=True)
        if msg:
            return Failure("empty batch", p, f"batch 0: {msg}")
    return opt.eager_calls - before


def generated_launches(variant) -> int:
    """Generated-kernel launches of a variant: counted by the IR executor's launchers, or the
    Program's launch steps (every call runs each once). The GPU tests ask it too
    (``tests/gpu/helpers.py``)."""
    program = getattr(variant.executor, "program", None)
    if program is not None and hasattr(program, "steps"):
        return sum(1 for s in program.steps if s.kind == "launch")
    stats = variant.program.launch_stats
    return stats.launches if stats is not None else 0


def reproduction(net: Network, failure: Failure, executor: str = "reference") -> str:
    """A runnable script that shows the failure, with the failure's text as a comment."""
    kw = lambda p: ", ".join(f"{k}={v}" for k, v in net.probes[p].items())  # noqa: E731
    interpreted = executor in ("kernels", "program", BOUNDS)
    cfg = ("blade.Config(executor='program', bounds_check=True)" if executor == BOUNDS
           else f"blade.Config(executor='{executor}')" if interpreted else "blade.Config()")
    env = "# run with TRITON_INTERPRET=1 on a CPU\n" if interpreted else ""
    lines = [f"# Blade generated-network failure ({failure.kind}), seed {net.seed}", env + net.source(),
             "import blade", "", f"torch.manual_seed({net.seed})", "net = Net().eval()",
             f"opt = blade.optimize(net, make_inputs({kw(0)}, seed=100), config={cfg})",
             f"inputs = make_inputs({kw(failure.probe)}, seed={failure.probe + 1})",
             "theirs = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in inputs)",
             "with torch.no_grad():", "    for o, r in zip(opt(*inputs), net(*theirs)):",
             "        print(tuple(r.shape), r.dtype, (o.double() - r.double()).abs().max().item())",
             "for a, b in zip(inputs, theirs):  # inputs written in place",
             "    if isinstance(a, torch.Tensor):",
             "        print('input after the call', (a.double() - b.double()).abs().max().item())",
             "", "# " + "\n# ".join(failure.detail.strip().splitlines())]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- shrinking
def _valid(net: Network, probes: list[int]) -> bool:
    try:
        model, make = net.build()
        with torch.no_grad():
            for p in probes:
                for o in model(*make(**net.probes[p], seed=p + 1)):
                    if o.numel() == 0:
                        return False
    except Exception:  # noqa: BLE001
        return False
    return True


def shrink(net: Network, failure: Failure, executor: str = "reference", budget_s: float = 120.0):
    """Smallest (network, failure) found that still fails the same way."""
    deadline = time.monotonic() + budget_s
    sig = failure.signature()
    # keep only the compile shape and the failing shape
    net = replace(net, probes=[net.probes[0], net.probes[failure.probe]]) if failure.probe else \
        replace(net, probes=[net.probes[0]])
    failure = replace(failure, probe=len(net.probes) - 1)
    _carry_vals(net)

    def still_fails(cand: Network) -> Failure | None:
        if time.monotonic() > deadline or not cand.steps or not _valid(cand, range(len(cand.probes))):
            return None
        f = check(cand, executor)
        return f if f is not None and f.signature() == sig else None

    changed = True
    while changed and time.monotonic() < deadline:
        changed = False
        # 1. one output at a time, earliest first: the first op whose value goes wrong
        if len(net.outputs) > 1 or net.outputs[0] != net.steps[-1].out:
            for step in net.steps:
                cand = replace(net, outputs=[step.out]).without_dead_steps()
                _carry_vals(cand, net)
                f = still_fails(cand)
                if f:
                    net, failure, changed = cand, f, True
                    break
        # 2. bypass an op: its readers read one of its operands of the same shape and dtype instead
        for step in list(net.steps):
            out = net.vals[step.out]
            for u in step.uses:
                src = net.vals.get(u)
                if src is None or src.dims != out.dims or src.dtype != out.dtype:
                    continue
                cand = net.renamed_use(step.out, u)
                _carry_vals(cand, net)
                f = still_fails(cand)
                if f:
                    net, failure, changed = cand, f, True
                    break
        # 3. smaller sizes (halved, or minus one), batch 1
        for p in range(len(net.probes)):
            for sym, v in net.probes[p].items():
                if type(v) is not int:  # a float argument's value, not a size
                    continue
                for smaller in sorted({1, v // 2, v - 1} - {v}):
                    if smaller < 1 or smaller >= v:
                        continue
                    probes = [dict(q) for q in net.probes]
                    probes[p][sym] = smaller
                    cand = replace(net, probes=probes)
                    f = still_fails(cand)
                    if f:
                        net, failure, changed = cand, f, True
                        break
    return net, failure


def _carry_vals(net: Network, src: Network | None = None) -> None:
    src = src or net
    net.vals = {k: v for k, v in src.vals.items()}


def report(net: Network, failure: Failure, executor: str, shrink_budget_s: float = 120.0) -> str:
    """The message of a failing test: the reproduction, then the shrunk reproduction."""
    text = [reproduction(net, failure, executor)]
    if shrink_budget_s > 0:
        small, sfail = shrink(net, failure, executor, shrink_budget_s)
        text += ["", "=" * 30 + " smallest still-failing network " + "=" * 30, reproduction(small, sfail, executor)]
    return "\n".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seeds", type=int, nargs="*")
    ap.add_argument("--range", type=int, nargs=2, metavar=("FIRST", "END"), help="seeds FIRST..END-1 too")
    ap.add_argument("--executor", default="reference", choices=["reference", "kernels", "program", BOUNDS])
    ap.add_argument("--no-shrink", action="store_true")
    args = ap.parse_args()
    seeds = list(args.seeds) + (list(range(*args.range)) if args.range else [])
    failed = []
    for seed in seeds:
        net = generate(seed)
        t = time.monotonic()
        f = check(net, args.executor)
        print(f"seed {seed}: {'ok' if f is None else f.kind} ({time.monotonic() - t:.2f} s)")
        if f is not None:
            failed.append(seed)
            print(report(net, f, args.executor, 0 if args.no_shrink else 120.0))
    print(f"{len(seeds) - len(failed)} of {len(seeds)} seeds pass" + (f"; failing: {failed}" if failed else ""))


if __name__ == "__main__":
    main()


__all__ = ["Failure", "check", "config_for", "report", "reproduction", "shrink"]
