// RUN: blade-opt %s -p sink-weight-casts | filecheck %s

builtin.module {
  blade.symbol {sym_name = "s0", lo = 1 : i64} : () -> ()
  func.func @forward(%x: !blade.tensor<[s0, 4], f16>) -> !blade.tensor<[s0, 4], f16> {
    %wa = blade.weight {name = "a.weight"} : () -> !blade.tensor<[4, 4], f32>
    %wa16 = blade.cast %wa : (!blade.tensor<[4, 4], f32>) -> !blade.tensor<[4, 4], f16>
    %wb = blade.weight {name = "b.weight"} : () -> !blade.tensor<[4, 4], f32>
    %wb16 = blade.cast %wb : (!blade.tensor<[4, 4], f32>) -> !blade.tensor<[4, 4], f16>
    %h = blade.relu %x : (!blade.tensor<[s0, 4], f16>) -> !blade.tensor<[s0, 4], f16>
    %y = blade.linear %h, %wa16 : (!blade.tensor<[s0, 4], f16>, !blade.tensor<[4, 4], f16>) -> !blade.tensor<[s0, 4], f16>
    %g = blade.relu %y : (!blade.tensor<[s0, 4], f16>) -> !blade.tensor<[s0, 4], f16>
    %z = blade.linear %g, %wb16 : (!blade.tensor<[s0, 4], f16>, !blade.tensor<[4, 4], f16>) -> !blade.tensor<[s0, 4], f16>
    %o = blade.linear %z, %wa16 : (!blade.tensor<[s0, 4], f16>, !blade.tensor<[4, 4], f16>) -> !blade.tensor<[s0, 4], f16>
    func.return %o : !blade.tensor<[s0, 4], f16>
  }
}

// Each weight's cast moves to just before its first user; the weights stay where they were.
// CHECK:      %[[WA:.*]] = blade.weight {name = "a.weight"}
// CHECK-NEXT: %[[WB:.*]] = blade.weight {name = "b.weight"}
// CHECK-NEXT: %[[H:.*]] = blade.relu
// CHECK-NEXT: %[[WA16:.*]] = blade.cast %[[WA]]
// CHECK-NEXT: %[[Y:.*]] = blade.linear %[[H]], %[[WA16]]
// CHECK-NEXT: %[[G:.*]] = blade.relu %[[Y]]
// CHECK-NEXT: %[[WB16:.*]] = blade.cast %[[WB]]
// CHECK-NEXT: %[[Z:.*]] = blade.linear %[[G]], %[[WB16]]
// CHECK-NEXT: blade.linear %[[Z]], %[[WA16]]
