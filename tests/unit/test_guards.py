"""torch.export guards in Blade: exact translation, printing, evaluation, and facts.

The generated test builds random guard expressions with torch's own sympy functions
(``IntTrueDiv``, ``FloorDiv``, ``Mod``, ``PythonMod``, ``Min``/``Max``, ``TruncToInt``, ...),
translates them with ``SymbolMapping`` and checks, on random sizes (odd ones and 1 included),
that Blade's three evaluators (the compiled Python source, the shape-program bytecode, and the
text form printed into the IR and parsed back) agree with torch's evaluation of the same
expression (``xreplace`` of the symbols by integers, which runs each function's ``eval``).
"""

from __future__ import annotations

import random

import pytest
import sympy
import torch
from torch.utils._sympy import functions as tf

from blade.frontend.torch_symbols import SymbolMapping
from blade.shape_program import ShapeProgram, run_python
from blade.shape_syntax import format_condition, parse_condition_text
from blade.symbolic import SymbolTable, evaluate, make_symbol, normalize_condition

TORCH_SYMS = [sympy.Symbol(f"s{n}", integer=True, positive=True) for n in (11, 23, 37)]
BLADE_SYMS = [make_symbol(f"s{i}") for i in range(3)]


def _mapping() -> SymbolMapping:
    return SymbolMapping(SymbolTable(), subs=dict(zip(TORCH_SYMS, BLADE_SYMS)))


# ------------------------------------------------------------------------------ generator
# Expressions are built only where torch defines them: divisors are positive, torch's Mod gets
# non-negative arguments (PythonMod takes any sign), true division takes integers.


def _pos(rng: random.Random, depth: int) -> sympy.Expr:
    """A positive integer expression."""
    choice = rng.randrange(7 if depth > 0 else 2)
    if choice == 0:
        return rng.choice(TORCH_SYMS)
    if choice == 1:
        return sympy.Integer(rng.randint(1, 9))
    a, b = _pos(rng, depth - 1), _pos(rng, depth - 1)
    if choice == 2:
        return a + b
    if choice == 3:
        return a * b
    if choice == 4:
        return tf.Max(a, b) if rng.random() < 0.5 else tf.Min(a, b)
    if choice == 5:
        return tf.CeilDiv(a, b)
    return tf.FloorDiv(a, b) + 1


def _int(rng: random.Random, depth: int) -> sympy.Expr:
    """An integer expression of either sign."""
    choice = rng.randrange(11)
    a, b = _pos(rng, depth), _pos(rng, depth)
    if choice == 0:
        return a - b
    if choice == 1:
        return tf.FloorDiv(a - b, b)
    if choice == 2:
        return tf.Mod(a, b)
    if choice == 3:
        return tf.PythonMod(a - b, b)
    if choice == 4:
        return tf.TruncToInt(tf.IntTrueDiv(a - b, b))
    if choice == 5:
        return tf.FloorToInt(tf.IntTrueDiv(a, b))
    if choice == 6:
        return tf.CeilToInt(tf.FloatTrueDiv(tf.ToFloat(a - b), sympy.Float(rng.choice([2.0, 0.5, 4.0]))))
    if choice == 7:
        return tf.TruncToInt(tf.FloatTrueDiv(tf.ToFloat(b - a), sympy.Float(rng.choice([2.0, 1.5, 0.25]))))
    if choice == 8:
        return tf.Max(a - b, b - 2 * a)
    if choice == 9:
        return tf.RoundToInt(tf.FloatTrueDiv(tf.ToFloat(a - b), sympy.Float(rng.choice([2.0, 4.0, 0.5]))))
    return a


