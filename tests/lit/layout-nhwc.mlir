// RUN: blade-opt %s -p layout-nhwc,canonicalize | filecheck %s
//
// A diffusers ResnetBlock2D (32 channels, 8 groups; the IR after cluster-supported).
// Convolutions and GroupNorms run channels-last; the only transposes left are at the
// block boundary (NCHW in and out), none between a conv and the norm that follows it.

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64, origin = "input_tensor.size(0)"} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "input_tensor.size(2)"} : () -> ()
  blade.symbol {sym_name = "s2", lo = 1 : i64, origin = "input_tensor.size(3)"} : () -> ()
  func.func @forward(%0: !blade.tensor<[s0, 32, s1, s2], f32>, %1: !blade.tensor<[s0, 64], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32> attributes {blade.input_names = ["input_tensor", "temb"]} {
    %2 = blade.cluster %0, %1 ({
    ^bb0(%3: !blade.tensor<[s0, 32, s1, s2], f32>, %4: !blade.tensor<[s0, 64], f32>):
      %5 = blade.weight {name = "norm1.weight"} : () -> !blade.tensor<[32], f32>
      %6 = blade.weight {name = "norm1.bias"} : () -> !blade.tensor<[32], f32>
      %7 = blade.weight {name = "conv1.weight"} : () -> !blade.tensor<[32, 32, 3, 3], f32>
      %8 = blade.weight {name = "conv1.bias"} : () -> !blade.tensor<[32], f32>
      %9 = blade.weight {name = "time_emb_proj.weight"} : () -> !blade.tensor<[32, 64], f32>
      %10 = blade.weight {name = "time_emb_proj.bias"} : () -> !blade.tensor<[32], f32>
      %11 = blade.weight {name = "norm2.weight"} : () -> !blade.tensor<[32], f32>
      %12 = blade.weight {name = "norm2.bias"} : () -> !blade.tensor<[32], f32>
      %13 = blade.weight {name = "conv2.weight"} : () -> !blade.tensor<[32, 32, 3, 3], f32>
      %14 = blade.weight {name = "conv2.bias"} : () -> !blade.tensor<[32], f32>
      %15 = blade.group_norm %3, %5, %6 {num_groups = 8 : i64, eps = 1.000000e-06 : f64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %16 = blade.silu %15 : (!blade.tensor<[s0, 32, s1, s2], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %17 = blade.conv %16, %7, %8 {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[32, 32, 3, 3], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %18 = blade.silu %4 : (!blade.tensor<[s0, 64], f32>) -> !blade.tensor<[s0, 64], f32>
      %19 = blade.linear %18, %9, %10 : (!blade.tensor<[s0, 64], f32>, !blade.tensor<[32, 64], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, 32], f32>
      %20 = blade.reshape %19 : (!blade.tensor<[s0, 32], f32>) -> !blade.tensor<[s0, 32, 1, 1], f32>
      %21 = blade.add %17, %20 : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[s0, 32, 1, 1], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %22 = blade.group_norm %21, %11, %12 {num_groups = 8 : i64, eps = 1.000000e-06 : f64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %23 = blade.silu %22 : (!blade.tensor<[s0, 32, s1, s2], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %24 = blade.conv %23, %13, %14 {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[32, 32, 3, 3], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      %25 = blade.add %3, %24 : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[s0, 32, s1, s2], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      blade.yield %25 : (!blade.tensor<[s0, 32, s1, s2], f32>) -> ()
    }) {id = 0 : i64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[s0, 64], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
    func.return %2 : !blade.tensor<[s0, 32, s1, s2], f32>
  }
}

// CHECK:      %[[X:.*]] = blade.permute %{{.*}} {perm = array<i64: 0, 2, 3, 1>} : {{.*}} -> !blade.tensor<[s0, s1, s2, 32], f32>
// CHECK-NEXT: %[[N1:.*]] = blade.group_norm %[[X]], {{.*}}layout = "nhwc"
// CHECK-NEXT: %[[A1:.*]] = blade.silu %[[N1]] : (!blade.tensor<[s0, s1, s2, 32], f32>)
// The conv bias is a separate add (it fuses into the next kernel instead of costing cuDNN a pass):
// CHECK-NEXT: %[[C1:.*]] = blade.conv %[[A1]], %{{[0-9]+}} {{.*}}layout = "nhwc"{{.*}} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32, 32, 3, 3], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
// CHECK-NEXT: %[[B1:.*]] = blade.add %[[C1]], %{{[0-9]+}} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32], f32>)
// CHECK-NOT:  blade.permute
// CHECK:      %[[T:.*]] = blade.reshape %{{.*}} : (!blade.tensor<[s0, 32], f32>) -> !blade.tensor<[s0, 1, 1, 32], f32>
// CHECK-NEXT: %[[H:.*]] = blade.add %[[B1]], %[[T]] : {{.*}} -> !blade.tensor<[s0, s1, s2, 32], f32>
// CHECK-NEXT: blade.group_norm %[[H]], {{.*}}layout = "nhwc"
// CHECK-NOT:  blade.permute
// CHECK:      %[[C2:.*]] = blade.conv {{.*}}layout = "nhwc"
// CHECK-NEXT: %[[B2:.*]] = blade.add %[[C2]], %{{[0-9]+}} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32], f32>)
// CHECK-NEXT: %[[R:.*]] = blade.add %[[X]], %[[B2]]
// CHECK-NEXT: %[[OUT:.*]] = blade.permute %[[R]] {perm = array<i64: 0, 3, 1, 2>}
// CHECK-NEXT: blade.yield %[[OUT]]
