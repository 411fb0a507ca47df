// RUN: blade-opt %s -p convert-fp16 | filecheck %s

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 4], f32>, %t: !blade.tensor<[s0], i64>) -> !blade.tensor<[s0, 8], f32> {
    %w = blade.weight {name = "lin.weight"} : () -> !blade.tensor<[8, 4], f32>
    %y = blade.linear %x, %w : (!blade.tensor<[s0, 4], f32>, !blade.tensor<[8, 4], f32>) -> !blade.tensor<[s0, 8], f32>
    %tf = blade.cast %t : (!blade.tensor<[s0], i64>) -> !blade.tensor<[s0], f32>
    %c = blade.constant {value = 0.5 : f64} : () -> !blade.tensor<[], f32>
    %e = blade.mul %tf, %c : (!blade.tensor<[s0], f32>, !blade.tensor<[], f32>) -> !blade.tensor<[s0], f32>
    %e2 = blade.reshape %e : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0, 1], f32>
    %z = blade.add %y, %e2 : (!blade.tensor<[s0, 8], f32>, !blade.tensor<[s0, 1], f32>) -> !blade.tensor<[s0, 8], f32>
    func.return %z : !blade.tensor<[s0, 8], f32>
  }
}

// Inputs and weights are converted where they enter; the model's own float32 island (an integer
// cast to float and scaled) stays float32; where it meets float16 values in an elementwise op the
// op promotes as eager's does (float16 + float32 computes in float32), so the output needs no cast.
// CHECK:      %[[X16:.*]] = blade.cast %{{.*}} : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[s0, 4], f16>
// CHECK:      %[[W:.*]] = blade.weight {name = "lin.weight"} : () -> !blade.tensor<[8, 4], f32>
// CHECK-NEXT: %[[W16:.*]] = blade.cast %[[W]] : (!blade.tensor<[8, 4], f32>) -> !blade.tensor<[8, 4], f16>
// CHECK-NEXT: %[[Y:.*]] = blade.linear %[[X16]], %[[W16]] : {{.*}} -> !blade.tensor<[s0, 8], f16>
// CHECK:      blade.mul {{.*}} -> !blade.tensor<[s0], f32>
// CHECK:      %[[E:.*]] = blade.reshape {{.*}} -> !blade.tensor<[s0, 1], f32>
// CHECK-NEXT: %[[Y32:.*]] = blade.cast %[[Y]] : (!blade.tensor<[s0, 8], f16>) -> !blade.tensor<[s0, 8], f32>
// CHECK-NEXT: %[[Z:.*]] = blade.add %[[Y32]], %[[E]] : {{.*}} -> !blade.tensor<[s0, 8], f32>
// CHECK-NEXT: func.return %[[Z]]
