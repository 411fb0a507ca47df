"""Python int arguments (``unet(x, 981, ctx)``, a slice length, a count) and where tensors sit in
a call.

With ``Config.int_arguments="auto"`` the first compile burns ints in as constants; a call that
differs from a variant only in int values compiles once more with every int argument a symbol
(a size carrier input, ``runtime/call_signature.py``), and that variant serves every value >= 0:
a denoising loop over 50 timesteps compiles twice, not 50 times (before: four variants, then
eager PyTorch for the rest). Negative ints and bools stay constants, as export takes int
arguments as sizes.

The forms are generated: each module of ``FORMS`` uses its int arguments another way (as data,
``torch.tensor([t])`` as diffusers does, as a size, as slice bounds, under a guard, nested in a
dict, returned), each is called with values that include 0, 1, large and negative ones, bools,
at several batch sizes, and every answer is compared with eager's (shape, dtype, values); the
Program executor and saved modules: ``tests/kernels/test_int_arguments_program.py``.
"""

import pytest
import torch
import torch.nn.functional as F

import blade


class AsData(torch.nn.Module):
    def forward(self, x, t):
        return x * t + t // 3


class AsTensorLikeDiffusers(torch.nn.Module):
    """diffusers' timestep handling: a Python number becomes a one-element tensor, broadcast
    over the batch, embedded sinusoidally."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x, timestep):
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.long, device=x.device)
        timestep = timestep.expand(x.shape[0])
        freqs = torch.exp(-torch.arange(4, dtype=torch.float32, device=x.device) / 4)
        emb = timestep[:, None].float() * freqs[None]
        emb = torch.cat([emb.sin(), emb.cos()], dim=-1)
        return x + self.proj(emb)


class AsSize(torch.nn.Module):
    def forward(self, x, n):
        return torch.zeros(n, x.shape[1]) + x.sum(0), torch.arange(n) * 2, x.new_ones(x.shape[0], n)


class AsSliceBounds(torch.nn.Module):
    def forward(self, x, k, start=1):
        return x[:, :k], x[:, start:k], x[:, start::2] * k


class UnderGuard(torch.nn.Module):
    def forward(self, x, t):
        if t > 100:
            return x * 2 + t
        return x - t


class NestedInDict(torch.nn.Module):
    def forward(self, x, opts):
        return F.pad(x, (0, opts["pad"])) * opts["scale"], x[:, : opts["pad"]]


class Returned(torch.nn.Module):
    def forward(self, x, n):
        return x + 1, n, n * x.shape[0]


#: module, example non-tensor arguments, later calls' non-tensor arguments
FORMS = {
    "as_data": (AsData, (5,), [(7,), (0,), (1,), (123456,), (-3,), (True,)]),
    "diffusers_timestep": (AsTensorLikeDiffusers, (981,), [(961,), (0,), (500,), (1,), (-2,)]),
    "as_size": (AsSize, (4,), [(6,), (0,), (1,), (37,)]),
    "slice_bounds": (AsSliceBounds, (3,), [(5,), (0,), (1,), (8,), (40,)]),
    "under_guard": (UnderGuard, (50,), [(51,), (0,), (150,), (101,), (100,), (7,)]),
    "nested_in_dict": (NestedInDict, ({"pad": 2, "scale": 0.5},),
                       [({"pad": 3, "scale": 0.5},), ({"pad": 0, "scale": 0.5},), ({"pad": 3, "scale": 2.0},)]),
    "returned": (Returned, (2,), [(3,), (0,), (99,)]),
}


def _assert_same(got, want):
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype, (got, want)
        # float32 sin/cos of timesteps near 1000: an argument's rounding is ~3e-5 already
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    else:
        assert type(got) is type(want) and got == want, (got, want)


def check_form(form: str, executor: str) -> None:
    """Compile ``FORMS[form]`` at its example, call it with every later value at batch 1-3 and
    compare each answer with eager's; no call may be answered by eager PyTorch."""
    cls, example, calls = FORMS[form]
    torch.manual_seed(0)
    model = cls().eval()
    opt = blade.optimize(model, (torch.randn(2, 8), *example), config=blade.Config(executor=executor))
    for i, extra in enumerate(calls):
        x = torch.randn(1 + i % 3, 8)
        with torch.no_grad():
            _assert_same(opt(x, *extra), model(x, *extra))
        assert opt.eager_calls == 0, f"{form}: call {extra} was answered by eager PyTorch"


@pytest.mark.parametrize("form", list(FORMS))
def test_int_arguments_answer_as_eager_for_every_value(form):
    check_form(form, "reference")  # the Program executor: tests/kernels/test_int_arguments_program.py


def test_a_denoising_loop_with_int_timesteps_compiles_twice(capfd):
    """50 timesteps: the example's variant and one taking the timestep as a symbol serve all of
    them (the old behaviour compiled four variants and answered the rest eagerly)."""
    torch.manual_seed(0)
    model = AsTensorLikeDiffusers().eval()
    opt = blade.optimize(model, (torch.randn(2, 8), 999))
    x = torch.randn(2, 8)
    for t in range(999, -1, -20):
        with torch.no_grad():
            _assert_same(opt(x, t), model(x, t))
    assert len(opt.variants) == 2 and opt.eager_calls == 0
    assert opt.variants[1].signature.sized == (0,)
    assert "its int arguments are compiled as symbols" in capfd.readouterr().err


