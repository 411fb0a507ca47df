"""A new guard class that compiles to the same program shares the compiled code (issue 8, item 4).

A model that compares two size ratios only to decide whether to call ``.contiguous()`` (what
diffusers' ``Upsample2D`` did before Blade captured its ``max`` without a guard: see
``test_guards.test_max_of_size_ratios_in_model_code_is_not_a_guard``) gets a torch.export guard,
so sizes on the other side of the comparison fall into another guard class than the compile
shape, although the captured program is the same. Such a class gets a variant of its own (its
guards) whose code is the first variant's: nothing generated or compiled, one entry toward
``Config.max_variants``. A class whose program differs still compiles its own code.
"""

import pytest
import torch

import blade


class RatioDecides(torch.nn.Module):
    """A guard on h/w ratios that changes nothing in the program."""

    def forward(self, x):
        h, w = x.shape[-2:]
        if 2 * h / (h + 1) > 3 * w / (w + 2):
            x = x.contiguous()
        return torch.relu(x) * 2 + 1


class RatioBranches(torch.nn.Module):
    """The same guard, but the branch changes the program."""

    def forward(self, x):
        h, w = x.shape[-2:]
        if 2 * h / (h + 1) > 3 * w / (w + 2):
            return torch.relu(x) * 2 + 1
        return torch.sigmoid(x) - 1


def _codes(opt) -> int:
    return len({id(v.executor.code) for v in opt.variants})


@pytest.mark.parametrize("executor", ["reference", "kernels"])
def test_same_program_shares_code(executor, capsys):
    if executor == "kernels":
        pytest.importorskip("triton")
        import os
        if os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("generated kernels run on CPU only under TRITON_INTERPRET=1 (tests/kernels)")
    m = RatioDecides()
    opt = blade.optimize(m, (torch.randn(2, 3, 2, 9),), config=blade.Config(executor=executor, max_variants=1))
    for shape in [(2, 3, 2, 9), (1, 3, 40, 2), (3, 5, 7, 11)]:
        x = torch.randn(shape)
        torch.testing.assert_close(opt(x), m(x))
    assert len(opt.variants) == 2, [v.program.report.format() for v in opt.variants]
    assert _codes(opt) == 1  # and max_variants=1 did not refuse the second class
    assert any("serves this guard class too" in n for n in opt.variants[1].program.report.notes)
    assert opt.variants[1].executor is not opt.variants[0].executor  # its own guards
    assert "is false" in capsys.readouterr().err  # the class change was reported


def test_other_program_compiles_its_own_code():
    m = RatioBranches()
    opt = blade.optimize(m, (torch.randn(2, 3, 2, 9),))
    for shape in [(2, 3, 2, 9), (1, 3, 40, 2)]:
        x = torch.randn(shape)
        torch.testing.assert_close(opt(x), m(x))
    assert len(opt.variants) == 2 and _codes(opt) == 2


def test_code_key_ignores_guards_and_ranges():
    from blade.ir import code_key, read_symbol_table, write_symbol_table
    from blade.symbolic import Guard
    import sympy

    opt = blade.optimize(RatioDecides(), (torch.randn(2, 3, 2, 9),))
    module = opt.variants[0].program.module.clone()
    before = code_key(module)
    table = read_symbol_table(module)
    s0 = next(iter(table.symbols.values()))
    table.guards.append(Guard(sympy.Ne(s0.symbol, 7), "test"))
    s0.lo = 2
    write_symbol_table(module, table)
    assert code_key(module) == before


def test_past_the_limit_a_new_program_runs_eagerly_without_recapture(capsys, monkeypatch):
    """max_variants reached: a new guard class is captured once to see whether its program is an
    old one; it is not, so its calls run eagerly, and the next call of that class does not capture
    again."""
    m = RatioBranches()
    opt = blade.optimize(m, (torch.randn(2, 3, 2, 9),), config=blade.Config(max_variants=1))
    x = torch.randn(1, 3, 40, 2)
    torch.testing.assert_close(opt(x), m(x))
    assert len(opt.variants) == 1
    err = capsys.readouterr().err
    assert "capturing variant 1" in err and "Raise Config.max_variants" in err
    from blade import pipeline

    def no_capture(*a, **k):
        raise AssertionError("captured again")

    monkeypatch.setattr(pipeline, "compile_program", no_capture)
    monkeypatch.setattr("blade.module.compile_program", no_capture)
    x = torch.randn(2, 3, 30, 3)
    torch.testing.assert_close(opt(x), m(x))


def test_past_the_limit_strict_raises():
    m = RatioBranches()
    opt = blade.optimize(m, (torch.randn(2, 3, 2, 9),), config=blade.Config(max_variants=1, fallback="strict"))
    from blade.module import GuardError

    with pytest.raises(GuardError, match="max_variants"):
        opt(torch.randn(1, 3, 40, 2))


class BatchQuestion(torch.nn.Module):
    """Asks ``batch <= 1`` (what torch's C++ memory-format heuristics ask of a GroupNorm input on
    CUDA) and computes the same either way."""

    def forward(self, x):
        if x.shape[0] <= 1:
            x = x.contiguous()
        return torch.relu(x) * 2 + 1


def test_symbol_narrowed_to_one_size_stays_a_symbol_and_shares_code():
    """A guard that narrows the batch to [1, 1] at a batch-1 example keeps the batch a symbol: a
    constant 1 would make every other batch a program of its own (the GPU VAE decoder compiled at
    batch 1 did, from a GroupNorm's ``batch <= 1``); with the symbol, batch 3 is a guard class
    sharing the code."""
    m = BatchQuestion()
    opt = blade.optimize(m, (torch.randn(1, 3, 5, 7),))
    assert "x.size(0) in [1, 1]" in opt.variants[0].program.report.format()
    for shape in [(1, 3, 5, 7), (3, 3, 5, 7), (2, 4, 6, 9)]:
        x = torch.randn(shape)
        torch.testing.assert_close(opt(x), m(x))
    assert len(opt.variants) == 2 and _codes(opt) == 1, [v.program.report.format() for v in opt.variants]
