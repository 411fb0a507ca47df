// RUN: blade-opt %s -p fuse-stitch | filecheck %s
// RUN: blade-opt %s -p fuse-stitch | filecheck %s --check-prefix=COUNT
// RUN: blade-opt %S/Inputs/transformer-block.mlir -p fuse-stitch | filecheck %s --check-prefix=TRANSFORMER
// RUN: blade-opt %S/Inputs/transformer-block.mlir -p fuse-stitch | filecheck %s --check-prefix=TCOUNT
// RUN: blade-opt %S/Inputs/timestep-embedding.mlir -p fuse-stitch | filecheck %s --check-prefix=TIMESTEP
// RUN: blade-opt %S/Inputs/text-embeddings.mlir -p fuse-stitch | filecheck %s --check-prefix=EMBED
//
// Kernel counts of real blocks (IR after layout-nhwc and canonicalize).
// ResnetBlock2D: 4 kernels: GroupNorm+SiLU, SiLU of the time embedding, the time-bias add fused
// into GroupNorm+SiLU, the residual add. Nothing crosses a conv or linear: the adds that read a
// conv/linear result are marked as epilogue candidates.

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
      %15 = blade.permute %3 {perm = array<i64: 0, 2, 3, 1>} : (!blade.tensor<[s0, 32, s1, s2], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %16 = blade.group_norm %15, %5, %6 {num_groups = 8 : i64, eps = 1.000000e-06 : f64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %17 = blade.silu %16 : (!blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %18 = blade.conv %17, %7, %8 {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32, 32, 3, 3], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %19 = blade.silu %4 : (!blade.tensor<[s0, 64], f32>) -> !blade.tensor<[s0, 64], f32>
      %20 = blade.linear %19, %9, %10 : (!blade.tensor<[s0, 64], f32>, !blade.tensor<[32, 64], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, 32], f32>
      %21 = blade.reshape %20 : (!blade.tensor<[s0, 32], f32>) -> !blade.tensor<[s0, 1, 1, 32], f32>
      %22 = blade.add %18, %21 : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[s0, 1, 1, 32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %23 = blade.group_norm %22, %11, %12 {num_groups = 8 : i64, eps = 1.000000e-06 : f64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %24 = blade.silu %23 : (!blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %25 = blade.conv %24, %13, %14 {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32, 32, 3, 3], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %26 = blade.add %15, %25 : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %27 = blade.permute %26 {perm = array<i64: 0, 3, 1, 2>} : (!blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      blade.yield %27 : (!blade.tensor<[s0, 32, s1, s2], f32>) -> ()
    }) {id = 0 : i64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[s0, 64], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
    func.return %2 : !blade.tensor<[s0, 32, s1, s2], f32>
  }
}

// COUNT-COUNT-4: = blade.fused
// COUNT-NOT:     = blade.fused
// CHECK:         }) {kind = "group_norm", id = {{[0-9]+}} : i64, ops = "group_norm+silu"
// CHECK:         blade.conv
// CHECK:         }) {kind = "pointwise", id = {{[0-9]+}} : i64, ops = "silu"
// CHECK:         blade.linear
// CHECK:         }) {kind = "group_norm", id = {{[0-9]+}} : i64, ops = "add+group_norm+silu"} attributes {blade.epilogue_of = ["blade.conv"]}
// CHECK:         blade.conv
// CHECK:         }) {kind = "pointwise", id = {{[0-9]+}} : i64, ops = "add"} attributes {blade.epilogue_of = ["blade.conv"]}

// Transformer2DModel with one BasicTransformerBlock: 7 kernels. The residual adds before
// LayerNorm 2 and 3 are fused into the norm kernel, which writes both the sum and the normalised
// value; GEGLU (two views of one linear output, GELU, multiply) is one kernel.
// TCOUNT-COUNT-7: = blade.fused
// TCOUNT-NOT:     = blade.fused
// TRANSFORMER:         ops = "group_norm"
// TRANSFORMER:         blade.conv
// TRANSFORMER:         ops = "layer_norm"
// TRANSFORMER:         blade.attention
// TRANSFORMER:         }) {{.*}}ops = "add+layer_norm"} attributes {blade.epilogue_of = ["blade.linear"]}
// TRANSFORMER:         blade.attention
// TRANSFORMER:         }) {{.*}}ops = "add+layer_norm"} attributes {blade.epilogue_of = ["blade.linear"]}
// TRANSFORMER:         ops = "gelu+mul"
// TRANSFORMER:         ops = "add"} attributes {blade.epilogue_of = ["blade.linear"]}
// TRANSFORMER:         blade.conv
// TRANSFORMER:         ops = "add"} attributes {blade.epilogue_of = ["blade.conv"]}

// A timestep embedding: the 1-D iota starts the kernel that scales and exponentiates it (its value is
// the element index), so the positions are no library call of their own; the [batch, s1] product
// with the timesteps is a kernel of its own shape.
// TIMESTEP:      blade.fused
// TIMESTEP-NEXT: ^{{.*}}(%{{.*}}: !blade.tensor<[], i64>):
// TIMESTEP:        blade.iota {start = 0.000000e+00 : f64, step = 1.000000e+00 : f64} : () -> !blade.tensor<[s1], f32>
// TIMESTEP:      ops = "iota+mul+div+exp"
// TIMESTEP-NOT:  blade.iota

// Row gathers: an embedding or an index over every dim but the last becomes gather_rows over the
// index tensors viewed as columns ([..., 1]); the token embedding, the position add and the
// LayerNorm are one row_norm kernel; the position embedding (broadcast over the batch) and the
// pooled row are kernels of their own. No embedding or index stays a library call.
// EMBED:      blade.reshape %{{.*}} : (!blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0, s1, 1], i64>
// EMBED:      blade.gather_rows %{{.*}}, %{{.*}} {wrap = 0 : i64} : (!blade.tensor<[40, 24], f32>, !blade.tensor<[s1, 1], i64>) -> !blade.tensor<[s1, 24], f32>
// EMBED:      blade.gather_rows %{{.*}}, %{{.*}} {wrap = 0 : i64} : (!blade.tensor<[50, 24], f32>, !blade.tensor<[s0, s1, 1], i64>) -> !blade.tensor<[s0, s1, 24], f32>
// EMBED:      blade.layer_norm
// EMBED:      kind = "row_norm", id = {{[0-9]+}} : i64, ops = "gather_rows+add+layer_norm"
// EMBED:      blade.gather_rows %{{.*}}, %{{.*}}, %{{.*}} {wrap = 1 : i64} : (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s0, 1], i64>, !blade.tensor<[s0, 1], i64>) -> !blade.tensor<[s0, 24], f32>
// EMBED-NOT:  blade.embedding
// EMBED-NOT:  blade.index
