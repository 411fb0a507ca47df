"""The Program executor on a GPU: library calls through the torch provider on CUDA tensors, the
device symbol (multiprocessor count) read from the GPU, and the clear refusal to launch generated
kernels until the C++ executor loads cubins."""

import pytest
import torch

import blade
from blade.lower_program import lower_program
from blade.runtime.program_executor import ProgramExecutor, ProgramRunError, module_weights
from tests.unit.op_matrix import CASES

pytestmark = pytest.mark.gpu


def _program(name):
    factory, make = CASES[name]
    model = factory().eval()
    opt = blade.optimize(model, make(2, 12), config=blade.Config(executor="reference"))
    return model, make, lower_program(opt.variants[0].program)


def test_library_only_program_runs_on_cuda():
    model, make, prog = _program("shapes")
    assert all(s.kind != "launch" for s in prog.steps)
    ex = ProgramExecutor(prog, module_weights(prog, model))
    for b, n in [(2, 12), (1, 7), (3, 17)]:
        (x,) = make(b, n)
        x = x.cuda()
        outs = ex.run([x])
        assert all(o.is_cuda for o in outs)
        for o, r in zip(outs, model(x)):
            torch.testing.assert_close(o, r)


def test_generated_kernels_on_cuda_are_refused_clearly():
    model, make, prog = _program("conv_block")
    model = model.cuda()
    ex = ProgramExecutor(prog, module_weights(prog, model))
    (x,) = make(2, 12)
    with pytest.raises(ProgramRunError, match="launching cubins from a Program .* not implemented yet"):
        ex.run([x.cuda()])
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert ex._device_symbol("sm_count", torch.device("cuda", 0)) == sms
