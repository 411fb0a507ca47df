"""``Config.precompile_guard_classes``: guard classes next to the example's compiled in the
background (``compiler/speculate.py``), so a later call there does not wait for a capture."""

import sympy
import torch

import blade
from blade.speculate import candidates, resize_like


class Branches(torch.nn.Module):
    """Two size branches (odd length, batch 1): four guard classes."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x, y):
        h = self.lin(x)
        if x.shape[1] % 2:
            h = h * 2
        if x.shape[0] == 1:
            h = h + 1
        return h + y.sum()


def test_neighbouring_guard_classes_are_ready_before_their_first_call(capfd):
    model = Branches().eval()
    opt = blade.optimize(model, (torch.randn(2, 6, 8), torch.randn(2, 3)),
                         config=blade.Config(precompile_guard_classes=4))
    assert opt.wait_precompiled(timeout=120)
    err = capfd.readouterr().err
    assert len(opt.variants) == 4 and err.count("precompiled in the background") == 3, err
    for b, n in [(1, 5), (3, 7), (1, 4), (2, 9), (2, 6)]:
        x, y = torch.randn(b, n, 8), torch.randn(b + 1, 3)
        torch.testing.assert_close(opt(x, y), model(x, y))
    assert "compiling variant" not in capfd.readouterr().err
    assert len(opt.variants) == 4 and opt.eager_calls == 0


def test_the_budget_bounds_the_background_compiles():
    opt = blade.optimize(Branches().eval(), (torch.randn(2, 6, 8), torch.randn(2, 3)),
                         config=blade.Config(precompile_guard_classes=1))
    assert opt.wait_precompiled(timeout=120)
    assert len(opt.variants) == 2
    off = blade.optimize(Branches().eval(), (torch.randn(2, 6, 8), torch.randn(2, 3)))
    assert off.wait_precompiled(timeout=0) and len(off.variants) == 1


class Heads(torch.nn.Module):
    """Only lengths that are multiples of 4 are valid: every neighbour's capture fails."""

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1] // 4, 4).softmax(-1).reshape(x.shape)


def test_neighbours_the_model_rejects_are_dropped_quietly():
    model = Heads()
    opt = blade.optimize(model, (torch.randn(2, 16),), config=blade.Config(precompile_guard_classes=2))
    assert opt.wait_precompiled(timeout=120)
    assert len(opt.variants) == 1 and not opt._eager_signatures
    x = torch.randn(3, 20)
    torch.testing.assert_close(opt(x), model(x))
    assert opt.eager_calls == 0


def test_candidates_move_related_dims_together():
    """A latent ``8*s1`` and a ControlNet image ``64*s1`` move together (the image follows the
    latent); a dim of two symbols and a static dim stay; moves no class accepts come first as
    single moves, then in pairs."""
    s0, s1, s2 = sympy.symbols("s0 s1 s2", integer=True, positive=True)
    dims = [(s0, 4, 8 * s1, 8 * s2), (s0, 3, 64 * s1, 64 * s2), (s0, s1 * s2)]
    example = [(2, 4, 64, 64), (2, 3, 512, 512), (2, 64)]

    def accepted(shapes):  # the class of the example: latents that are multiples of 8
        return shapes[0][2] % 8 == 0 and shapes[0][3] % 8 == 0

    found = list(candidates(dims, example, accepted, reach=2))
    assert found[0] == ("s1: 64 -> 65", [(2, 4, 65, 64), (2, 3, 520, 512), (2, 64)])
    assert all(s[1][2] == 8 * s[0][2] and s[1][3] == 8 * s[0][3] and s[2] == (s[0][0], 64) for _, s in found)
    assert not any(s[0][0] != 2 for _, s in found)  # batch moves stay in the class
    pairs = [s for what, s in found if "," in what]
    assert pairs and all(s[0][2] != 64 and s[0][3] != 64 for s in pairs)


def test_resized_inputs_keep_the_example_values():
    ids = torch.tensor([[5, 7, 9]])
    grown = resize_like(ids, (2, 4))
    assert grown.shape == (2, 4) and set(grown.flatten().tolist()) <= {5, 7, 9}
    assert resize_like(ids, (1, 3)) is ids
