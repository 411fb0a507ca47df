// RUN: blade-opt %s -p cluster-supported | filecheck %s

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 16], f32>) -> !blade.tensor<[s0], f32> {
    %w = blade.weight {name = "proj.weight"} : () -> !blade.tensor<[5, 9], f32>
    %r = blade.relu %x : (!blade.tensor<[s0, 16], f32>) -> !blade.tensor<[s0, 16], f32>
    %m = blade.reduce_mean %x {dims = array<i64: -1>, keepdim = 0 : i64} : (!blade.tensor<[s0, 16], f32>) -> !blade.tensor<[s0], f32>
    %f = blade.torch_op %r {target = "aten._fft_r2c.default", call = "[[{\22t\22: 0}, [1], 0, true], {\22kw\22: {}}]", reason = "no Blade lowering"} : (!blade.tensor<[s0, 16], f32>) -> !blade.tensor<[s0, 9], complex<f32>>
    %a = blade.torch_op %f {target = "aten.abs.default", call = "[[{\22t\22: 0}], {\22kw\22: {}}]", reason = "complex dtype"} : (!blade.tensor<[s0, 9], complex<f32>>) -> !blade.tensor<[s0, 9], f32>
    %l = blade.linear %a, %w : (!blade.tensor<[s0, 9], f32>, !blade.tensor<[5, 9], f32>) -> !blade.tensor<[s0, 5], f32>
    %s = blade.reduce_sum %l {dims = array<i64: -1>, keepdim = 0 : i64} : (!blade.tensor<[s0, 5], f32>) -> !blade.tensor<[s0], f32>
    %o = blade.add %s, %m : (!blade.tensor<[s0], f32>, !blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>
    func.return %o : !blade.tensor<[s0], f32>
  }
}

// Cluster 0 runs before the fallbacks, the dependent ops after them; the weight moves into the
// cluster that reads it instead of being passed between clusters.
// CHECK:      %[[R:.*]], %[[M:.*]] = blade.cluster %{{.*}} ({
// CHECK:        blade.relu
// CHECK:        blade.reduce_mean
// CHECK:        blade.yield
// CHECK:      }) {id = 0 : i64}
// CHECK-NEXT: %[[F:.*]] = blade.torch_op %[[R]] {target = "aten._fft_r2c.default"
// CHECK-NEXT: %[[A:.*]] = blade.torch_op %[[F]] {target = "aten.abs.default"
// CHECK-NEXT: %{{.*}} = blade.cluster %[[A]], %[[M]] ({
// CHECK:        blade.weight {name = "proj.weight"}
// CHECK:        blade.linear
// CHECK:        blade.add
// CHECK:      }) {id = 2 : i64}
