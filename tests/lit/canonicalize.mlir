// RUN: blade-opt %s -p canonicalize | filecheck %s

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 4, 6], f32>) -> (!blade.tensor<[s0, 24], f32>, !blade.tensor<[s0, 4, 6], f32>) {
    %same = blade.reshape %x : (!blade.tensor<[s0, 4, 6], f32>) -> !blade.tensor<[s0, 4, 6], f32>
    %a = blade.reshape %same : (!blade.tensor<[s0, 4, 6], f32>) -> !blade.tensor<[s0, 4, 2, 3], f32>
    %b = blade.reshape %a : (!blade.tensor<[s0, 4, 2, 3], f32>) -> !blade.tensor<[s0, 24], f32>
    %p = blade.permute %x {perm = array<i64: 0, 2, 1>} : (!blade.tensor<[s0, 4, 6], f32>) -> !blade.tensor<[s0, 6, 4], f32>
    %q = blade.permute %p {perm = array<i64: 0, 2, 1>} : (!blade.tensor<[s0, 6, 4], f32>) -> !blade.tensor<[s0, 4, 6], f32>
    %c = blade.cast %q : (!blade.tensor<[s0, 4, 6], f32>) -> !blade.tensor<[s0, 4, 6], f32>
    %dead = blade.exp %x : (!blade.tensor<[s0, 4, 6], f32>) -> !blade.tensor<[s0, 4, 6], f32>
    func.return %b, %c : !blade.tensor<[s0, 24], f32>, !blade.tensor<[s0, 4, 6], f32>
  }
}

// Two reshapes become one, the no-op reshape/cast and the inverse permutes disappear, dead ops go.
// CHECK:      func.func @forward(%[[X:.*]]: !blade.tensor<[s0, 4, 6], f32>)
// CHECK-NEXT:   %[[R:.*]] = blade.reshape %[[X]] : (!blade.tensor<[s0, 4, 6], f32>) -> !blade.tensor<[s0, 24], f32>
// CHECK-NEXT:   func.return %[[R]], %[[X]] : !blade.tensor<[s0, 24], f32>, !blade.tensor<[s0, 4, 6], f32>
// CHECK-NOT:  blade.exp