def test_static_and_dynamic_int_argument_policies():
    x = torch.randn(2, 8)
    static = blade.optimize(AsData().eval(), (x, 5), config=blade.Config(int_arguments="static"))
    for t in (6, 7):
        torch.testing.assert_close(static(x, t), x * t + t // 3)
    assert [v.signature.sized for v in static.variants] == [(), (), ()]

    dynamic = blade.optimize(AsData().eval(), (x, 5), config=blade.Config(int_arguments="dynamic"))
    for t in (6, 7, 0):
        torch.testing.assert_close(dynamic(x, t), x * t + t // 3)
    assert [v.signature.sized for v in dynamic.variants] == [(0,)]

    with pytest.raises(ValueError, match="int_arguments"):
        blade.Config(int_arguments="sometimes")


class LoopCount(torch.nn.Module):
    def forward(self, x, n):
        for _ in range(n):  # export unrolls the loop: n is fixed in each program
            x = x * 2
        return x


def test_an_int_the_program_must_fix_compiles_per_value_after_one_try(capfd):
    opt = blade.optimize(LoopCount().eval(), (torch.randn(2, 3), 2))
    x = torch.randn(2, 3)
    for n in (3, 4):
        torch.testing.assert_close(opt(x, n), x * 2 ** n)
    assert all(v.signature.sized == () for v in opt.variants)
    err = capfd.readouterr().err
    assert err.count("compiled as symbols") == 1  # tried once, then per value


class TensorOrInt(torch.nn.Module):
    def forward(self, a, b):
        if isinstance(a, torch.Tensor):
            return a * 2 + b
        return b * 10 + a


def test_a_tensor_and_an_int_that_swap_places_get_their_own_variant():
    """``f(x, 3)`` and ``f(3, x)`` have the same structure, dtypes and constants; the second call
    used to run the first's program with ``x`` as its first argument (13 answered as 5)."""
    model = TensorOrInt()
    opt = blade.optimize(model, (torch.randn(3), 3))
    ones = torch.ones(3)
    torch.testing.assert_close(opt(ones, 3), model(ones, 3))
    torch.testing.assert_close(opt(3, ones), model(3, ones))
    torch.testing.assert_close(opt(3, ones), torch.full((3,), 13.0))


def test_a_failed_compile_with_int_symbols_falls_back_to_constants_once(monkeypatch, capfd):
    """Where taking the ints as symbols fails (here: forced), the call compiles them as constants,
    and later calls do not try symbols again (no failing compile per value)."""
    from blade.frontend import fx_importer

    real = fx_importer.build_symbol_mapping

    def refuse_int_symbols(shape_env, inputs, ranges, int_arguments=()):
        if int_arguments:
            raise RuntimeError("no int symbols here")
        return real(shape_env, inputs, ranges)

    monkeypatch.setattr(fx_importer, "build_symbol_mapping", refuse_int_symbols)
    x = torch.randn(2, 8)
    opt = blade.optimize(AsData().eval(), (x, 5))
    for t in (6, 7):
        torch.testing.assert_close(opt(x, t), x * t + t // 3)
    err = capfd.readouterr().err
    assert err.count("no int symbols here") == 1 and opt.eager_calls == 0
    assert [v.signature.sized for v in opt.variants] == [(), (), ()]


def test_ints_too_large_for_a_size_are_constants():
    """An int of 2**62 or more (a seed) cannot be a size (its carrier has value + 1 elements, sizes
    are int64): such values compile as constants instead of crashing the call (2**63 - 1 did)."""
    model = AsData()
    opt = blade.optimize(model, (torch.randn(2, 8), 5))
    x = torch.randn(3, 8)
    for t in (7, 2 ** 62, 2 ** 63 - 1, 9):
        _assert_same(opt(x, t), model(x, t))
    assert opt.eager_calls == 0 and [v.signature.sized for v in opt.variants] == [(), (0,), (), ()]


class LargeIntConstants(torch.nn.Module):
    def forward(self, ids):
        big = torch.iinfo(torch.int64).max
        return ids.clamp(max=big - 1) + (2 ** 53 + 1), torch.full_like(ids, big), ids * 0 + (-(2 ** 62) - 3)


def test_integer_constants_past_2_53_are_exact():
    """Integer constants were held as doubles: 2**63 - 1 rounded to 2**63 and wrapped to -2**63,
    2**53 + 1 lost its last bit (a silent wrong answer)."""
    model = LargeIntConstants()
    opt = blade.optimize(model, (torch.randint(0, 9, (2, 3)),))
    ids = torch.randint(-5, 9, (3, 4))
    for got, want in zip(opt(ids), model(ids)):
        assert torch.equal(got, want), (got, want)
    assert opt.eager_calls == 0
    from blade.ir import parse_module, print_module

    text = print_module(opt.report.module)
    assert "value = 9223372036854775807 : i64" in text and print_module(parse_module(text)) == text
