builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64, origin = "hidden_states.size(0)"} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "hidden_states.size(2)"} : () -> ()
  blade.symbol {sym_name = "s2", lo = 1 : i64, origin = "hidden_states.size(3)"} : () -> ()
  blade.symbol {sym_name = "s3", lo = 1 : i64, origin = "encoder_hidden_states.size(1)"} : () -> ()
  blade.guard {cond = "s1*s2 != 1", reason = "torch.export: Ne(s20*s33, 1) at _ops.py:875"} : () -> ()
  blade.guard {cond = "s2 != 1", reason = "torch.export: Ne(s20, 1) at non_strict_utils.py:1205"} : () -> ()
  func.func @forward(%0: !blade.tensor<[s0, 32, s1, s2], f32>, %1: !blade.tensor<[s0, s3, 24], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32> attributes {blade.input_names = ["hidden_states", "encoder_hidden_states"]} {
    %2 = blade.cluster %0, %1 ({
    ^bb0(%3: !blade.tensor<[s0, 32, s1, s2], f32>, %4: !blade.tensor<[s0, s3, 24], f32>):
      %5 = blade.weight {name = "norm.weight"} : () -> !blade.tensor<[32], f32>
      %6 = blade.weight {name = "norm.bias"} : () -> !blade.tensor<[32], f32>
      %7 = blade.weight {name = "proj_in.weight"} : () -> !blade.tensor<[32, 32, 1, 1], f32>
      %8 = blade.weight {name = "proj_in.bias"} : () -> !blade.tensor<[32], f32>
      %9 = blade.weight {name = "transformer_blocks.0.norm1.weight"} : () -> !blade.tensor<[32], f32>
      %10 = blade.weight {name = "transformer_blocks.0.norm1.bias"} : () -> !blade.tensor<[32], f32>
      %11 = blade.weight {name = "transformer_blocks.0.attn1.to_q.weight"} : () -> !blade.tensor<[32, 32], f32>
      %12 = blade.weight {name = "transformer_blocks.0.attn1.to_k.weight"} : () -> !blade.tensor<[32, 32], f32>
      %13 = blade.weight {name = "transformer_blocks.0.attn1.to_v.weight"} : () -> !blade.tensor<[32, 32], f32>
      %14 = blade.weight {name = "transformer_blocks.0.attn1.to_out.0.weight"} : () -> !blade.tensor<[32, 32], f32>
      %15 = blade.weight {name = "transformer_blocks.0.attn1.to_out.0.bias"} : () -> !blade.tensor<[32], f32>
      %16 = blade.weight {name = "transformer_blocks.0.norm2.weight"} : () -> !blade.tensor<[32], f32>
      %17 = blade.weight {name = "transformer_blocks.0.norm2.bias"} : () -> !blade.tensor<[32], f32>
      %18 = blade.weight {name = "transformer_blocks.0.attn2.to_q.weight"} : () -> !blade.tensor<[32, 32], f32>
      %19 = blade.weight {name = "transformer_blocks.0.attn2.to_k.weight"} : () -> !blade.tensor<[32, 24], f32>
      %20 = blade.weight {name = "transformer_blocks.0.attn2.to_v.weight"} : () -> !blade.tensor<[32, 24], f32>
      %21 = blade.weight {name = "transformer_blocks.0.attn2.to_out.0.weight"} : () -> !blade.tensor<[32, 32], f32>
      %22 = blade.weight {name = "transformer_blocks.0.attn2.to_out.0.bias"} : () -> !blade.tensor<[32], f32>
      %23 = blade.weight {name = "transformer_blocks.0.norm3.weight"} : () -> !blade.tensor<[32], f32>
      %24 = blade.weight {name = "transformer_blocks.0.norm3.bias"} : () -> !blade.tensor<[32], f32>
      %25 = blade.weight {name = "transformer_blocks.0.ff.net.0.proj.weight"} : () -> !blade.tensor<[256, 32], f32>
      %26 = blade.weight {name = "transformer_blocks.0.ff.net.0.proj.bias"} : () -> !blade.tensor<[256], f32>
      %27 = blade.weight {name = "transformer_blocks.0.ff.net.2.weight"} : () -> !blade.tensor<[32, 128], f32>
      %28 = blade.weight {name = "transformer_blocks.0.ff.net.2.bias"} : () -> !blade.tensor<[32], f32>
      %29 = blade.weight {name = "proj_out.weight"} : () -> !blade.tensor<[32, 32, 1, 1], f32>
      %30 = blade.weight {name = "proj_out.bias"} : () -> !blade.tensor<[32], f32>
      %31 = blade.permute %3 {perm = array<i64: 0, 2, 3, 1>} : (!blade.tensor<[s0, 32, s1, s2], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %32 = blade.group_norm %31, %5, %6 {num_groups = 8 : i64, eps = 1.000000e-06 : f64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %33 = blade.conv %32, %7, %8 {stride = array<i64: 1, 1>, padding = array<i64: 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32, 32, 1, 1], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %34 = blade.reshape %33 : (!blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %35 = blade.layer_norm %34, %9, %10 {normalized_ndim = 1 : i64, eps = 1.000000e-05 : f64} : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %36 = blade.linear %35, %11 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %37 = blade.linear %35, %12 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %38 = blade.linear %35, %13 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %39 = blade.reshape %36 : (!blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 2, 16], f32>
      %40 = blade.permute %39 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, s1*s2, 2, 16], f32>) -> !blade.tensor<[s0, 2, s1*s2, 16], f32>
      %41 = blade.reshape %37 : (!blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 2, 16], f32>
      %42 = blade.permute %41 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, s1*s2, 2, 16], f32>) -> !blade.tensor<[s0, 2, s1*s2, 16], f32>
      %43 = blade.reshape %38 : (!blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 2, 16], f32>
      %44 = blade.permute %43 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, s1*s2, 2, 16], f32>) -> !blade.tensor<[s0, 2, s1*s2, 16], f32>
      %45 = blade.attention %40, %42, %44 {is_causal = 0 : i64} : (!blade.tensor<[s0, 2, s1*s2, 16], f32>, !blade.tensor<[s0, 2, s1*s2, 16], f32>, !blade.tensor<[s0, 2, s1*s2, 16], f32>) -> !blade.tensor<[s0, 2, s1*s2, 16], f32>
      %46 = blade.permute %45 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, 2, s1*s2, 16], f32>) -> !blade.tensor<[s0, s1*s2, 2, 16], f32>
      %47 = blade.reshape %46 : (!blade.tensor<[s0, s1*s2, 2, 16], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %48 = blade.linear %47, %14, %15 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32, 32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %49 = blade.add %48, %34 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %50 = blade.layer_norm %49, %16, %17 {normalized_ndim = 1 : i64, eps = 1.000000e-05 : f64} : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %51 = blade.linear %50, %18 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %52 = blade.linear %4, %19 : (!blade.tensor<[s0, s3, 24], f32>, !blade.tensor<[32, 24], f32>) -> !blade.tensor<[s0, s3, 32], f32>
      %53 = blade.linear %4, %20 : (!blade.tensor<[s0, s3, 24], f32>, !blade.tensor<[32, 24], f32>) -> !blade.tensor<[s0, s3, 32], f32>
      %54 = blade.reshape %51 : (!blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 2, 16], f32>
      %55 = blade.permute %54 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, s1*s2, 2, 16], f32>) -> !blade.tensor<[s0, 2, s1*s2, 16], f32>
      %56 = blade.reshape %52 : (!blade.tensor<[s0, s3, 32], f32>) -> !blade.tensor<[s0, s3, 2, 16], f32>
      %57 = blade.permute %56 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, s3, 2, 16], f32>) -> !blade.tensor<[s0, 2, s3, 16], f32>
      %58 = blade.reshape %53 : (!blade.tensor<[s0, s3, 32], f32>) -> !blade.tensor<[s0, s3, 2, 16], f32>
      %59 = blade.permute %58 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, s3, 2, 16], f32>) -> !blade.tensor<[s0, 2, s3, 16], f32>
      %60 = blade.attention %55, %57, %59 {is_causal = 0 : i64} : (!blade.tensor<[s0, 2, s1*s2, 16], f32>, !blade.tensor<[s0, 2, s3, 16], f32>, !blade.tensor<[s0, 2, s3, 16], f32>) -> !blade.tensor<[s0, 2, s1*s2, 16], f32>
      %61 = blade.permute %60 {perm = array<i64: 0, 2, 1, 3>} : (!blade.tensor<[s0, 2, s1*s2, 16], f32>) -> !blade.tensor<[s0, s1*s2, 2, 16], f32>
      %62 = blade.reshape %61 : (!blade.tensor<[s0, s1*s2, 2, 16], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %63 = blade.linear %62, %21, %22 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32, 32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %64 = blade.add %63, %49 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %65 = blade.layer_norm %64, %23, %24 {normalized_ndim = 1 : i64, eps = 1.000000e-05 : f64} : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[32], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %66 = blade.linear %65, %25, %26 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[256, 32], f32>, !blade.tensor<[256], f32>) -> !blade.tensor<[s0, s1*s2, 256], f32>
      %67 = blade.slice %66 {dim = 2 : i64, start = #blade.dims<[0]>, step = 1 : i64} : (!blade.tensor<[s0, s1*s2, 256], f32>) -> !blade.tensor<[s0, s1*s2, 128], f32>
      %68 = blade.slice %66 {dim = 2 : i64, start = #blade.dims<[128]>, step = 1 : i64} : (!blade.tensor<[s0, s1*s2, 256], f32>) -> !blade.tensor<[s0, s1*s2, 128], f32>
      %69 = blade.gelu %68 {approximate = "none"} : (!blade.tensor<[s0, s1*s2, 128], f32>) -> !blade.tensor<[s0, s1*s2, 128], f32>
      %70 = blade.mul %67, %69 : (!blade.tensor<[s0, s1*s2, 128], f32>, !blade.tensor<[s0, s1*s2, 128], f32>) -> !blade.tensor<[s0, s1*s2, 128], f32>
      %71 = blade.linear %70, %27, %28 : (!blade.tensor<[s0, s1*s2, 128], f32>, !blade.tensor<[32, 128], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %72 = blade.add %71, %64 : (!blade.tensor<[s0, s1*s2, 32], f32>, !blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1*s2, 32], f32>
      %73 = blade.reshape %72 : (!blade.tensor<[s0, s1*s2, 32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %74 = blade.conv %73, %29, %30 {stride = array<i64: 1, 1>, padding = array<i64: 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64, layout = "nhwc"} : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[32, 32, 1, 1], f32>, !blade.tensor<[32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %75 = blade.add %74, %31 : (!blade.tensor<[s0, s1, s2, 32], f32>, !blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, s1, s2, 32], f32>
      %76 = blade.permute %75 {perm = array<i64: 0, 3, 1, 2>} : (!blade.tensor<[s0, s1, s2, 32], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
      blade.yield %76 : (!blade.tensor<[s0, 32, s1, s2], f32>) -> ()
    }) {id = 0 : i64} : (!blade.tensor<[s0, 32, s1, s2], f32>, !blade.tensor<[s0, s3, 24], f32>) -> !blade.tensor<[s0, 32, s1, s2], f32>
    func.return %2 : !blade.tensor<[s0, 32, s1, s2], f32>
  }
}
