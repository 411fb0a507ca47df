// RUN: blade-opt %s --generic | filecheck %s --check-prefix=GENERIC
// RUN: blade-opt %s --generic | blade-opt | filecheck %s
// RUN: blade inspect %s | filecheck %s --check-prefix=INSPECT

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64, hi = 63 : i64, origin = "x.size(0)"} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "x.size(2) / 8"} : () -> ()
  blade.guard {cond = "s1 != 1", reason = "example guard"} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 4, 8*s1], f32>) -> !blade.tensor<[s0, 4, (8*s1 - 1) floordiv 2 + 1], f32> {
    %y = blade.slice %x {dim = 2 : i64, start = #blade.dims<[0]>, step = 2 : i64} : (!blade.tensor<[s0, 4, 8*s1], f32>) -> !blade.tensor<[s0, 4, (8*s1 - 1) floordiv 2 + 1], f32>
    func.return %y : !blade.tensor<[s0, 4, (8*s1 - 1) floordiv 2 + 1], f32>
  }
}

// GENERIC: "blade.guard"() <{cond = "s1 != 1", reason = "example guard"}> : () -> ()
// GENERIC: "blade.slice"(%{{.*}}) <{dim = 2 : i64, start = #blade.dims<[0]>, step = 2 : i64}> : (!blade.tensor<[s0, 4, 8*s1], f32>) -> !blade.tensor<[s0, 4, 4*s1], f32>

// The canonical form of (8*s1 - 1) floordiv 2 + 1 is 4*s1, in both forms.
// CHECK: blade.slice %{{.*}} {dim = 2 : i64, start = #blade.dims<[0]>, step = 2 : i64} : (!blade.tensor<[s0, 4, 8*s1], f32>) -> !blade.tensor<[s0, 4, 4*s1], f32>

// INSPECT:      symbols (2):
// INSPECT-NEXT:   s0     in [1, 63]  x.size(0)
// INSPECT-NEXT:   s1     in [1, inf]  x.size(2) / 8
// INSPECT:      guards (1):
// INSPECT-NEXT:   s1 != 1    (example guard)
// INSPECT:      inputs:  [s0, 4, 8*s1]
// INSPECT:      1  blade.slice
