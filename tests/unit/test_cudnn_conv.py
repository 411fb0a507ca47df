"""The cuDNN convolution's description of a ``conv`` call (``runtime/cudnn_conv.py``) on the CPU:
for random convolutions (1-3 spatial dims, odd sizes, strides, padding, dilation, groups, both
layouts) the result shape is PyTorch's, the C++ runtime computes the same output sizes, and what
cuDNN is not given (float32, unpacked or wrongly laid-out tensors, mismatched channels) is
refused so torch computes it. The GPU results are checked in tests/gpu/test_gpu_cudnn_conv.py."""

import random

import pytest
import torch
import torch.nn.functional as F

from blade.runtime.cudnn_conv import conv_problem
from blade.runtime.native_loop import Shadow
from tests.native_build import build_native


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return build_native(tmp_path_factory)[1]


def _case(rng):
    spatial = rng.choice([1, 2, 3])
    groups = rng.choice([1, 2, 3])
    c, k = groups * rng.randint(1, 5), groups * rng.randint(1, 4)
    kernel = [rng.randint(1, 4) for _ in range(spatial)]
    stride = [rng.randint(1, 3) for _ in range(spatial)]
    dilation = [rng.randint(1, 2) for _ in range(spatial)]
    padding = [rng.randint(0, 2) for _ in range(spatial)]
    size = [rng.randint(dilation[i] * (kernel[i] - 1) + 1, 13) for i in range(spatial)]
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
             "layout": rng.choice(["nhwc", "nchw"])}
    return rng.randint(1, 3), c, k, size, kernel, attrs


def _tensors(n, c, k, size, kernel, attrs, dtype=torch.float16):
    x = torch.empty(n, c, *size, dtype=dtype)
    w = torch.empty(k, c // attrs["groups"], *kernel, dtype=dtype)
    if attrs["layout"] == "nhwc":
        return x.movedim(1, -1).contiguous(), w.movedim(1, -1).contiguous().movedim(-1, 1)
    return x, w


@pytest.mark.parametrize("seed", range(40))
def test_result_shape_is_torchs(seed, native):
    rng = random.Random(seed)
    n, c, k, size, kernel, attrs = _case(rng)
    x, w = _tensors(n, c, k, size, kernel, attrs)
    bias = torch.empty(k, dtype=torch.float16) if rng.random() < 0.5 else None
    problem, shape = conv_problem(attrs, x, w, bias)
    # the C++ loop's recording run describes let-go tensors by their Shadow: the same problem
    assert conv_problem(attrs, Shadow(x), Shadow(w), None if bias is None else Shadow(bias)) == (problem, shape)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(size)]
    ref = conv(torch.empty(n, c, *size, device="meta"), torch.empty(k, c // attrs["groups"], *kernel, device="meta"),
               None, attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])
    expect = (n, *ref.shape[2:], k) if attrs["layout"] == "nhwc" else tuple(ref.shape)
    assert shape == expect
    assert (problem.n, problem.c, problem.k, problem.input) == (n, c, k, tuple(size))
    text, out = native.conv_problem_text(*problem.args(), x_channels_first=problem.x_channels_first)
    assert tuple(out) == tuple(ref.shape[2:]), text
    assert f"N {n}, C {c} -> K {k}" in text


def test_refusals():
    attrs = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "layout": "nhwc"}
    x, w = _tensors(2, 8, 4, [9, 11], [3, 3], attrs)
    assert conv_problem(attrs, x, w) is not None
    assert conv_problem(attrs, x.float(), w.float()) is None  # float32 stays torch's (TF32 setting)
    assert conv_problem(attrs, x, w.contiguous()) is None  # weight not channels-last
    assert conv_problem(attrs, x[:, :, :5], w) is None  # input not packed
    assert conv_problem(attrs, x, w, torch.empty(5, dtype=torch.float16)) is None  # bias of another size
    assert conv_problem(attrs, x, w, torch.empty(4, 2, dtype=torch.float16)[:, 0]) is None  # strided bias
    assert conv_problem(dict(attrs, groups=3), x, w) is None  # channels do not match the groups
    assert conv_problem(dict(attrs, padding=[0, 0]), x[:, :2, :2], w) is None  # empty output
    assert conv_problem(attrs, x.to(torch.bfloat16), w) is None  # mixed dtypes
    assert conv_problem(attrs, x.to(torch.bfloat16), w.to(torch.bfloat16)) is not None


def test_a_channels_first_input_of_a_channels_last_convolution(native):
    """A model's NCHW input seen channels-last (Blade's layout pass permutes it, a view) is given to
    cuDNN through its strides: a problem of its own, not the packed channels-last one."""
    attrs = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "layout": "nhwc"}
    for c in (3, 4, 8):
        nchw = torch.empty(3, c, 9, 13, dtype=torch.float16)
        x = nchw.permute(0, 2, 3, 1)  # [N, H, W, C] over NCHW memory
        w = torch.empty(5, c, 3, 3, dtype=torch.float16).to(memory_format=torch.channels_last)
        problem, shape = conv_problem(attrs, x, w)
        packed, _ = conv_problem(attrs, x.contiguous(), w)
        assert problem.x_channels_first and not packed.x_channels_first and shape == (3, 9, 13, 5)
        text, out = native.conv_problem_text(*problem.args(), x_channels_first=True)
        assert "channels-last" in text and "input channels-first" in text and tuple(out) == (9, 13)
        assert "input channels-first" not in native.conv_problem_text(*packed.args())[0]
    assert conv_problem(attrs, nchw.permute(0, 2, 3, 1)[:, :, :7], w) is None  # neither order packed
    nchw_attrs = dict(attrs, layout="nchw")
    assert not conv_problem(nchw_attrs, nchw, w.contiguous())[0].x_channels_first
    with pytest.raises(ValueError, match="only in a channels-last problem"):
        native.conv_problem_text(2, False, 1, 4, 4, 1, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], x_channels_first=True)


def test_invalid_problems_raise_in_cpp(native):
    with pytest.raises(ValueError, match="divisible by the groups"):
        native.conv_problem_text(2, True, 1, 6, 4, 4, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="float16 and bfloat16"):
        native.conv_problem_text(0, True, 1, 4, 4, 1, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1])
    ok, why = native.cudnn_available("/nonexistent/libcudnn.so.9")
    assert not ok and "cannot be opened" in why


def test_create_says_why_not():
    from blade.runtime.cudnn_conv import CudnnConvolution

    conv, why = CudnnConvolution.create(api="bogus")
    assert conv is None and "BLADE_CUDNN_API" in why
    if not torch.cuda.is_available():
        conv, why = CudnnConvolution.create()
        assert conv is None and why  # no C++ runtime in place, or no CUDA: said, not raised
