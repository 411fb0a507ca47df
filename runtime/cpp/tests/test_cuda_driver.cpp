// ctest: the cubin launcher's parts that need no GPU. Parameter packing (one 8-byte slot per
// argument in its kernel type, the two null scratch pointers last) and, on a machine without a
// GPU, a clear "not available" instead of a crash; exits non-zero on the first failure.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "../cuda_driver.h"

namespace {

using blade_test::check;
using blade_test::failures;

void test_packing() {
  std::vector<blade::KernelArg> args(5);
  args[0].i = 0x7f00deadbeef;  // a device pointer
  args[1].i = -3;              // int32
  args[2].i = int64_t(1) << 40;
  args[3].f = 1.5;             // float32
  args[4].f = -2.25;           // float64
  blade::PackedParams p = blade::pack_params("pilfd", args);
  check(p.slots.size() == 7 && p.pointers.size() == 7, "5 arguments + 2 scratch pointers");
  check(p.slots[0] == 0x7f00deadbeefULL, "pointer slot");
  int32_t i32;
  std::memcpy(&i32, &p.slots[1], 4);
  check(i32 == -3, "int32 slot holds the value in its low 4 bytes");
  int64_t i64;
  std::memcpy(&i64, &p.slots[2], 8);
  check(i64 == (int64_t(1) << 40), "int64 slot");
  float f32;
  std::memcpy(&f32, &p.slots[3], 4);
  check(f32 == 1.5f, "float32 slot");
  double f64;
  std::memcpy(&f64, &p.slots[4], 8);
  check(f64 == -2.25, "float64 slot");
  check(p.slots[5] == 0 && p.slots[6] == 0, "scratch pointers are null");
  for (size_t k = 0; k < p.slots.size(); ++k) check(p.pointers[k] == &p.slots[k], "pointer to each slot");
  bool threw = false;
  try {
    blade::pack_params("px", {args[0], args[1]});
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "unknown type code refused");
  threw = false;
  try {
    blade::pack_params("p", args);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "count mismatch refused");
}

void test_without_a_gpu() {
  std::string why;
  if (blade::cuda_available(&why)) return;  // a GPU machine: the GPU tests launch for real
  check(!why.empty(), "unavailable driver says why");
  blade::CudaKernel k("not a cubin", "kernel_entry", 0, 4);
  bool threw = false;
  try {
    k.launch(1, 1, 1, 0, "", {});
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("kernel_entry") != std::string::npos;
  }
  check(threw, "a launch without a driver raises naming the kernel");
}

}  // namespace

int main() {
  test_packing();
  test_without_a_gpu();
  if (failures) std::fprintf(stderr, "%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
