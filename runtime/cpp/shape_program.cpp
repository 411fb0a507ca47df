// Blade runtime, native part: the Python binding of the runtime core (program_core.h):
// shape-program evaluation (guards, sizes, grids from input dims without touching Python objects
// per operation), the arena planner and the per-call planner of a Program.
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

  py::class_<blade::PreparedCall>(m, "PreparedCall")
      .def_readonly("ok", &blade::PreparedCall::ok)
      .def_readonly("slots", &blade::PreparedCall::slots)
      .def_readonly("offsets", &blade::PreparedCall::offsets)
      .def_readonly("total", &blade::PreparedCall::total)
      .def_readonly("failed_checks", &blade::PreparedCall::failed_checks)
      .def_readonly("bad_input", &blade::PreparedCall::bad_input);
  py::class_<blade::CallPlanner>(m, "CallPlanner")
      .def(py::init([](int64_t num_symbols, const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>& bindings,
                       std::vector<int64_t> code, std::vector<int64_t> check_slots,
                       std::vector<std::vector<int64_t>> input_dim_slots, std::vector<int64_t> buffer_size_slots,
                       const std::vector<std::tuple<int64_t, int64_t>>& buffer_ranges, int64_t align) {
             std::vector<blade::Binding> bs;
             for (const auto& [s, i, d, c] : bindings) bs.push_back({s, i, d, c});
             std::vector<blade::ArenaBuffer> ranges;
             for (const auto& [first, last] : buffer_ranges) ranges.push_back({0, first, last});
             return blade::CallPlanner(num_symbols, std::move(bs), std::move(code), std::move(check_slots),
                                       std::move(input_dim_slots), std::move(buffer_size_slots), std::move(ranges),
                                       align);
           }),
           py::arg("num_symbols"), py::arg("bindings"), py::arg("code"), py::arg("check_slots"),
           py::arg("input_dim_slots"), py::arg("buffer_size_slots"), py::arg("buffer_ranges"), py::arg("align"))
      .def("prepare", &blade::CallPlanner::prepare, py::arg("input_shapes"), py::arg("device_values"),
           "Bind symbols, evaluate the shape program, check, place the arena: one call.");
}
