// RUN: blade-opt %s -p shape-propagation | filecheck %s
// RUN: not blade-opt %S/Inputs/bad-shape.mlir -p shape-propagation 2>&1 | filecheck %s --check-prefix=ERR

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 4, 8*s1, 8*s1], f32>, %w: !blade.tensor<[16, 4, 3, 3], f32>) -> !blade.tensor<[?, ?, ?, ?], f32> {
    %c = blade.conv %x, %w {stride = array<i64: 2, 2>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[s0, 4, 8*s1, 8*s1], f32>, !blade.tensor<[16, 4, 3, 3], f32>) -> !blade.tensor<[?, ?, ?, ?], f32>
    %d = blade.conv %c, %w {stride = array<i64: 2, 2>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[?, ?, ?, ?], f32>, !blade.tensor<[16, 4, 3, 3], f32>) -> !blade.tensor<[?, ?, ?, ?], f32>
    %e = blade.silu %d : (!blade.tensor<[?, ?, ?, ?], f32>) -> !blade.tensor<[?, ?, ?, ?], f32>
    func.return %e : !blade.tensor<[?, ?, ?, ?], f32>
  }
}

// Strided convolutions of a multiple of 8 simplify structurally: 8*s1 -> 4*s1 -> 2*s1.
// CHECK: blade.conv {{.*}} -> !blade.tensor<[s0, 16, 4*s1, 4*s1], f32>
// CHECK: blade.conv {{.*}} -> !blade.tensor<[s0, 16, 2*s1, 2*s1], f32>
// CHECK: blade.silu {{.*}} -> !blade.tensor<[s0, 16, 2*s1, 2*s1], f32>
// CHECK: func.return {{.*}} : !blade.tensor<[s0, 16, 2*s1, 2*s1], f32>

// ERR: blade-opt: error: {{.*}}blade.add{{.*}}cannot broadcast dims 4 and 5