def _real(rng: random.Random, depth: int) -> sympy.Expr:
    """A rational-valued (float in torch) expression."""
    choice = rng.randrange(5)
    if choice == 0:
        return tf.IntTrueDiv(_int(rng, depth), _pos(rng, depth))
    if choice == 4:  # Upsample2D's max(out_h / h, out_w / w): a Max of ratios of sizes (symbolic_min_max)
        f = tf.Max if rng.random() < 0.5 else tf.Min
        return f(tf.IntTrueDiv(_int(rng, depth), _pos(rng, depth)), tf.IntTrueDiv(_pos(rng, depth), _pos(rng, depth)))
    if choice == 1:
        return tf.FloatTrueDiv(tf.ToFloat(_int(rng, depth)), sympy.Float(rng.choice([2.0, 0.5, 3.0, 0.125])))
    if choice == 2:
        return tf.ToFloat(_int(rng, depth)) * sympy.Float(rng.choice([0.5, 1.5, 2.0]))
    return tf.ToFloat(_int(rng, depth))


_RELS = [sympy.Eq, sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge]


def _relation(rng: random.Random) -> sympy.Basic:
    rel = rng.choice(_RELS)
    if rng.random() < 0.5:
        return rel(_real(rng, 1), _real(rng, 1))
    return rel(_int(rng, 2), _int(rng, 1))


def _guard(rng: random.Random) -> sympy.Basic:
    choice = rng.randrange(5)
    if choice < 2:
        return _relation(rng)
    if choice == 2:
        return sympy.Or(_relation(rng), _relation(rng))
    if choice == 3:
        return sympy.And(_relation(rng), sympy.Or(_relation(rng), _relation(rng)))
    return sympy.Not(sympy.Or(_relation(rng), _relation(rng)))


def _torch_value(expr: sympy.Basic, values: list[int]) -> bool:
    out = expr.xreplace({s: sympy.Integer(v) for s, v in zip(TORCH_SYMS, values)})
    assert out in (sympy.true, sympy.false), f"torch did not evaluate {expr} at {values}: {out}"
    return bool(out)


def _sizes(rng: random.Random) -> list[int]:
    return [rng.choice([1, 2, 3, rng.randint(1, 9), rng.randint(10, 200), 2 * rng.randint(1, 50) + 1])
            for _ in TORCH_SYMS]


@pytest.mark.parametrize("seed", range(4))
def test_random_guards_match_torch_evaluation(seed):
    rng = random.Random(seed)
    names = [s.name for s in BLADE_SYMS]
    checked = 0
    for _ in range(30):
        guard = _guard(rng)
        if guard in (sympy.true, sympy.false):
            continue
        cond = normalize_condition(_mapping().convert(guard))
        if cond in (sympy.true, sympy.false):  # decided by symbol positivity; check it holds
            for _ in range(6):
                values = _sizes(rng)
                assert _torch_value(guard, values) == bool(cond), (guard, values)
            continue
        text = format_condition(cond)
        reparsed = parse_condition_text(text)
        program = ShapeProgram([cond], names)
        for _ in range(6):
            values = _sizes(rng)
            expected = _torch_value(guard, values)
            named = dict(zip(names, values))
            got = (bool(evaluate(cond, named)), bool(run_python(program.code, values)[0]),
                   bool(evaluate(reparsed, named)))
            assert got == (expected,) * 3, (
                f"torch guard {guard} at {dict(zip(TORCH_SYMS, values))}: torch says {expected}, "
                f"Blade's {text!r} says {got} (source, shape program, reparsed text)")
            checked += 1
    assert checked > 60


def test_true_division_comparison_is_not_floor_division():
    a, b, c, d = TORCH_SYMS + [sympy.Symbol("s41", integer=True, positive=True)]
    m = SymbolMapping(SymbolTable(), subs={a: BLADE_SYMS[0], b: BLADE_SYMS[1], c: BLADE_SYMS[2],
                                           d: make_symbol("s3")})
    cond = normalize_condition(m.convert(sympy.Gt(tf.IntTrueDiv(a, b), tf.IntTrueDiv(c, d))))
    assert format_condition(cond) == "s0*s3 - s1*s2 > 0"
    # 3/2 > 5/4 although 3 // 2 == 5 // 4
    assert evaluate(cond, {"s0": 3, "s1": 2, "s2": 5, "s3": 4}) == 1
    assert evaluate(cond, {"s0": 5, "s1": 4, "s2": 3, "s3": 2}) == 0


