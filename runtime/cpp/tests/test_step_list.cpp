// ctest: the C++ step list's relocation without a GPU. A launch's pointer arguments are its base's
// address plus the offset it was made with, its scalars pass unchanged in their type's slot; a
// GEMM's and a convolution's five operands likewise (no bias: 0); bad ranges, too few bases and running a list made
// to be resolved only are refused with messages naming the step.
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "../step_list.h"

namespace {

using blade_test::check;
using blade_test::failures;

bool throws_with(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const std::exception& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

void test_relocation() {
  blade::StepList list;
  std::vector<blade::KernelArg> args(4);
  args[0].i = 256;  // offset into base 0
  args[1].i = 7;    // int32 scalar
  args[2].i = 16;   // offset into base 2
  args[3].f = 0.5;  // float32 scalar
  list.add_launch(nullptr, 3, 1, 1, "pipf", {0, -1, 2, -1}, args, "step 4 (launch k)");
  list.add_gemm(nullptr, 0, {1, 2, 0, -1, 3}, {0, 32, 512, 0, 0}, "step 5 (library_call torch.linear)");
  list.add_conv(nullptr, 0, {0, 3, 1, 2, -1}, {64, 0, 1024, 8, 0}, "step 6 (library_call torch.conv)");
  check(list.size() == 3 && list.num_bases() == 4, "three steps naming bases 0-3");
  std::vector<uint64_t> bases = {0x10000, 0x20000, 0x30000, 0x40000};
  auto r = list.resolve(bases, 0, 3);
  check(r.size() == 3 && r[0].size() == 4, "a launch resolves to its 4 parameter slots (no scratch)");
  check(r[0][0] == 0x10000 + 256, "pointer = base 0 + offset");
  int32_t i32;
  std::memcpy(&i32, &r[0][1], 4);
  check(i32 == 7, "int32 scalar unchanged");
  check(r[0][2] == 0x30000 + 16, "pointer = base 2 + offset");
  float f32;
  std::memcpy(&f32, &r[0][3], 4);
  check(f32 == 0.5f, "float32 scalar unchanged");
  check(r[1] == std::vector<uint64_t>({0x20000, 0x30000 + 32, 0x10000 + 512, 0, 0x40000}), "GEMM operands relocated, no bias = 0");
  check(r[2] == std::vector<uint64_t>({0x10000 + 64, 0x40000, 0x20000 + 1024, 0x30000 + 8, 0}),
        "convolution operands relocated, no workspace = 0");
  check(throws_with([&] { list.run(bases, 0, 0, 2, 3); }, "step 6 (library_call torch.conv)"),
        "running a resolve-only convolution names the step");
  list.add_copy({2, 0}, {640, 1280}, 1920, 640, 640, 4096, "step 7 (library_call torch.concat)");
  auto c = list.resolve(bases, 3, 4);
  list.add_attention(nullptr, 0, {0, 0, 0, 1, -1}, {0, 4096, 8192, 128, 0}, "step 8 (library_call torch.attention)");
  check(list.resolve(bases, 4, 5)[0] == std::vector<uint64_t>({0x10000, 0x10000 + 4096, 0x10000 + 8192, 0x20000 + 128, 0}),
        "attention operands relocated, no workspace = 0");
  check(throws_with([&] { list.run(bases, 0, 0, 4, 5); }, "step 8 (library_call torch.attention)"),
        "running a resolve-only attention names the step");
  check(c.size() == 1 && c[0] == std::vector<uint64_t>({0x30000 + 640, 0x10000 + 1280}),
        "a copy resolves to its destination and source");
  check(throws_with([&] { list.add_copy({0, 1}, {0, 0}, 100, 640, 640, 2, "step 8"); }, "pitches"),
        "a copy whose pitch is below its width is refused");
  check(throws_with([&] { list.add_copy({-1, 1}, {0, 0}, 640, 640, 640, 2, "step 9"); }, "without a base"),
        "a copy without a base is refused");
  bases[0] = 0x90000;  // another call: only the bases change
  check(list.resolve(bases, 0, 1)[0][0] == 0x90000 + 256, "a new arena address moves the pointer");
}

void test_refusals() {
  blade::StepList list;
  std::vector<blade::KernelArg> args(1);
  check(throws_with([&] { list.add_launch(nullptr, 1, 1, 1, "i", {0}, args, "step 1"); }, "not a pointer"),
        "a base on a scalar argument is refused");
  list.add_launch(nullptr, 1, 1, 1, "p", {1}, args, "step 2 (launch k)");
  check(throws_with([&] { list.resolve({0}, 0, 1); }, "bases given"), "too few bases refused");
  check(throws_with([&] { list.resolve({0, 0}, 0, 2); }, "steps [0, 2)"), "a range past the end refused");
  check(throws_with([&] { list.run({0, 0}, 0, 0, 0, 1); }, "step 2 (launch k)"), "running a resolve-only list names the step");
}

void test_call() {
  auto list = std::make_shared<blade::StepList>();
  std::vector<blade::KernelArg> args(1);
  args[0].i = 8;
  list->add_launch(nullptr, 1, 1, 1, "p", {2}, args, "step 3 (launch k)");
  check(throws_with([&] { blade::StepCall(list, {0, 0}); }, "bases given"), "a call with too few bases refused");
  blade::StepCall call(list, {0, 0, 0x5000});
  call.set(2, 0x7000);
  check(call.bases()[2] == 0x7000, "set moves a base");
  check(throws_with([&] { call.set(3, 1); }, "base 3"), "a base past the end refused");
  check(list->resolve(call.bases(), 0, 1)[0][0] == 0x7008, "the call's bases relocate the pointer");
  check(throws_with([&] { call.run(0, 0, 0, 1); }, "step 3 (launch k)"), "running through a call names the step");
}

}  // namespace

int main() {
  test_relocation();
  test_refusals();
  test_call();
  if (failures == 0) std::printf("step_list: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
