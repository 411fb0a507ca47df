builtin.module {
  func.func @forward(%x: !blade.tensor<[s0, 4], f32>, %y: !blade.tensor<[s0, 5], f32>) -> !blade.tensor<[?, ?], f32> {
    %z = blade.add %x, %y : (!blade.tensor<[s0, 4], f32>, !blade.tensor<[s0, 5], f32>) -> !blade.tensor<[?, ?], f32>
    func.return %z : !blade.tensor<[?, ?], f32>
  }
}
