// ctest: the runtime core without Python. Shape programs against hand-computed values (Python
// integer semantics) and the arena planner's invariants; exits non-zero on the first failure.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "../program_core.h"

namespace {

using blade_test::check;
using blade_test::failures;

// Opcodes of blade/runtime/shape_eval.py.
enum : int64_t { C = 0, S = 1, ADD = 2, SUB = 3, MUL = 4, FDIV = 5, CDIV = 6, MOD = 7, LT = 13, EMIT = 20 };

void test_shape_program() {
  // [(s1 - 1) // 2 + 1, ceil(s0 / 3), (-s0) % 4, s0 * s1 < 100]
  const std::vector<int64_t> code = {S, 1, C, 1, SUB, C, 2, FDIV, C, 1, ADD, EMIT,
                                     S, 0, C, 3, CDIV, EMIT,
                                     C, 0, S, 0, SUB, C, 4, MOD, EMIT,
                                     S, 0, S, 1, MUL, C, 100, LT, EMIT};
  const auto out = blade::run_shape_program(code, {7, 9});
  check(out == std::vector<int64_t>({5, 3, 1, 1}), "shape program values");
  const auto neg = blade::run_shape_program({C, -7, C, 2, FDIV, EMIT}, {});
  check(neg == std::vector<int64_t>({-4}), "floor division rounds toward -inf");
  bool threw = false;
  try {
    blade::run_shape_program({S, 5, EMIT}, {1});
  } catch (const std::out_of_range&) {
    threw = true;
  }
  check(threw, "symbol index out of range throws");
}

void test_first_fit() {
  // buffers never live together share memory; buffers live at one step never overlap
  auto plan = blade::first_fit({{1000, 0, 1}, {1000, 2, 3}}, 256);
  check(plan.offsets == std::vector<int64_t>({0, 0}) && plan.total == 1000, "disjoint lifetimes reuse");
  plan = blade::first_fit({{1000, 0, 2}, {1000, 2, 3}}, 256);
  check(plan.offsets == std::vector<int64_t>({0, 1024}) && plan.total == 2024, "overlapping lifetimes");
  std::mt19937 rng(0);
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<blade::ArenaBuffer> bufs;
    const int n = 1 + static_cast<int>(rng() % 16);
    for (int i = 0; i < n; ++i) {
      const int64_t first = rng() % 20;
      bufs.push_back({static_cast<int64_t>(rng() % 5000), first, first + static_cast<int64_t>(rng() % 6)});
    }
    plan = blade::first_fit(bufs, 256);
    for (int i = 0; i < n; ++i) {
      const auto& a = bufs[i];
      const int64_t oa = plan.offsets[i];
      check(oa % 256 == 0 && oa + a.nbytes <= plan.total, "aligned and inside the arena");
      for (int j = 0; j < i; ++j) {
        const auto& b = bufs[j];
        const int64_t ob = plan.offsets[j];
        const bool together = !(a.last < b.first || b.last < a.first);
        const bool disjoint = oa + a.nbytes <= ob || ob + b.nbytes <= oa;
        check(!together || a.nbytes == 0 || b.nbytes == 0 || disjoint, "live buffers never overlap");
      }
    }
  }
}

void test_call_planner() {
  // one input [2*s0, 3]; slots: 0 = 2*s0, 1 = 3, 2 = s0 <= 8 (check), 3 = s0 * 12 (buffer bytes),
  // 4 = device symbol + 1
  const std::vector<int64_t> code = {C, 2, S, 0, MUL, EMIT, C, 3, EMIT, S, 0, C, 8, 14, EMIT,
                                     S, 0, C, 12, MUL, EMIT, S, 1, C, 1, ADD, EMIT};
  blade::CallPlanner planner(1, {{0, 0, 0, 2, 0}}, code, {2}, {{0, 1}}, {3, 3}, {{0, 0, 1}, {0, 1, 2}}, 256);
  auto r = planner.prepare({{10, 3}}, {132});
  check(r.ok && r.slots == std::vector<int64_t>({10, 3, 1, 60, 133}), "planner slots");
  check(r.offsets == std::vector<int64_t>({0, 256}) && r.total == 316, "planner arena");
  r = planner.prepare({{18, 3}}, {4});
  check(!r.ok && r.failed_checks == std::vector<int64_t>({0}), "planner reports the failed check");
  r = planner.prepare({{7, 3}}, {4});
  check(!r.ok && r.bad_input == 0, "odd size is not a multiple of the coefficient");
  r = planner.prepare({{10, 4}}, {4});
  check(!r.ok && r.bad_input == 0, "static dim mismatch");
  r = planner.prepare({{10}}, {4});
  check(!r.ok && r.bad_input == 0, "rank mismatch");

  // one input [2*s0 - 1] (an odd dim, as torch.export writes it); slot 0 = 2*s0 - 1, 1 = s0 * 4 bytes
  blade::CallPlanner odd(1, {{0, 0, 0, 2, -1}}, {C, 2, S, 0, MUL, C, 1, SUB, EMIT, S, 0, C, 4, MUL, EMIT}, {},
                         {{0}}, {1}, {{0, 0, 1}}, 256);
  r = odd.prepare({{9}}, {});
  check(r.ok && r.slots == std::vector<int64_t>({9, 20}), "symbol bound through an offset");
  r = odd.prepare({{8}}, {});
  check(!r.ok && r.bad_input == 0, "an even size does not fit 2*s0 - 1");

  // ever new sizes: the placements kept stay bounded, and a size met again is placed again
  for (int64_t n = 1; n < 3 * static_cast<int64_t>(blade::CallPlanner::kMaxPlans); n += 2) {
    r = odd.prepare({{n}}, {});
    check(r.ok && r.total == 2 * (n + 1), "placement of a new size");
    check(odd.cached_plans() <= blade::CallPlanner::kMaxPlans, "placements kept are bounded");
  }
  r = odd.prepare({{9}}, {});
  check(r.ok && r.slots == std::vector<int64_t>({9, 20}) && r.total == 20, "a size placed again");
}

}  // namespace

int main() {
  test_shape_program();
  test_first_fit();
  test_call_planner();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("program core: all checks passed\n");
  return EXIT_SUCCESS;
}
