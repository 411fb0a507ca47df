"""``Config(executor="program")``: a ``BladeModule`` whose variants run as lowered Programs
(``blade/executors/program_backed.py``), here with the generated kernels under Triton's CPU
interpreter and the torch provider; on the GPU, ``tests/gpu/test_gpu_program.py`` runs the same
through the C++ cubin launcher."""

import torch
import torch.nn.functional as F

import blade
from blade.executors.program_backed import ProgramBackedExecutor
from tests.unit import test_shared_code as shared


class Block(torch.nn.Module):
    """Convolution (NHWC inside Blade), GroupNorm + SiLU, a residual, self-attention over the
    pixels and a projection: fused groups, library calls and views in one Program."""

    def __init__(self, c=8):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.norm = torch.nn.GroupNorm(2, c)
        self.qkv = torch.nn.Linear(c, 3 * c)
        self.proj = torch.nn.Linear(c, c)

    def forward(self, x):
        h = F.silu(self.norm(self.conv(x))) + x
        b, c, hh, ww = h.shape
        t = h.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        a = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return self.proj(a).transpose(1, 2).reshape(b, c, hh, ww) + h


def test_module_runs_its_variants_as_programs():
    torch.manual_seed(0)
    m = Block().eval()
    opt = blade.optimize(m, (torch.randn(2, 8, 6, 6),), config=blade.Config(executor="program"))
    assert isinstance(opt.variants[0].executor, ProgramBackedExecutor)
    assert any(s.kind == "launch" for s in opt.variants[0].executor.program.steps)
    for shape in [(2, 8, 6, 6), (1, 8, 5, 7), (3, 8, 9, 4), (2, 8, 6, 6)]:
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(opt(x), m(x), rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # weights stay the user's: an in-place update is seen, nothing recompiles
        m.conv.weight.mul_(-2)
        m.qkv.bias.add_(0.5)
        x = torch.randn(1, 8, 5, 7)
        torch.testing.assert_close(opt(x), m(x), rtol=1e-4, atol=1e-4)
    assert len(opt.variants) == 1 and opt.eager_calls == 0


def test_guard_class_with_the_same_program_gets_its_own_program():
    m = shared.RatioDecides()
    opt = blade.optimize(m, (torch.randn(2, 3, 2, 9),), config=blade.Config(executor="program", max_variants=1))
    for shape in [(2, 3, 2, 9), (1, 3, 40, 2), (3, 5, 7, 11)]:
        x = torch.randn(shape)
        torch.testing.assert_close(opt(x), m(x))
    assert len(opt.variants) == 2 and shared._codes(opt) == 1
    first, second = (v.executor for v in opt.variants)
    assert isinstance(second, ProgramBackedExecutor) and second.program is not first.program
    assert opt.eager_calls == 0


def test_float16_program_of_a_float32_model_casts_weights_once():
    """enable_fp16 on a float32 model: each weight's cast is a launch that reads only weights; the
    Program executor runs it once into kept tensors and again only after an in-place update."""
    torch.manual_seed(0)
    m = Block().eval()
    opt = blade.optimize(m, (torch.randn(2, 8, 6, 6),), config=blade.Config(executor="program", enable_fp16=True,
                                                                         prepare_weights=True))
    runner = opt.variants[0].executor.runner
    assert runner._prepared_steps, "no weight-only launch in the Program"

    def check(shape):
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(opt(x), m(x), rtol=2e-2, atol=2e-2)

    check((2, 8, 6, 6))
    kept = {k: [t for t in e[3]] for k, e in runner._prepared_outs.items()}
    assert len(kept) == len(runner._prepared_steps)
    check((1, 8, 5, 7))
    assert all(runner._prepared_outs[k][3][i] is t for k, ts in kept.items() for i, t in enumerate(ts))
    with torch.no_grad():
        m.conv.weight.mul_(-2)
        m.proj.weight.mul_(0.5)
    check((3, 8, 9, 4))  # refreshed in place, seen by this call
    assert all(runner._prepared_outs[k][3][i] is t for k, ts in kept.items() for i, t in enumerate(ts))
    assert opt.eager_calls == 0


def test_an_empty_batch_through_two_launch_group_norm_compiles(capfd):
    """GroupNorm over groups too large for one program's registers runs as two launches (statistics
    in chunks, then apply) whose chunk count the shape program divides by the batch: a batch of 0
    made that a division by zero and the empty call ran eagerly (session 18's note)."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.GroupNorm(32, 512), torch.nn.SiLU()).eval()
    x = torch.randn(2, 512, 32, 32)
    opt = blade.optimize(m, (x,), config=blade.Config(executor="program"))
    assert any(row.get("schedule") == "two_launch" for s in opt.variants[0].executor.program.steps
               for row in s.table), "not the two-launch GroupNorm"
    capfd.readouterr()
    with torch.no_grad():
        empty = torch.randn(0, 512, 32, 32)
        assert opt(empty).shape == m(empty).shape
        assert len(opt.variants) == 2, "the empty batch did not get its own variant"
        torch.testing.assert_close(opt(x), m(x), rtol=1e-4, atol=1e-4)
    assert "failed" not in capfd.readouterr().err


class _NormAfterTransposedConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.norm = torch.nn.InstanceNorm2d(6, affine=True)

    def forward(self, x):
        return F.leaky_relu(self.norm(self.up(x)), 0.1)


def test_a_call_in_grad_mode():
    """Called without ``torch.no_grad`` (parameters requiring grad): the torch provider's library
    results (computed from the weights, so carrying autograd history) are copied into views of one
    arena, which autograd refused ("a leaf Variable that requires grad is being used in an in-place
    operation") and every call was answered eagerly. A Program runs without autograd."""
    torch.manual_seed(0)
    m = _NormAfterTransposedConv().eval()
    assert all(p.requires_grad for p in m.parameters())
    opt = blade.optimize(m, (torch.randn(2, 4, 5, 6),), config=blade.Config(executor="program"))
    for shape in [(2, 4, 5, 6), (1, 4, 3, 3), (3, 4, 7, 2)]:
        x = torch.randn(*shape)
        got, want = opt(x), m(x)
        torch.testing.assert_close(got, want.detach(), atol=1e-4, rtol=1e-4)
    assert opt.eager_calls == 0
