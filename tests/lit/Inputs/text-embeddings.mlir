// Token and position embeddings, a LayerNorm and a pooled row (x[arange(b), ids.argmax(-1)]),
// as a text encoder's import reads after canonicalize (tests/lit/fuse-stitch.mlir, EMBED).
builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64, origin = "ids.size(0)"} : () -> ()
  blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "ids.size(1)"} : () -> ()
  func.func @forward(%0: !blade.tensor<[s0, s1], i64>) -> (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s0, 24], f32>) attributes {blade.input_names = ["ids"]} {
    %1, %2 = blade.cluster %0 ({
    ^bb0(%3: !blade.tensor<[s0, s1], i64>):
      %4 = blade.weight {name = "tok.weight"} : () -> !blade.tensor<[50, 24], f32>
      %5 = blade.weight {name = "pos.weight"} : () -> !blade.tensor<[40, 24], f32>
      %6 = blade.weight {name = "ln.weight"} : () -> !blade.tensor<[24], f32>
      %7 = blade.weight {name = "ln.bias"} : () -> !blade.tensor<[24], f32>
      %8 = blade.iota {start = 0.000000e+00 : f64, step = 1.000000e+00 : f64} : () -> !blade.tensor<[s1], i64>
      %9 = blade.embedding %4, %3 : (!blade.tensor<[50, 24], f32>, !blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0, s1, 24], f32>
      %10 = blade.embedding %5, %8 : (!blade.tensor<[40, 24], f32>, !blade.tensor<[s1], i64>) -> !blade.tensor<[s1, 24], f32>
      %11 = blade.add %9, %10 : (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s1, 24], f32>) -> !blade.tensor<[s0, s1, 24], f32>
      %12 = blade.layer_norm %11, %6, %7 {normalized_ndim = 1 : i64, eps = 1.000000e-05 : f64} : (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[24], f32>, !blade.tensor<[24], f32>) -> !blade.tensor<[s0, s1, 24], f32>
      %13 = blade.iota {start = 0.000000e+00 : f64, step = 1.000000e+00 : f64} : () -> !blade.tensor<[s0], i64>
      %14 = blade.argmax %3 {dims = array<i64: -1>, keepdim = 0 : i64} : (!blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0], i64>
      %15 = blade.index %12, %13, %14 {indexed = array<i64: 0, 1>} : (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s0], i64>, !blade.tensor<[s0], i64>) -> !blade.tensor<[s0, 24], f32>
      blade.yield %12, %15 : (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s0, 24], f32>) -> ()
    }) {id = 0 : i64} : (!blade.tensor<[s0, s1], i64>) -> (!blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s0, 24], f32>)
    func.return %1, %2 : !blade.tensor<[s0, s1, 24], f32>, !blade.tensor<[s0, 24], f32>
  }
}
