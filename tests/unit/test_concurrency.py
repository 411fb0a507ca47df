"""Thread and process safety: concurrent calls (including ones that compile a variant) are
correct, compile once per signature and never leave the user's module changed; kernel-compile
workers never run the user's script."""

import subprocess
import sys
import textwrap
import threading

import torch

import blade


class EvenOdd(torch.nn.Module):
    """A linear layer plus a size branch: odd batches need a second variant."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        if x.shape[0] % 2 == 0:
            return h * 2
        return h - 1


def run_threads(fn, n):
    barrier = threading.Barrier(n)
    results, errors = {}, []

    def body(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def real_parameters(model):
    return all(getattr(p, "fake_mode", None) is None and type(p) is torch.nn.Parameter for p in model.parameters())


def test_threads_needing_a_new_variant_compile_it_once(capfd):
    model = EvenOdd().eval()
    opt = blade.optimize(model, (torch.randn(2, 6),))
    capfd.readouterr()
    xs = [torch.randn(2 * i + 3, 6) for i in range(4)]  # odd batches: the second variant
    results = run_threads(lambda i: opt(xs[i]), 4)
    assert real_parameters(model)
    for i, x in enumerate(xs):
        assert type(results[i]) is torch.Tensor
        torch.testing.assert_close(results[i], model(x))
    err = capfd.readouterr().err
    assert err.count("compiling variant") == 1 and "ERROR" not in err
    assert len(opt.variants) == 2


def test_two_optimized_wrappers_of_one_module_compile_concurrently(capfd):
    model = EvenOdd().eval()
    opts = [blade.optimize(model, (torch.randn(2, 6),)) for _ in range(2)]
    xs = [torch.randn(5, 6), torch.randn(7, 6)]
    # each thread compiles a variant of its own wrapper: only the process-wide capture lock keeps
    # the two exports of the shared module from swapping its parameters under each other
    results = run_threads(lambda i: opts[i](xs[i]), 2)
    assert real_parameters(model)
    for i, x in enumerate(xs):
        torch.testing.assert_close(results[i], model(x))
    assert "ERROR" not in capfd.readouterr().err


def test_eager_calls_wait_for_a_running_compile(capfd):
    class Checked(EvenOdd):
        def forward(self, x, check: bool = False):
            if check and x.sum() > 0:  # data-dependent: the check=True signature runs eagerly
                return self.lin(x) + 1
            return super().forward(x)

    model = Checked().eval()
    opt = blade.optimize(model, (torch.randn(2, 6),))
    eager_x = torch.ones(4, 6)
    opt(eager_x, check=True)  # the failed compile is remembered: later such calls run eagerly
    assert "ERROR: compiling" in capfd.readouterr().err
    with torch.no_grad():
        want_eager = model(eager_x, True)
    odd = [torch.randn(2 * i + 5, 6) for i in range(4)]

    def call(i):
        if i % 2:  # compiles (export swaps the module's parameters for fake ones meanwhile)
            return opt(odd[i])
        return [opt(eager_x, check=True) for _ in range(200)]  # runs the original module, often

    results = run_threads(call, 4)
    assert real_parameters(model)
    for i in range(4):
        if i % 2:
            torch.testing.assert_close(results[i], model(odd[i]))
        else:
            for r in results[i]:
                assert type(r) is torch.Tensor
                torch.testing.assert_close(r, want_eager)


NO_MAIN_GUARD = textwrap.dedent('''
    # a user script without `if __name__ == "__main__":` (a spawn pool would re-run all of it)
    import sys
    import torch
    import blade
    from blade.codegen.aot import compile_plans
    from blade.codegen.emit import plan_kernel
    from blade.dialects.kernel import FusedOp

    print("SCRIPT BODY RAN", flush=True)

    class M(torch.nn.Module):
        def forward(self, x, y):
            return torch.nn.functional.silu(x * 2 + y), (x - y).relu() * 3

    opt = blade.optimize(M().eval(), (torch.randn(4, 8), torch.randn(4, 8)))
    plans = [plan_kernel(op) for op in opt.report.module.walk() if isinstance(op, FusedOp)]
    compiled = compile_plans(plans, target=("cuda", 90, 32), root=sys.argv[1], jobs=2)
    print("COMPILED", len(compiled), sum(len(p.variants) for p in plans), flush=True)
''')


def test_compile_workers_never_run_a_script_without_main_guard(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(NO_MAIN_GUARD)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("SCRIPT BODY RAN") == 1
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("COMPILED"))
    assert int(line.split()[2]) >= 4  # enough jobs for two workers
