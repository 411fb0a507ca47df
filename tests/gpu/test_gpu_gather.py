"""GPU tests (skipped without CUDA): row gathers in generated kernels (``blade.gather_rows``:
embeddings, the pooled row, negative and int32 indices, a strided table) run as cubins from the C++
step loop with CUDA graphs off, and inside CUDA graphs, matching eager at several shapes."""

import pytest
import torch

import blade
from tests.kernels.test_gather_kernels import Picks, TextEmbeddings

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("graphs", [False, True])
def test_text_embeddings_on_the_gpu(graphs):
    torch.manual_seed(0)
    m = TextEmbeddings(vocab=1000, positions=80, width=64, dtype=torch.float16, types=True).cuda().eval()
    opt = blade.optimize(m, [torch.randint(0, 1000, (2, 11), device="cuda")],
                         config=blade.Config(cuda_graphs=graphs))
    with torch.no_grad():
        for shape in [(2, 11), (1, 1), (3, 77), (1, 7)]:
            for _ in range(3):  # the third call of a shape runs the C++ step list (or a graph replay)
                ids = torch.randint(0, 1000, shape, device="cuda")
                got, want = opt(ids), m(ids)
                for g, w in zip(got, want):
                    assert g.dtype == w.dtype and g.shape == w.shape
                    torch.testing.assert_close(g.float(), w.float(), atol=2e-2, rtol=1e-2)
    assert opt.eager_calls == 0
    runner = opt.variants[0].executor.runner
    assert not [s for s in runner.program.steps if s.kind == "library_call" and s.op in ("embedding", "index")]
    if not graphs:
        assert runner.native_stats["calls"] > 0, runner.native_stats


def test_picks_on_the_gpu():
    torch.manual_seed(1)
    m = Picks().cuda()

    def args(n, c, b, l):
        x = torch.randn(n + 2, c, 5, device="cuda")
        rows = torch.randint(-(n + 2), n + 2, (n,), device="cuda")
        cols = torch.randint(-c, c, (n,), device="cuda")
        return x, rows, cols, torch.randint(0, 16, (b, l), device="cuda")

    opt = blade.optimize(m, args(4, 6, 2, 3), config=blade.Config(cuda_graphs=False))
    with torch.no_grad():
        for sizes in [(4, 6, 2, 3), (1, 1, 1, 1), (9, 3, 3, 17)]:
            for _ in range(3):
                a = args(*sizes)
                for g, w in zip(opt(*a), m(*a)):
                    torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    assert opt.eager_calls == 0
