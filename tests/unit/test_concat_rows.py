"""A ``concat`` as copies of rows (``runtime/native_loop.concat_rows``, what the C++ step list runs
with ``cuMemcpy2DAsync``), checked on the CPU: for random concatenations (ranks 1-5, any dim,
inputs packed, channels-last, permuted, sliced, size-1 and empty along the dim) the copies, carried
out byte by byte on the tensors' storage, give ``torch.cat``'s result in the result's own memory
order; where the memory is not rows the answer is None (torch then concatenates) and never a wrong
copy. The common layouts (channels-last over channels, packed over any dim) must be served."""

import random

import numpy as np
import pytest
import torch

from blade.runtime.native_loop import Shadow, concat_rows


def _bytes(t: torch.Tensor) -> np.ndarray:
    storage = t.untyped_storage()
    return np.frombuffer(bytes(storage), dtype=np.uint8).copy()


def _carry_out(ins: list[torch.Tensor], out: torch.Tensor, copies) -> torch.Tensor:
    """The copies done on bytes: the result's storage after them, read back with its strides."""
    size = out.element_size()
    dst = np.zeros(out.untyped_storage().nbytes(), dtype=np.uint8)
    base = out.storage_offset() * size
    for t, (offset, dst_pitch, src_pitch, width, rows) in zip(ins, copies):
        src = _bytes(t)
        start = t.storage_offset() * size
        for r in range(rows):
            a = start + r * src_pitch
            b = base + offset + r * dst_pitch
            dst[b:b + width] = src[a:a + width]
    flat = torch.from_numpy(dst).view(out.dtype)
    return torch.as_strided(flat, out.shape, out.stride(), out.storage_offset())


def _layout(rng, shape: list[int]) -> torch.Tensor:
    """A tensor of ``shape`` in a random memory layout: packed, permuted in memory, or a slice of a
    larger one."""
    kind = rng.choice(["packed", "permuted", "sliced", "channels_last"])
    if kind == "permuted":
        order = list(range(len(shape)))
        rng.shuffle(order)
        base = torch.randn([shape[k] for k in order])
        return base.permute([order.index(k) for k in range(len(shape))])
    if kind == "sliced" and shape:
        k = rng.randrange(len(shape))
        grown = list(shape)
        grown[k] += rng.randint(1, 3)
        return torch.randn(grown).narrow(k, rng.randint(0, grown[k] - shape[k]), shape[k])
    if kind == "channels_last" and len(shape) == 4:
        return torch.randn(shape).contiguous(memory_format=torch.channels_last)
    return torch.randn(shape)


def _case(seed: int):
    """(inputs, result tensor to write, dim as passed, torch.cat's answer) or None (an empty result)."""
    rng = random.Random(seed)
    rank = rng.randint(1, 5)
    shape = [rng.choice([1, 2, 3, 5, 7]) for _ in range(rank)]
    dim = rng.randrange(rank)
    ins = []
    for _ in range(rng.randint(1, 4)):
        s = list(shape)
        s[dim] = rng.choice([0, 1, 2, 3, 6])
        ins.append(_layout(rng, s))
    expect = torch.cat(ins, dim)
    if expect.numel() == 0:
        return None
    # the result in a random dense layout (torch.cat's own choice follows its inputs')
    out_order = list(range(rank))
    rng.shuffle(out_order)
    out = torch.full([expect.shape[k] for k in out_order], float("nan"))
    out = out.permute([out_order.index(k) for k in range(rank)])
    return ins, out, dim - rank if rng.random() < 0.3 else dim, expect


SEEDS = range(300)


@pytest.mark.parametrize("seed", SEEDS)
def test_copies_give_torch_cat(seed):
    case = _case(seed)
    if case is None:
        return
    ins, out, dim, expect = case
    copies = concat_rows(ins, out, dim)
    if copies is None:
        return
    got = _carry_out(ins, out, copies)
    assert torch.equal(got, expect), (dim, [t.stride() for t in ins], out.stride(), copies)


def test_the_random_cases_are_often_served():
    """The cases above test something: a good share of them is served as copies (measured: 101 of
    286 non-empty cases; the rest have an input or result whose memory is not rows)."""
    cases = [c for c in map(_case, SEEDS) if c is not None]
    served = sum(concat_rows(ins, out, dim) is not None for ins, out, dim, _ in cases)
    assert served >= len(cases) // 4, (served, len(cases))


def test_shadows_read_like_their_tensors():
    ins = [torch.randn(2, 6, 5, 3).contiguous(memory_format=torch.channels_last),
           torch.randn(2, 4, 5, 3).contiguous(memory_format=torch.channels_last)]
    out = torch.cat(ins, 1)
    assert concat_rows(ins, out, 1) == concat_rows([Shadow(t) for t in ins], Shadow(out), 1) is not None


@pytest.mark.parametrize("case", ["channels_last_channels", "packed_dim0", "packed_last", "packed_middle",
                                  "one_input_empty"])
def test_common_layouts_are_served(case):
    if case == "channels_last_channels":  # a UNet's skip connections: rows are pixels
        ins = [torch.randn(2, c, 8, 9).contiguous(memory_format=torch.channels_last) for c in (640, 320)]
        dim = 1
    elif case == "packed_dim0":
        ins, dim = [torch.randn(3, 4, 5), torch.randn(1, 4, 5)], 0
    elif case == "packed_last":
        ins, dim = [torch.randn(3, 4, 5), torch.randn(3, 4, 2)], -1
    elif case == "packed_middle":
        ins, dim = [torch.randn(3, 4, 5), torch.randn(3, 7, 5)], 1
    else:
        ins, dim = [torch.randn(3, 0, 5), torch.randn(3, 7, 5)], 1
    out = torch.cat(ins, dim)
    copies = concat_rows(ins, out, dim)
    assert copies is not None
    assert torch.equal(_carry_out(ins, out, copies), out)
    if case == "channels_last_channels":
        assert [c[4] for c in copies] == [2 * 8 * 9] * 2 and [c[3] for c in copies] == [640 * 4, 320 * 4]


def test_refusals():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert concat_rows([a, b.double()], torch.empty(3, 8), 1) is None  # mixed dtypes
    assert concat_rows([a, b], torch.empty(3, 8)[:, ::1].t().contiguous().t(), 1) is None  # result not rows
    assert concat_rows([a, b[:, ::2].repeat(1, 2)[:, ::1]], torch.empty(3, 8), 1) is not None
    assert concat_rows([a, torch.randn(4, 3).t()], torch.empty(3, 8), 1) is None  # input column-major


def test_pitches_past_the_driver_s_limit_are_refused():
    """The driver's 2-D copies take pitches (and one row's width) up to 2^31 - 1 bytes: beyond,
    torch concatenates (meta tensors: sizes only, no memory)."""
    big = [torch.empty(2**30, dtype=torch.float16, device="meta")] * 2  # one row of 2^31 bytes each
    assert concat_rows(big, torch.empty(2**31, dtype=torch.float16, device="meta"), 0) is None
    wide = [torch.empty(2, 640, 1024, 1024, dtype=torch.float16, device="meta")] * 2  # rows 2.5 GiB apart
    assert concat_rows(wide, torch.empty(2, 1280, 1024, 1024, dtype=torch.float16, device="meta"), 1) is None
    ok = [torch.empty(2, 64, 1024, 1024, dtype=torch.float16, device="meta")] * 2
    assert concat_rows(ok, torch.empty(2, 128, 1024, 1024, dtype=torch.float16, device="meta"), 1) is not None
