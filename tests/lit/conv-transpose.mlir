// RUN: blade-opt %s -p shape-propagation | filecheck %s
// RUN: blade-opt %s --generic | blade-opt | filecheck %s --check-prefix=ROUND

// A transposed convolution's sizes: (in - 1) * stride - 2 * padding + dilation * (kernel - 1)
// + output_padding + 1, channels = weight dim 1 * groups; the 4x4/2 upsampler with padding 1
// doubles a symbolic size exactly.
builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 4, s1, 3*s1], f32>, %w: !blade.tensor<[4, 4, 4, 4], f32>, %v: !blade.tensor<[4, 3, 3, 3], f32>) -> !blade.tensor<[?, ?, ?, ?], f32> {
    %u = blade.conv_transpose %x, %w {stride = array<i64: 2, 2>, padding = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[s0, 4, s1, 3*s1], f32>, !blade.tensor<[4, 4, 4, 4], f32>) -> !blade.tensor<[?, ?, ?, ?], f32>
    %g = blade.conv_transpose %u, %v {stride = array<i64: 3, 1>, padding = array<i64: 0, 1>, output_padding = array<i64: 2, 0>, dilation = array<i64: 1, 2>, groups = 2 : i64} : (!blade.tensor<[?, ?, ?, ?], f32>, !blade.tensor<[4, 3, 3, 3], f32>) -> !blade.tensor<[?, ?, ?, ?], f32>
    func.return %g : !blade.tensor<[?, ?, ?, ?], f32>
  }
}

// CHECK: blade.conv_transpose {{.*}} -> !blade.tensor<[s0, 4, 2*s1, 6*s1], f32>
// CHECK: blade.conv_transpose {{.*}} -> !blade.tensor<[s0, 6, 6*s1 + 2, 6*s1 + 2], f32>
// ROUND: blade.conv_transpose %{{.*}}, %{{.*}} {stride = array<i64: 2, 2>, padding = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64}