def test_sign_of_a_symbolic_denominator_is_respected():
    a, b = TORCH_SYMS[:2]
    # (a - 3) may be negative: IntTrueDiv(b, a - 3) > 1 cannot be multiplied out blindly
    cond = normalize_condition(_mapping().convert(sympy.Gt(tf.IntTrueDiv(b, a - 3), 1)))
    for va in (1, 2, 4, 5, 9):
        for vb in (1, 2, 3, 7):
            assert evaluate(cond, {"s0": va, "s1": vb}) == (vb / (va - 3) > 1)


def test_conv_disjunction_guard_prints_and_round_trips():
    s0, s1, s2, s3 = BLADE_SYMS + [make_symbol("s3")]
    cond = sympy.Or(sympy.floor(s0 / 2 - s2 / 2) + 3 > 0, s1 - s3 + 3 > 0)
    text = format_condition(normalize_condition(cond))
    assert " or " in text
    back = parse_condition_text(text)
    for v in [(1, 9, 9, 1), (9, 1, 1, 9), (1, 1, 9, 9), (4, 4, 4, 4)]:
        named = dict(zip(["s0", "s1", "s2", "s3"], v))
        exact = bool(cond.xreplace({s: sympy.Integer(x) for s, x in zip((s0, s1, s2, s3), v)}))
        assert bool(evaluate(back, named)) == exact == bool(evaluate(cond, named))


def test_nested_connectives_round_trip():
    s0, s1, s2 = BLADE_SYMS
    cond = sympy.And(sympy.Or(s0 > 3, sympy.Eq(s1, 2)), sympy.Not(sympy.And(s2 > 1, s0 < 9)), s1 < 40)
    text = format_condition(cond)
    back = parse_condition_text(text)
    for v in [(1, 2, 1), (4, 5, 2), (10, 2, 3), (4, 41, 1)]:
        named = dict(zip(["s0", "s1", "s2"], v))
        assert evaluate(back, named) == evaluate(cond, named)
    assert parse_condition_text("(s0 + 1) * 2 > 7 or not (s1 == 2)") == sympy.Or(
        sympy.Gt(2 * s0 + 2, 7), sympy.Ne(s1, 2))


# ------------------------------------------------------------------------------ whole modules

import blade  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _check(m: torch.nn.Module, example: list[tuple], calls: list[list[tuple]]):
    torch.manual_seed(0)
    opt = blade.optimize(m, tuple(torch.randn(*s) for s in example))
    for shapes in [example] + calls:
        xs = [torch.randn(*s) for s in shapes]
        want = m(*xs)
        got = opt(*xs)
        assert got.shape == want.shape, (shapes, got.shape, want.shape)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    return opt


class _ConvUpResidual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, stride=2, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest") + x


def test_even_size_fact_from_export_makes_residual_verify():
    # export proves H and W even (guard Eq(2*((s - 1)//2) + 2, s)); folded into the input dims,
    # the upsampled dim is structurally the input dim and blade.add verifies
    m = _ConvUpResidual().eval()
    opt = _check(m, [(1, 2, 8, 12)], [[(2, 2, 6, 10)], [(1, 2, 2, 34)]])
    table = opt._variants[0].executor.table
    assert [i.origin for i in table.symbols.values()][1:] == ["x.size(2) / 2", "x.size(3) / 2"]
    assert len(opt._variants) == 1


class _TwoInputs(torch.nn.Module):
    def forward(self, x, y):
        return torch.cat([x, y], dim=1) * 2 + torch.cat([y, x], dim=1)


def test_dims_export_unifies_share_one_symbol():
    opt = _check(_TwoInputs().eval(), [(3, 4), (3, 5)], [[(7, 2), (7, 9)]])
    assert len(opt._variants[0].executor.table.symbols) == 3  # batch shared, two widths


class _BatchBranch(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] == 1:
            return x.sum(0) + 1
        return x.mean(0)


def test_branch_on_a_size_is_a_fact_and_a_guard():
    m = _BatchBranch().eval()
    opt = _check(m, [(1, 6)], [[(4, 6)], [(1, 3)], [(5, 2)]])
    batch_one, other = (v.executor for v in opt._variants)
    assert batch_one.input_dims == [("x", (1, make_symbol("s0")))]  # Eq(s0, 1): the dim is 1
    assert [g.cond for g in other.table.guards] == [sympy.Ne(make_symbol("s0"), 1)]


