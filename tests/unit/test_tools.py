"""Developer tooling: IR dumps of a real compile, blade-opt, blade inspect, the demo's CLI."""

import subprocess
import sys

import torch

import blade
from blade.tools.blade_opt import main as blade_opt
from tests.unit.op_matrix import ConvBlock


def test_dump_dir_gets_ir_after_every_pass(tmp_path):
    blade.optimize(ConvBlock().eval(), (torch.randn(2, 4, 8, 8),), config=blade.Config(dump_dir=str(tmp_path)))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00-import.mlir", "01-canonicalize.mlir", "02-shape-propagation.mlir",
                     "03-cluster-supported.mlir", "04-layout-nhwc.mlir", "05-canonicalize.mlir",
                     "06-fuse-stitch.mlir"]
    assert "blade.cluster" in (tmp_path / "03-cluster-supported.mlir").read_text()
    assert 'layout = "nhwc"' in (tmp_path / "04-layout-nhwc.mlir").read_text()
    assert 'ops = "add+group_norm+silu"' in (tmp_path / "06-fuse-stitch.mlir").read_text()
    assert "blade.group_norm" in (tmp_path / "00-import.mlir").read_text()


def test_blade_opt_print_ir_after_all(tmp_path, capsys):
    src = tmp_path / "m.mlir"
    opt = blade.optimize(ConvBlock().eval(), (torch.randn(2, 4, 8, 8),))
    from blade.ir import print_module
    src.write_text(print_module(opt.report.module))
    assert blade_opt([str(src), "-p", "canonicalize,shape-propagation", "--print-ir-after-all"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("IR Dump After") == 2
    assert "blade.conv" in captured.out


def test_blade_opt_reports_unknown_pass(tmp_path, capsys):
    src = tmp_path / "m.mlir"
    src.write_text("builtin.module {\n}\n")
    assert blade_opt([str(src), "-p", "no-such-pass"]) == 1
    assert "unknown pass 'no-such-pass'" in capsys.readouterr().err


def test_python_m_blade_help():
    proc = subprocess.run([sys.executable, "-m", "blade", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "demo" in proc.stdout and "inspect" in proc.stdout


def test_command_line_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("garbage {\n")
    invalid = tmp_path / "invalid.mlir"
    invalid.write_text('builtin.module {\n  "blade.symbol"() : () -> ()\n}\n')
    cases = [(["blade.tools.blade_opt", str(tmp_path / "missing.mlir")], "cannot read"),
             (["blade.tools.blade_opt", str(bad)], f"{bad}:1:"),
             (["blade.tools.blade_opt", str(invalid)], "invalid IR"),
             (["blade", "inspect", str(tmp_path / "missing.mlir")], "cannot read"),
             (["blade", "inspect", str(bad)], f"{bad}:1:")]
    for argv, expect in cases:
        proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert expect in proc.stderr, proc.stderr


def test_list_passes_prints_sentences_without_importing_torch():
    code = ("import sys; from blade.tools.blade_opt import main; main(['--list-passes']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 6 and all(line.rstrip().endswith(".") for line in lines), lines


def test_blade_opt_runs_passes_without_importing_torch():
    """Rewriting IR needs no torch (the dialects import it lazily): lit tests stay fast."""
    import os

    src = os.path.join(os.path.dirname(__file__), "..", "lit", "fuse-stitch.mlir")
    code = ("import sys, io, contextlib; from blade.tools.blade_opt import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main([{src!r}, '-p', 'canonicalize,shape-propagation,layout-nhwc,fuse-stitch']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
