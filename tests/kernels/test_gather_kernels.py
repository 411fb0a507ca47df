"""Row gathers inside generated kernels (``fuse-stitch`` turns an ``embedding``, or an ``index``
by one integer tensor per dim but the last, into ``blade.gather_rows``; ``codegen/emit.py`` loads
each row's index once and the row from the table through its strides): token and position
embeddings with the LayerNorm after them (BERT, CLIP, GPT-2), the pooled row of a text encoder
(``x[arange(b), ids.argmax(-1)]``), negative indices, int32 indices, tables that are strided views
and float16 tables, at dynamic sizes including 1, odd sizes and batch 1 and 3, run by the kernel
executor and as Programs (the kernels under Triton's CPU interpreter) and compared with eager. No
gather is left as a library call (each was a Python step of the C++ step loop on the GPU)."""

import pytest
import torch

import blade


class TextEmbeddings(torch.nn.Module):
    """Token + position (+ token type) embeddings, a LayerNorm, and the pooled row at each
    sequence's largest id (CLIP's pooled output)."""

    def __init__(self, vocab=50, positions=40, width=24, dtype=torch.float32, types=False):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, width, dtype=dtype)
        self.pos = torch.nn.Embedding(positions, width, dtype=dtype)
        self.typ = torch.nn.Embedding(2, width, dtype=dtype) if types else None
        self.ln = torch.nn.LayerNorm(width, dtype=dtype)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        if self.typ is not None:
            h = h + self.typ(torch.zeros_like(ids))
        h = self.ln(h)
        return h, h[torch.arange(h.shape[0], device=h.device), ids.argmax(-1)]


class Picks(torch.nn.Module):
    """``x[rows, cols]`` with negative indices (counted from the end), an embedding read through
    int32 ids, and a gather from a transposed (strided) table, each followed by a pointwise op."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(16, 7))

    def forward(self, x, rows, cols, ids):
        picked = x[rows, cols] * 2.0 + 1.0                 # [n, c]; rows and cols may be negative
        emb = torch.nn.functional.embedding(ids.to(torch.int32), self.table)  # [b, l, 7]
        strided = x.transpose(1, 2)[rows, cols % 5]        # a table whose last dim is not packed
        return picked, torch.relu(emb), strided - 0.5


def _library_gathers(opt):
    """Embeddings and indexes left outside kernels: library calls of a Program, ops of the kernel
    executor's IR."""
    if hasattr(opt.variants[0].executor, "program"):
        return [s for v in opt.variants for s in v.executor.program.steps
                if s.kind == "library_call" and s.op in ("embedding", "index", "gather_rows")]
    return [op for op in opt.report.module.walk()
            if op.name in ("blade.embedding", "blade.index", "blade.gather_rows")
            and op.parent_op().name != "blade.fused"]


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_text_embeddings(dtype, executor):
    torch.manual_seed(0)
    m = TextEmbeddings(dtype=dtype, types=dtype == torch.float32).eval()
    opt = blade.optimize(m, [torch.randint(0, 50, (2, 11))], config=blade.Config(executor=executor))
    for shape in [(2, 11), (1, 1), (3, 40), (1, 7), (3, 13)]:
        ids = torch.randint(0, 50, shape)
        with torch.no_grad():
            got, want = opt(ids), m(ids)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            torch.testing.assert_close(g.float(), w.float(), atol=1e-5 if dtype == torch.float32 else 1e-2, rtol=1e-3)
    assert opt.eager_calls == 0
    assert not _library_gathers(opt)


def test_embeddings_and_layer_norm_are_one_kernel():
    m = TextEmbeddings().eval()
    opt = blade.optimize(m, [torch.randint(0, 50, (2, 11))], config=blade.Config(executor="kernels"))
    labels = [op.p("ops") for op in opt.report.module.walk() if op.name == "blade.fused"]
    assert "gather_rows+add+layer_norm" in labels, labels


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_negative_int32_and_strided_picks(executor):
    torch.manual_seed(1)
    m = Picks()

    def args(n, c, b, l):
        x = torch.randn(n + 2, c, 5)
        rows = torch.randint(-(n + 2), n + 2, (n,))
        cols = torch.randint(-c, c, (n,))
        return x, rows, cols, torch.randint(0, 16, (b, l))

    opt = blade.optimize(m, args(4, 6, 2, 3), config=blade.Config(executor=executor))
    for sizes in [(4, 6, 2, 3), (1, 1, 1, 1), (9, 3, 3, 17), (5, 13, 1, 2)]:
        a = args(*sizes)
        with torch.no_grad():
            got, want = opt(*a), m(*a)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-6)
    assert opt.eager_calls == 0
    assert not _library_gathers(opt)


def test_an_index_out_of_range_is_an_assertion_with_bounds_check():
    """An index outside the table reads zeros in a plain kernel (it cannot raise); with
    ``Config(bounds_check=True)`` the kernel asserts, and Blade answers the call eagerly, which
    raises eager's own IndexError."""
    m = TextEmbeddings().eval()
    ids = torch.randint(0, 50, (2, 5))
    opt = blade.optimize(m, [ids], config=blade.Config(executor="program", bounds_check=True))
    with torch.no_grad():
        torch.testing.assert_close(opt(ids)[0], m(ids)[0], atol=1e-5, rtol=1e-3)
        bad = ids.clone()
        bad[1, 2] = 50
        with pytest.raises(IndexError):
            opt(bad)


class PermutedRows(torch.nn.Module):
    """A gather whose table is computed by a kernel whose result the gather's consumer also reads:
    the two groups stay apart (a kernel reads a table from memory, never from its own registers),
    and the consumer's kernel reads that result twice: as the gather's table and as a tile."""

    def forward(self, x, perm):
        y = x * 2.0
        return y[perm] + y


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_a_table_made_inside_the_group(executor):
    m = PermutedRows()
    opt = blade.optimize(m, (torch.randn(5, 8), torch.randperm(5)), config=blade.Config(executor=executor))
    for n in (5, 1, 9):
        x, perm = torch.randn(n, 8), torch.randperm(n)
        torch.testing.assert_close(opt(x, perm), m(x, perm))
    assert opt.eager_calls == 0
    assert not _library_gathers(opt)
    if executor == "kernels":
        labels = [op.p("ops") for op in opt.report.module.walk() if op.name == "blade.fused"]
        assert sorted(labels) == ["gather_rows+add", "mul"], labels