@pytest.mark.parametrize("dims", [None, 1, (1, 3)])
def test_squeeze_compiled_without_ones_then_called_with_ones(dims):
    class Squeeze(torch.nn.Module):
        def forward(self, x):
            return (x.squeeze() if dims is None else x.squeeze(dims)) * 2

    m = Squeeze().eval()
    opt = _check(m, [(5, 3, 5, 2)], [[(5, 1, 5, 1)], [(5, 1, 5, 2)], [(4, 3, 2, 2)]])
    assert any(g.cond == sympy.Ne(make_symbol("s1"), 1) for g in opt._variants[0].executor.table.guards)


def test_squeeze_compiled_with_ones_then_called_without():
    class Squeeze(torch.nn.Module):
        def forward(self, x):
            return x.squeeze() + 1

    _check(Squeeze().eval(), [(5, 1, 5, 1)], [[(5, 3, 5, 2)], [(1, 1, 1, 1)], [(2, 1, 7, 1)]])


def test_broadcast_and_expand_with_size_one_calls():
    class Broadcast(torch.nn.Module):
        def forward(self, x, y):
            return x + y * 2

    class Expand(torch.nn.Module):
        def forward(self, x, y):
            return x.expand_as(y) - y

    _check(Broadcast().eval(), [(4, 5), (4, 5)], [[(1, 5), (4, 5)], [(4, 1), (4, 5)], [(3, 5), (3, 5)]])
    _check(Expand().eval(), [(1, 5), (4, 5)], [[(1, 5), (1, 5)], [(1, 5), (6, 5)]])


class _UpsampleToSize(torch.nn.Module):
    """diffusers' Upsample2D with ``output_size`` (the UNet's path for latents that are not a
    multiple of 8): the largest of the two scale ratios, compared in true division, chooses a
    ``contiguous()`` call. Read as floor division (``89 // 45 > 65 // 33`` is false), the guard
    rejected the very call its variant was compiled for (the 65x89 latent on the GPU)."""

    def __init__(self, channels: int = 2):
        super().__init__()
        self.down = torch.nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        h = self.down(x)
        output_size = x.shape[-2:]
        scale = max([f / s for f, s in zip(output_size, h.shape[-2:])])
        if h.numel() * scale > 2 ** 31:
            h = h.contiguous()
        return F.interpolate(h, size=output_size, mode="nearest") + x


