"""Call patterns found by ``benchmarks/probe_heldout.py`` that broke Blade, each pinned here in
the smallest module that shows it: compiled once, served at other shapes like eager, with no
eager answer."""

import sympy
import torch
import torch.nn.functional as F

import blade
from blade.dialects.program import encode_call
from blade.symbolic import make_symbol


def serve(model, example, others):
    opt = blade.optimize(model, example)
    for args in [example] + others:
        with torch.no_grad():
            torch.testing.assert_close(opt(*args), model(*args), rtol=1e-5, atol=1e-6)
    assert opt.eager_calls == 0
    return opt


def test_integer_size_arguments_of_a_fallback_stay_integers():
    """Swin pads its feature map to a multiple of the window, ``(-s) mod min(h, w)``; sympy does
    not know that expression is an integer, so the pad amounts reached aten.pad as floats and
    every call was answered in eager PyTorch."""
    s1, s2 = make_symbol("s1"), make_symbol("s2")
    half1, half2 = sympy.floor(s1 / 2 + sympy.Rational(1, 2)), sympy.floor(s2 / 2 + sympy.Rational(1, 2))
    pad = sympy.Mod(-half2, sympy.Min(half1, half2))
    assert pad.is_integer is not True  # what sympy says: the case the encoder must handle
    assert '{"d": ' in encode_call([pad], {})
    assert '"f"' in encode_call([s1 / 3], {})  # a true float from sizes stays a float


class WindowPad(torch.nn.Module):
    """Swin's stage after patch merging: the window is the smaller side when the map is small."""

    def forward(self, x):
        y = x[:, ::2, ::2]  # (h + 1) // 2 rows, (w + 1) // 2 columns
        win = min(y.shape[1], y.shape[2])
        pad_h, pad_w = (-y.shape[1]) % win, (-y.shape[2]) % win
        return F.pad(y, (0, 0, 0, pad_w, 0, pad_h)) * 2


def test_window_pad_with_symbolic_amounts():
    serve(WindowPad(), (torch.randn(2, 6, 9, 4),), [(torch.randn(1, 5, 13, 4),), (torch.randn(3, 7, 7, 4),)])


class Unpatchify(torch.nn.Module):
    """Diffusers' DiT: patches to tokens, then ``height = width = int(tokens ** 0.5)``."""

    def forward(self, x):
        t = x.flatten(1, 2)
        side = int(t.shape[1] ** 0.5)
        return t.reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2) + 1


def test_int_of_a_square_root_of_a_size_is_guarded_exactly():
    """export specialises ``int(n ** 0.5)`` with the guard ``Eq(TruncToInt(FloatPow(n, 0.5)), 8)``,
    which had no integer form: the whole model ran in eager PyTorch. It is ``64 <= n < 81``."""
    opt = serve(Unpatchify(), (torch.randn(2, 8, 8, 3),), [(torch.randn(1, 8, 8, 3),), (torch.randn(3, 4, 16, 3),)])
    assert len(opt.variants) == 1
    x = torch.randn(3, 5, 5, 3)  # another side: another guard class, compiled, not answered eagerly
    with torch.no_grad():
        torch.testing.assert_close(opt(x), Unpatchify()(x))
    assert opt.eager_calls == 0 and len(opt.variants) == 2


class NativeResolutionPositions(torch.nn.Module):
    """CLIP/DeiT with ``interpolate_pos_encoding``: at the native resolution the 17-row position
    table (16 patches and a class token) is added as it is, elsewhere it would be resized."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.pos = torch.nn.Parameter(torch.randn(1, 17, 8))

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1)
        if t.shape[1] == self.pos.shape[1]:
            return t + self.pos
        return t * 2


def test_a_size_pinned_by_a_guard_broadcasts_against_a_constant():
    """export guards ``(s1 floordiv 4)**2 + 1 == 17``; the tokens dim is that expression and the
    table's is 17, so the add could not be verified and ran in eager PyTorch. In the guard class
    the expression is 17 (and s1 in [16, 19])."""
    opt = serve(NativeResolutionPositions(), (torch.randn(2, 3, 16, 16),),
                [(torch.randn(1, 3, 16, 16),), (torch.randn(3, 3, 19, 19),)])
    assert len(opt.variants) == 1
    assert not opt.variants[0].program.report.unsupported, opt.report.format()


class PinnedConvOutput(torch.nn.Module):
    """DiT at its native size: a stride-2 patch conv whose output side a guard pins to 8."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(4, 8, 2, stride=2)
        self.pos = torch.nn.Parameter(torch.randn(1, 8, 8, 8))

    def forward(self, x):
        h = self.patch(x)
        if h.shape[2] == 8 and h.shape[3] == 8:
            return h + self.pos
        return h


def test_an_op_result_pinned_by_the_symbol_ranges_verifies():
    """The guard ``s1 floordiv 2 == 8`` makes s1 in [16, 17]; torch records the conv's output as
    8 while the conv's shape rule says ``s1 floordiv 2``: equal for every size in the range."""
    opt = serve(PinnedConvOutput(), (torch.randn(2, 4, 16, 16),),
                [(torch.randn(1, 4, 17, 16),), (torch.randn(3, 4, 16, 17),)])
    assert len(opt.variants) == 1
    assert not opt.variants[0].program.report.unsupported, opt.report.format()


class Activations(torch.nn.Module):
    def forward(self, x):
        return (F.relu6(x), F.leaky_relu(x, 0.1), F.elu(x), F.hardtanh(x, -0.5, 2.0), F.logsigmoid(x),
                F.prelu(x, torch.tensor([0.2])))


def test_activations_without_a_default_decomposition_are_compiled():
    """ReLU6 (MobileNetV2's), LeakyReLU, ELU are core ATen ops with no default decomposition, and
    F.logsigmoid / F.prelu decompose to ops that have one only in a second round: each ran in
    eager PyTorch."""
    x = torch.randn(2, 9, 8) * 3
    opt = serve(Activations(), (x,), [(torch.randn(1, 5, 8) * 3,), (torch.randn(3, 7, 8) * 3,)])
    assert not opt.variants[0].program.report.unsupported, opt.report.format()


class Attend(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_attention_of_separate_query_key_value_inputs():
    """torch records SDPA's output head dim as the query's while Blade's rule (and eager's math)
    says the value's; with q, k, v separate inputs those are different symbols and attention ran
    in eager PyTorch. A value head dim unlike the query's takes another variant."""
    def qkv(b, n, m, e=8, ev=8):
        return torch.randn(b, 2, n, e), torch.randn(b, 2, m, e), torch.randn(b, 2, m, ev)

    opt = serve(Attend(), qkv(2, 16, 19), [qkv(1, 9, 3), qkv(3, 13, 13)])
    assert len(opt.variants) == 1
    assert not opt.variants[0].program.report.unsupported, opt.report.format()
    args = qkv(1, 5, 7, ev=16)
    with torch.no_grad():
        torch.testing.assert_close(opt(*args), Attend()(*args))
    assert opt.eager_calls == 0
