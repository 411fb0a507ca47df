"""Pretty and generic forms round-trip, the verifier rejects bad IR, and the generic form of
Blade modules parses in upstream MLIR (torch-mlir's bindings, unregistered dialects allowed)."""

import pytest
import torch
from xdsl.utils.exceptions import ParseError, VerifyException

import blade
from blade.ir import parse_module, print_module
from tests.unit.op_matrix import CASES, SIZES


@pytest.fixture(scope="module")
def modules():
    out = {}
    for name, (factory, make) in CASES.items():
        opt = blade.optimize(factory().eval(), make(*SIZES[0]))
        out[name] = opt.report.module
    return out


def test_every_op_round_trips_in_pretty_and_generic_form(modules):
    seen = set()
    for name, module in modules.items():
        pretty = print_module(module)
        generic = print_module(module, generic=True)
        assert print_module(parse_module(pretty)) == pretty, name
        assert print_module(parse_module(generic)) == pretty, name
        seen |= {line.split("=")[-1].strip().split()[0].strip('"') for line in generic.splitlines()
                 if '"blade.' in line}
    assert len(seen) >= 35, sorted(seen)


def test_generic_form_parses_in_upstream_mlir(modules):
    mlir_ir = pytest.importorskip("torch_mlir.ir")
    ctx = mlir_ir.Context()
    ctx.allow_unregistered_dialects = True
    for name, module in modules.items():
        parsed = mlir_ir.Module.parse(print_module(module, generic=True), ctx)
        assert "blade.cluster" in str(parsed), name


BAD_PERMUTE = """
builtin.module {
  func.func @forward(%0: !blade.tensor<[s0, 4], f32>) -> !blade.tensor<[4, s0], f32> {
    %1 = blade.permute %0 {perm = array<i64: 0, 0>} : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[4, s0], f32>
    func.return %1 : !blade.tensor<[4, s0], f32>
  }
}
"""

BAD_BROADCAST = """
builtin.module {
  func.func @forward(%0: !blade.tensor<[s0, 4], f32>, %1: !blade.tensor<[s0, 5], f32>) -> !blade.tensor<[s0, 4], f32> {
    %2 = blade.add %0, %1 : (!blade.tensor<[s0, 4], f32>, !blade.tensor<[s0, 5], f32>) -> !blade.tensor<[s0, 4], f32>
    func.return %2 : !blade.tensor<[s0, 4], f32>
  }
}
"""

BAD_RESULT = """
builtin.module {
  func.func @forward(%0: !blade.tensor<[s0, 4], f32>) -> !blade.tensor<[s0, 5], f32> {
    %1 = blade.exp %0 : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[s0, 5], f32>
    func.return %1 : !blade.tensor<[s0, 5], f32>
  }
}
"""


@pytest.mark.parametrize("text,match", [(BAD_PERMUTE, "not a permutation"), (BAD_BROADCAST, "cannot broadcast"),
                                        (BAD_RESULT, "does not match")])
def test_verifier_names_the_problem(text, match):
    with pytest.raises(VerifyException, match=match):
        parse_module(text)


def test_parse_error_on_bad_dim_syntax():
    with pytest.raises(ParseError):
        parse_module(BAD_RESULT.replace("[s0, 4]", "[s0 +, 4]"))
