// Blade runtime, native part: the Python binding of the runtime core (program_core.h):
// shape-program evaluation (guards, sizes, grids from input dims without touching Python objects
// per operation) and the arena planner of a Program.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "program_core.h"

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  m.doc() = "Blade runtime, native part: shape-program evaluation and the arena planner";
  m.def("run_shape_program", &blade::run_shape_program, py::arg("code"), py::arg("symbols"),
        "Evaluate a shape program; returns the emitted values in order.");
  m.def(
      "first_fit",
      [](const std::vector<std::tuple<int64_t, int64_t, int64_t>>& buffers, int64_t align) {
        std::vector<blade::ArenaBuffer> in;
        in.reserve(buffers.size());
        for (const auto& [n, first, last] : buffers) in.push_back({n, first, last});
        blade::ArenaPlan plan = blade::first_fit(in, align);
        return std::make_pair(plan.offsets, plan.total);
      },
      py::arg("buffers"), py::arg("align"),
      "Arena offsets for (nbytes, first, last) buffers; returns (offsets, total bytes).");
}
