"""The torch provider's channels-last weight copies on a GPU (``runtime/host_provider.py``): a
weight whose data moves to another device keeps its Parameter object, and its copy must move with
it (an in-place refresh into the old copy would leave the convolution a weight on the old device)."""

import pytest
import torch
import torch.nn.functional as F

from blade.runtime.host_provider import TorchProvider

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_channels_last_copy_moves_with_its_weight():
    provider = TorchProvider(convert_weights_in_place=False)  # the copy mode (not the default)
    conv = torch.nn.Conv2d(3, 4, 3)
    w = conv.weight
    assert provider._channels_last(w).device.type == "cpu"
    conv.cuda()
    if conv.weight is not w:  # this torch swaps Parameters on .cuda(): move the data ourselves
        w = conv.weight
        provider._channels_last(w)
        w.data = w.data.cpu()
        provider._channels_last(w)
        w.data = w.data.cuda()
    copy = provider._channels_last(w)
    assert copy.device == w.device and copy.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(copy, w.detach())
    provider.refresh()  # nothing to refresh: no cross-device copy
    x = torch.randn(2, 4, 8, 3, device="cuda")  # NHWC, as the provider's convolution takes it
    y = provider("conv", {"layout": "nhwc", "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1],
                          "groups": 1}, [x, w, conv.bias], [None])[0]
    ref = torch.nn.functional.conv2d(x.movedim(-1, 1), w, conv.bias).movedim(1, -1)
    torch.testing.assert_close(y, ref, rtol=1e-2, atol=1e-2)  # TF32 convolutions


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_channels_last_convolutions_are_torch_s(dtype):
    """The provider's channels-last convolutions (NHWC in and out, the weight made channels-last):
    ``F.conv2d``'s values for strides, padding, dilation, groups, odd sizes, batch 1 and 3, with
    and without a bias. (Session 12 tried calling ``aten.cudnn_convolution`` directly to skip
    torch's backend selection: no host time was saved on an H200, 38 us a call either way.)"""
    provider = TorchProvider(conv_algorithm_search=False, convert_weights_in_place=False, gemm_library="torch")
    g = torch.Generator(device="cuda").manual_seed(0)
    cases = [((1, 13, 17, 8), (16, 8, 3, 3), 1, 1, 1, 1, True), ((3, 9, 31, 4), (5, 4, 3, 3), 2, 1, 1, 1, False),
             ((2, 16, 16, 6), (6, 6, 3, 3), 1, 2, 2, 1, True), ((2, 10, 12, 8), (8, 4, 3, 3), 1, 1, 1, 2, True),
             ((1, 7, 5, 3), (4, 3, 1, 1), 1, 0, 1, 1, True)]
    for x_shape, w_shape, stride, pad, dil, groups, with_bias in cases:
        x = torch.randn(x_shape, device="cuda", dtype=dtype, generator=g)
        w = torch.randn(w_shape, device="cuda", dtype=dtype, generator=g)
        b = torch.randn(w_shape[0], device="cuda", dtype=dtype, generator=g) if with_bias else None
        attrs = {"layout": "nhwc", "stride": [stride] * 2, "padding": [pad] * 2, "dilation": [dil] * 2, "groups": groups}
        (y,) = provider("conv", attrs, [x, w] + ([b] if with_bias else []), [None])
        ref = F.conv2d(x.movedim(-1, 1), w.contiguous(memory_format=torch.channels_last), b, stride, pad, dil,
                       groups).movedim(1, -1)
        assert y.shape == ref.shape and y.is_contiguous()
        torch.testing.assert_close(y, ref, rtol=1e-3 if dtype != torch.bfloat16 else 1e-2, atol=1e-3 if dtype == torch.float32 else 1e-2)
