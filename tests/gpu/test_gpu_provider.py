"""The torch provider's channels-last weight copies on a GPU (``runtime/host_provider.py``): a
weight whose data moves to another device keeps its Parameter object, and its copy must move with
it (an in-place refresh into the old copy would leave the convolution a weight on the old device)."""

import pytest
import torch

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
