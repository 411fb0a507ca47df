"""Helpers shared by the GPU tests."""

from blade.executors.program_backed import ProgramBackedExecutor
from tests.generated.check import generated_launches


def ran_generated_kernels(opt) -> bool:
    """Whether the first variant of ``opt`` ran generated kernels: the Program executor's steps
    include launches (it runs every step of every call), the IR executor's launchers counted some."""
    return generated_launches(opt.variants[0]) > 0


def channels_last_copies(opt) -> int:
    """How many channels-last weight copies the first variant of ``opt`` keeps (its convolution
    weights are converted in place unless ``Config(convert_weights_in_place=False)``)."""
    executor = opt.variants[0].executor
    if isinstance(executor, ProgramBackedExecutor):
        return len(executor.provider._cl_weights)
    return len(executor._cl_weights)


def within_fp16_bar(got, ref32, eager):
    """Error against float32 at most twice eager's (plus a floor for results that round to 0)."""
    err = (got.float() - ref32).abs().max().item()
    eager_err = (eager.float() - ref32).abs().max().item()
    assert err <= 2 * eager_err + 1e-3 * max(1.0, ref32.abs().max().item()), (err, eager_err)