def test_max_of_size_ratios_in_model_code_is_not_a_guard():
    """``max(out_h / h, out_w / w)`` in the model's code (diffusers' Upsample2D) is captured as one
    symbolic Max, not as a guard on which ratio is larger: sizes whose ratio order differs share
    one variant (on the GPU the UNet shape fuzz compiled 8 guard classes for it)."""
    m = _UpsampleToSize().eval()
    opt = blade.optimize(m, (torch.randn(2, 2, 65, 89),))
    for shape in [(3, 2, 65, 89), (2, 2, 64, 63), (1, 2, 33, 45), (2, 2, 30, 61), (2, 2, 61, 30)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(opt(x), m(x))
    assert len(opt.variants) == 1 and opt.eager_calls == 0
    assert max([3, 5]) == 5 and min(i for i in (4, 2)) == 2 and max(1.5, 2) == 2  # builtins restored


def test_odd_latent_lands_in_a_variant_that_accepts_it():
    m = _UpsampleToSize().eval()
    opt = _check(m, [(2, 2, 65, 89)], [[(3, 2, 65, 89)], [(1, 2, 33, 45)]])
    assert len(opt._variants) == 1
    guards = [format_condition(g.cond) for g in opt._variants[0].executor.table.guards]
    # the ratio test against 2**31, exact (true division, never floor division); no guard on
    # which ratio is larger (test_max_of_size_ratios_in_model_code_is_not_a_guard)
    assert any("max(" in g and "2147483648" in g for g in guards), guards
    opt = _check(m, [(1, 2, 13, 7)], [[(2, 2, 65, 89)], [(1, 2, 9, 5)]])
    assert len(opt._variants) == 1


def test_residue_classes_are_proved_not_sampled():
    from blade.frontend.torch_symbols import _as_residue_class
    from blade.symbolic import bind_symbols

    s = TORCH_SYMS[0]
    assert _as_residue_class(sympy.Eq(2 * tf.FloorDiv(s - 1, 2) + 2, s), s) == (2, 0)  # even
    assert _as_residue_class(sympy.Eq(2 * tf.FloorDiv(s, 2) + 1, s), s) == (2, 1)  # odd
    assert _as_residue_class(sympy.Eq(tf.Mod(s, 8), 3), s) == (8, 3)
    assert _as_residue_class(sympy.Eq(tf.Mod(s, 4), tf.Mod(s, 2)), s) is None  # two classes mod 4
    assert _as_residue_class(sympy.Eq(tf.FloorDiv(s, 3), 2), s) is None  # a range, not a class
    # an odd input dim is 2*t - 1: bound from the size, and a mismatch names the class
    t = make_symbol("s0")
    assert bind_symbols([("x", (2 * t - 1, sympy.Integer(3)))], [(9, 3)]) == {"s0": 5}
    with pytest.raises(Exception, match="1 modulo 2"):
        bind_symbols([("x", (2 * t - 1,))], [(8,)])


def test_guards_inside_the_attention_op_are_suppressed_in_export_and_retrace(monkeypatch):
    # On CPU, SDPA's backend choice records no guard; the CUDA one records ``batch != 1``. The
    # mechanism is checked with an op whose fake propagation does record one (narrow: s >= 3)
    # standing in for the attention op.
    import blade.frontend.export as bexport
    from blade.config import Config
    from blade.frontend.fx_importer import _fake_shape_env

    class Narrow(torch.nn.Module):
        def forward(self, x):
            return torch.ops.aten.narrow.default(x, 0, 0, 3) + 1

    x = torch.randn(9, 5)
    ep = bexport.export_module(Narrow(), (x,), {}, Config())
    assert [str(g.expr) for g in _fake_shape_env(ep).guards]  # recorded without suppression
    monkeypatch.setattr(bexport, "_SDPA_OP", torch.ops.aten.narrow.default)
    ep = bexport.export_module(Narrow(), (x,), {}, Config())
    assert not _fake_shape_env(ep).guards
    ep = bexport.decompose_unsupported(ep, set(), force=True)
    assert not _fake_shape_env(ep).guards


def test_a_variant_that_rejects_its_own_call_answers_eagerly_once_compiled(monkeypatch, capsys):
    from blade.module import BladeModule, Variant

    m = _BatchBranch().eval()
    opt = blade.optimize(m, (torch.randn(1, 6),))
    compiles = []
    real_compile = BladeModule.compile_variant
    monkeypatch.setattr(BladeModule, "compile_variant",
                        lambda self, a, k, **kw: compiles.append(1) or real_compile(self, a, k, **kw))
    monkeypatch.setattr(Variant, "accepts", lambda self, t, c: (None, "forced rejection"))
    x = torch.randn(4, 6)
    for _ in range(2):
        torch.testing.assert_close(opt(x), m(x))
    assert len(compiles) == 1  # the second call did not compile again
    assert "INTERNAL ERROR" in capsys.readouterr().err


def test_a_dim_equal_to_an_expression_of_another_input():
    class SliceAdd(torch.nn.Module):
        def forward(self, x, y):
            return x[:, :-1] + y  # export: y.size(1) == x.size(1) - 1

    opt = _check(SliceAdd().eval(), [(2, 5), (2, 4)], [[(3, 9), (3, 8)], [(1, 2), (1, 1)]])
    s0, s1 = make_symbol("s0"), make_symbol("s1")
    assert opt._variants[0].executor.input_dims == [("x", (s0, s1 + 1)), ("y", (s0, s1))]
    assert len(opt._variants) == 1


def test_size_one_example_dim_that_export_dropped_is_exported_static():
    # normalized_shape (1, 2, 3) makes x.size(0) == 1 a fact eager checks; size-oblivious export
    # keeps the dim symbolic without relating it to the weight's, which failed verification
    class LayerNorm(torch.nn.Module):
        def forward(self, x, w, b):
            return F.layer_norm(x, (1, 2, 3), w, b, 0.5)

    opt = _check(LayerNorm().eval(), [(1, 2, 3)] * 3, [])
    report = opt._variants[0].program.report
    # correct either way: the 1 taken from export's guards (the dim's range is [1, 1]), or
    # exported again with the 1 static, or layer_norm alone in eager PyTorch
    assert (any("size-1 dims static" in n for n in report.notes) or "x.size(0) in [1, 1]" in report.format()
            or any("layer_norm" in u.target for u in report.unsupported)), report.format()


def test_exact_quotients_evaluate_as_one_division_everywhere():
    s0, s1 = make_symbol("s0"), make_symbol("s1")
    dim = s0 / 2 + s1 / 2  # torch's CleanDiv of an even sum: (3 + 5) / 2, not 3 // 2 + 5 // 2
    program = ShapeProgram([dim, sympy.Gt(s0 / 3, s1 / 5)], ["s0", "s1"])
    assert run_python(program.code, [3, 5]) == [4, 0]
    assert evaluate(dim, {"s0": 3, "s1": 5}) == 4


class LatentAndImage(torch.nn.Module):
    """ControlNet's shape relation: a conditioning image 8x the latent, brought down by three
    stride-2 convs and added to the latent path. torch.export states latent == (image-1)//8 + 1
    as a guard it cannot solve; Blade must take it as a definition, not fail verification."""

    def __init__(self):
        super().__init__()
        self.down = torch.nn.Sequential(*[torch.nn.Conv2d(2, 2, 3, stride=2, padding=1) for _ in range(3)])
        self.proj = torch.nn.Conv2d(4, 2, 1)

    def forward(self, latent, image):
        return self.proj(latent) + self.down(image)


def test_equality_guard_between_inputs_defines_a_symbol():
    m = LatentAndImage().eval()
    opt = blade.optimize(m, (torch.randn(2, 4, 8, 6), torch.randn(2, 2, 64, 48)),
                         config=blade.Config(fallback="strict"))
    assert any("one symbol fewer" in n for n in opt.report.notes), opt.report.notes
    for b, h, w in [(1, 5, 7), (3, 9, 4)]:
        x, img = torch.randn(b, 4, h, w), torch.randn(b, 2, 8 * h, 8 * w)
        torch.testing.assert_close(opt(x, img), m(x, img), atol=1e-5, rtol=1e-5)
    assert len(opt.variants) == 1


class ChunkBroadcast(torch.nn.Module):
    """With 2 channels, x.chunk(2, 1)[1] has 1 channel and broadcasts against x: size-oblivious
    export assumes a computed size is not 1 and fails (found by the network generator, seed 2014)."""

    def forward(self, x):
        return x.chunk(2, dim=1)[1] * x


def test_a_computed_size_of_one_that_broadcasts_is_captured_exactly():
    m = ChunkBroadcast().eval()
    opt = blade.optimize(m, (torch.randn(2, 2, 13, 11),), config=blade.Config(fallback="strict"))
    for shape in [(1, 2, 3, 13), (3, 2, 17, 6)]:
        x = torch.randn(shape)
        torch.testing.assert_close(opt(x), m(x))
    x = torch.randn(2, 4, 5, 5)  # 4 channels: halves of 2 do not broadcast against 4, as in eager
    with pytest.raises(Exception):
        m(x)


def test_convolution_shape_checks_stay_guards():
    """Guards from a convolution's memory-format heuristic are layout-only and dropped; its shape
    checks (the padded input at least the kernel) are not, though both run under the same fake
    convolution: a 4x4 input to a 5x5 kernel is refused, as eager refuses it."""
    m = torch.nn.Conv2d(3, 4, kernel_size=5).eval()
    opt = blade.optimize(m, (torch.randn(1, 3, 16, 16),))
    v = opt.variants[0]
    assert v.accepts([torch.randn(1, 3, 4, 4)], v.signature)[0] is None
    assert v.accepts([torch.randn(2, 3, 9, 7)], v.signature)[0] is not None
