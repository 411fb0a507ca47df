// The timestep embedding of a diffusion UNet (diffusers' get_timestep_embedding) with a dynamic
// half width s1, after canonicalize: input of tests/lit/fuse-stitch.mlir (TIMESTEP).
builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64, origin = "t.size(0)"} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "x.size(1) / 2"} : () -> ()
  func.func @forward(%0: !blade.tensor<[s0], f32>, %1: !blade.tensor<[s0, 2*s1], f32>) -> !blade.tensor<[s0, 2*s1], f32> attributes {blade.input_names = ["t", "x"]} {
    %2 = blade.cluster %0, %1 ({
    ^bb0(%3: !blade.tensor<[s0], f32>, %4: !blade.tensor<[s0, 2*s1], f32>):
      %5 = blade.iota {start = 0.000000e+00 : f64, step = 1.000000e+00 : f64} : () -> !blade.tensor<[s1], f32>
      %6 = blade.constant {value = -9.2103403719761836 : f64} : () -> !blade.tensor<[], f32>
      %7 = blade.mul %5, %6 : (!blade.tensor<[s1], f32>, !blade.tensor<[], f32>) -> !blade.tensor<[s1], f32>
      %8 = blade.dim_value {value = #blade.dims<[s1]>} : () -> !blade.tensor<[], i64>
      %9 = blade.div %7, %8 : (!blade.tensor<[s1], f32>, !blade.tensor<[], i64>) -> !blade.tensor<[s1], f32>
      %10 = blade.exp %9 : (!blade.tensor<[s1], f32>) -> !blade.tensor<[s1], f32>
      %11 = blade.reshape %3 : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0, 1], f32>
      %12 = blade.reshape %10 : (!blade.tensor<[s1], f32>) -> !blade.tensor<[1, s1], f32>
      %13 = blade.mul %11, %12 : (!blade.tensor<[s0, 1], f32>, !blade.tensor<[1, s1], f32>) -> !blade.tensor<[s0, s1], f32>
      %14 = blade.sin %13 : (!blade.tensor<[s0, s1], f32>) -> !blade.tensor<[s0, s1], f32>
      %15 = blade.cos %13 : (!blade.tensor<[s0, s1], f32>) -> !blade.tensor<[s0, s1], f32>
      %16 = blade.concat %14, %15 {dim = 1 : i64} : (!blade.tensor<[s0, s1], f32>, !blade.tensor<[s0, s1], f32>) -> !blade.tensor<[s0, 2*s1], f32>
      %17 = blade.add %4, %16 : (!blade.tensor<[s0, 2*s1], f32>, !blade.tensor<[s0, 2*s1], f32>) -> !blade.tensor<[s0, 2*s1], f32>
      blade.yield %17 : (!blade.tensor<[s0, 2*s1], f32>) -> ()
    }) {id = 0 : i64} : (!blade.tensor<[s0], f32>, !blade.tensor<[s0, 2*s1], f32>) -> !blade.tensor<[s0, 2*s1], f32>
    func.return %2 : !blade.tensor<[s0, 2*s1], f32>
  }
}
