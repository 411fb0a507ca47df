// Blade runtime, native part: the Python binding of the runtime core (program_core.h):
// shape-program evaluation (guards, sizes, grids from input dims without touching Python objects
// per operation), the arena planner and the per-call planner of a Program; and of the cubin
// launcher (cuda_driver.h: the CUDA driver API opened at run time), the cuBLASLt GEMM (cublaslt.h)
// and the cuDNN convolution (cudnn_conv.h), both libraries opened at run time.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "cublaslt.h"
#include "cudnn_attention.h"
#include "cudnn_conv.h"
#include "cuda_driver.h"
#include "program_core.h"
#include "step_list.h"

namespace py = pybind11;

namespace {

std::vector<blade::KernelArg> kernel_args(const std::string& codes, const py::sequence& args) {
  if (codes.size() != static_cast<size_t>(py::len(args))) {
    throw std::invalid_argument("kernel arguments: " + std::to_string(codes.size()) + " type codes for " +
                                std::to_string(py::len(args)) + " values");
  }
  std::vector<blade::KernelArg> out(codes.size());
  for (size_t k = 0; k < codes.size(); ++k) {
    if (codes[k] == 'f' || codes[k] == 'd') {
      out[k].f = py::cast<double>(args[k]);
    } else {
      out[k].i = py::cast<int64_t>(args[k]);
    }
  }
  return out;
}

// An attention problem from Python's description: sizes (b, h_q, h_k, s_q, s_kv, d, d_v) and the
// strides of Q, K, V and O over [b, h, s, d].
blade::AttentionProblem attention_problem(int dtype, const std::vector<int64_t>& sizes,
                                          const std::vector<std::vector<int64_t>>& strides, bool causal) {
  if (sizes.size() != 7 || strides.size() != 4) {
    throw std::invalid_argument("an attention problem takes 7 sizes and 4 stride lists");
  }
  blade::AttentionProblem p;
  p.dtype = dtype;
  p.b = sizes[0], p.h_q = sizes[1], p.h_k = sizes[2], p.s_q = sizes[3], p.s_kv = sizes[4], p.d = sizes[5];
  p.d_v = sizes[6];
  p.causal = causal;
  std::array<int64_t, 4>* out[4] = {&p.q_stride, &p.k_stride, &p.v_stride, &p.o_stride};
  for (int t = 0; t < 4; ++t) {
    if (strides[t].size() != 4) throw std::invalid_argument("an attention operand's strides: 4 values");
    for (int i = 0; i < 4; ++i) (*out[t])[i] = strides[t][i];
  }
  return p;
}

blade::ConvProblem conv_problem(int dtype, bool nhwc, int64_t n, int64_t c, int64_t k, int64_t groups,
                                const std::vector<int64_t>& in, const std::vector<int64_t>& kernel,
                                const std::vector<int64_t>& pad, const std::vector<int64_t>& stride,
                                const std::vector<int64_t>& dilation, bool x_channels_first) {
  size_t spatial = in.size();
  if (spatial < 1 || spatial > 3 || kernel.size() != spatial || pad.size() != spatial || stride.size() != spatial ||
      dilation.size() != spatial) {
    throw std::invalid_argument("a convolution has 1 to 3 spatial dims, the same number in input, kernel, padding, "
                                "stride and dilation");
  }
  blade::ConvProblem p;
  p.dtype = dtype, p.nhwc = nhwc, p.x_channels_first = x_channels_first, p.spatial = static_cast<int>(spatial);
  p.n = n, p.c = c, p.k = k, p.groups = groups;
  for (size_t i = 0; i < spatial; ++i) {
    p.in[i] = in[i], p.kernel[i] = kernel[i], p.pad[i] = pad[i], p.stride[i] = stride[i], p.dilation[i] = dilation[i];
  }
  return p;
}

}  // namespace

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
      .def(py::init([](int64_t num_symbols, const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>>& bindings,
                       std::vector<int64_t> code, std::vector<int64_t> check_slots,
                       std::vector<std::vector<int64_t>> input_dim_slots, std::vector<int64_t> buffer_size_slots,
                       const std::vector<std::tuple<int64_t, int64_t>>& buffer_ranges, int64_t align) {
             std::vector<blade::Binding> bs;
             for (const auto& [s, i, d, c, o] : bindings) bs.push_back({s, i, d, c, o});
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

  m.def(
      "cuda_available",
      []() {
        std::string why;
        bool ok = blade::cuda_available(&why);
        return std::make_pair(ok, why);
      },
      "(True, '') when the CUDA driver can launch cubins here, else (False, why not).");
  m.def(
      "pack_params",
      [](const std::string& codes, const py::sequence& args) {
        blade::PackedParams p = blade::pack_params(codes, kernel_args(codes, args));
        return py::bytes(reinterpret_cast<const char*>(p.slots.data()), p.slots.size() * sizeof(uint64_t));
      },
      py::arg("codes"), py::arg("args"),
      "The parameter slots a launch passes the driver (8 bytes each, the two scratch pointers last).");
  py::class_<blade::CudaKernel, std::shared_ptr<blade::CudaKernel>>(m, "CudaKernel")
      .def(py::init<std::string, std::string, int64_t, int64_t>(), py::arg("cubin"), py::arg("entry"),
           py::arg("shared"), py::arg("num_warps"))
      .def_property_readonly("entry", &blade::CudaKernel::entry)
      .def(
          "launch",
          [](blade::CudaKernel& k, const std::tuple<int64_t, int64_t, int64_t>& grid, uint64_t stream,
             const std::string& codes, const py::sequence& args, int64_t device) {
            auto [gx, gy, gz] = grid;
            k.launch(gx, gy, gz, stream, codes, kernel_args(codes, args), device);
          },
          py::arg("grid"), py::arg("stream"), py::arg("codes"), py::arg("args"), py::arg("device") = 0,
          "Launch on a CUstream handle (torch.cuda.current_stream().cuda_stream) with one value per type code.");

  m.def(
      "cublaslt_available",
      [](const std::string& library) {
        std::string why;
        bool ok = blade::cublaslt_available(library, &why);
        return std::make_pair(ok, why);
      },
      py::arg("library"), "(True, '') when cuBLASLt opens from this path or soname, else (False, why not).");
  py::class_<blade::CublasLt, std::shared_ptr<blade::CublasLt>>(m, "CublasLt")
      .def(py::init<std::string>(), py::arg("library"))
      .def_property_readonly("plans", &blade::CublasLt::plans)
      .def(
          "gemm",
          [](blade::CublasLt& lt, int dtype, bool transa, bool transb, int64_t m_, int64_t n, int64_t k, uint64_t a,
             int64_t lda, int64_t stride_a, uint64_t b, int64_t ldb, int64_t stride_b, uint64_t d, int64_t ldd,
             int64_t stride_d, int64_t batch, uint64_t bias, uint64_t workspace, int64_t workspace_bytes,
             uint64_t stream, int64_t device) {
            blade::GemmProblem p;
            p.dtype = dtype, p.transa = transa, p.transb = transb, p.m = m_, p.n = n, p.k = k;
            p.lda = lda, p.ldb = ldb, p.ldd = ldd, p.batch = batch;
            p.stride_a = stride_a, p.stride_b = stride_b, p.stride_d = stride_d;
            lt.gemm(p, a, b, d, bias, workspace, workspace_bytes, stream, device);
          },
          py::arg("dtype"), py::arg("transa"), py::arg("transb"), py::arg("m"), py::arg("n"), py::arg("k"),
          py::arg("a"), py::arg("lda"), py::arg("stride_a"), py::arg("b"), py::arg("ldb"), py::arg("stride_b"),
          py::arg("d"), py::arg("ldd"), py::arg("stride_d"), py::arg("batch"), py::arg("bias"), py::arg("workspace"),
          py::arg("workspace_bytes"), py::arg("stream"), py::arg("device"),
          "Enqueue D (m x n, column-major) = op(A) op(B) (+ bias) on a CUstream handle (see cublaslt.h).")
      .def(
          "prepare",
          [](blade::CublasLt& lt, int dtype, bool transa, bool transb, int64_t m_, int64_t n, int64_t k, int64_t lda,
             int64_t stride_a, int64_t ldb, int64_t stride_b, int64_t ldd, int64_t stride_d, int64_t batch, bool bias,
             int64_t workspace_bytes, int align_a, int align_b, int align_d, int64_t device) {
            blade::GemmProblem p;
            p.dtype = dtype, p.transa = transa, p.transb = transb, p.m = m_, p.n = n, p.k = k;
            p.lda = lda, p.ldb = ldb, p.ldd = ldd, p.batch = batch;
            p.stride_a = stride_a, p.stride_b = stride_b, p.stride_d = stride_d;
            return lt.prepare(p, bias, workspace_bytes, align_a, align_b, align_d, device);
          },
          "The id of the plan of a problem for pointers of these alignments (see cublaslt.h).")
      .def("run", &blade::CublasLt::run, py::arg("plan"), py::arg("a"), py::arg("b"), py::arg("d"), py::arg("bias"),
           py::arg("workspace"), py::arg("stream"), py::arg("device"),
           "Enqueue a prepared plan; False (nothing enqueued) when a pointer is less aligned than planned.");

  m.def(
      "cudnn_available",
      [](const std::string& library) {
        std::string why;
        bool ok = blade::cudnn_available(library, &why);
        return std::make_pair(ok, why);
      },
      py::arg("library"), "(True, '') when cuDNN opens from this path or soname, else (False, why not).");
  m.def(
      "conv_problem_text",
      [](int dtype, bool nhwc, int64_t n, int64_t c, int64_t k, int64_t groups, const std::vector<int64_t>& in,
         const std::vector<int64_t>& kernel, const std::vector<int64_t>& pad, const std::vector<int64_t>& stride,
         const std::vector<int64_t>& dilation, bool x_channels_first) {
        blade::ConvProblem p = conv_problem(dtype, nhwc, n, c, k, groups, in, kernel, pad, stride, dilation,
                                            x_channels_first);
        blade::validate(p);
        auto out = blade::conv_output(p);
        return std::make_pair(blade::describe(p), std::vector<int64_t>(out.begin(), out.begin() + p.spatial));
      },
      py::arg("dtype"), py::arg("nhwc"), py::arg("n"), py::arg("c"), py::arg("k"), py::arg("groups"), py::arg("input"),
      py::arg("kernel"), py::arg("padding"), py::arg("stride"), py::arg("dilation"), py::arg("x_channels_first") = false,
      "(description, output spatial sizes) of a convolution problem; ValueError where it is not valid (no CUDA).");
  m.def(
      "attention_problem_text",
      [](int dtype, const std::vector<int64_t>& sizes, const std::vector<std::vector<int64_t>>& strides,
         bool causal) {
        blade::AttentionProblem p = attention_problem(dtype, sizes, strides, causal);
        blade::validate(p);
        return blade::describe(p);
      },
      py::arg("dtype"), py::arg("sizes"), py::arg("strides"), py::arg("causal"),
      "The description of an attention problem; ValueError where cuDNN's fused attention does not take it.");
  py::class_<blade::CudnnAttention, std::shared_ptr<blade::CudnnAttention>>(m, "CudnnAttention")
      .def(py::init<std::string>(), py::arg("library"))
      .def_property_readonly("plans", &blade::CudnnAttention::plans)
      .def(
          "prepare",
          [](blade::CudnnAttention& a, int dtype, const std::vector<int64_t>& sizes,
             const std::vector<std::vector<int64_t>>& strides, bool causal, float scale, int64_t workspace_limit,
             int64_t device) {
            blade::AttentionProblem p = attention_problem(dtype, sizes, strides, causal);
            py::gil_scoped_release release;  // cuDNN may compile its engine
            return a.prepare(p, scale, workspace_limit, device);
          },
          py::arg("dtype"), py::arg("sizes"), py::arg("strides"), py::arg("causal"), py::arg("scale"),
          py::arg("workspace_limit"),
          py::arg("device"), "The id of the plan of an attention problem (RuntimeError where cuDNN makes none).")
      .def("workspace_size", &blade::CudnnAttention::workspace_size, py::arg("plan"))
      .def("engine", &blade::CudnnAttention::engine, py::arg("plan"))
      .def("run", &blade::CudnnAttention::run, py::arg("plan"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("o"),
           py::arg("workspace"), py::arg("stream"), py::arg("device"), "Enqueue a prepared attention on a CUstream handle.");
  py::class_<blade::CudnnConv, std::shared_ptr<blade::CudnnConv>>(m, "CudnnConv")
      .def(py::init<std::string, bool>(), py::arg("library"), py::arg("graph_api") = false)
      .def_property_readonly("plans", &blade::CudnnConv::plans)
      .def(
          "prepare",
          [](blade::CudnnConv& cv, int dtype, bool nhwc, int64_t n, int64_t c, int64_t k, int64_t groups,
             const std::vector<int64_t>& in, const std::vector<int64_t>& kernel, const std::vector<int64_t>& pad,
             const std::vector<int64_t>& stride, const std::vector<int64_t>& dilation, bool bias,
             int64_t workspace_limit, int64_t device, bool search, uint64_t x, uint64_t w, uint64_t y,
             uint64_t workspace, uint64_t stream, bool x_channels_first) {
            blade::ConvProblem p = conv_problem(dtype, nhwc, n, c, k, groups, in, kernel, pad, stride, dilation,
                                                x_channels_first);
            py::gil_scoped_release release;  // a search times kernels
            return cv.prepare(p, bias, workspace_limit, device, search, x, w, y, workspace, stream);
          },
          py::arg("dtype"), py::arg("nhwc"), py::arg("n"), py::arg("c"), py::arg("k"), py::arg("groups"),
          py::arg("input"), py::arg("kernel"), py::arg("padding"), py::arg("stride"), py::arg("dilation"),
          py::arg("bias"), py::arg("workspace_limit"), py::arg("device"), py::arg("search") = false, py::arg("x") = 0,
          py::arg("w") = 0, py::arg("y") = 0, py::arg("workspace") = 0, py::arg("stream") = 0,
          py::arg("x_channels_first") = false,
          "The id of the plan of a convolution (heuristic pick, or timed on the given buffers: search).")
      .def("workspace_size", &blade::CudnnConv::workspace_size, py::arg("plan"))
      .def("algorithm", &blade::CudnnConv::algorithm, py::arg("plan"),
           "(cuDNN legacy algorithm or -1 for a graph plan, timed by a search)")
      .def("api", &blade::CudnnConv::api, py::arg("plan"), "'graph', or 'legacy (why not graph)'")
      .def("run", &blade::CudnnConv::run, py::arg("plan"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("bias"),
           py::arg("workspace"), py::arg("stream"), py::arg("device"),
           "Enqueue a prepared convolution (+ bias) on a CUstream handle.");

  py::class_<blade::StepList, std::shared_ptr<blade::StepList>>(m, "StepList")
      .def(py::init<>())
      .def("__len__", &blade::StepList::size)
      .def_property_readonly("num_bases", &blade::StepList::num_bases)
      .def(
          "add_launch",
          [](blade::StepList& l, std::shared_ptr<blade::CudaKernel> kernel, const std::tuple<int64_t, int64_t, int64_t>& grid,
             const std::string& codes, const std::vector<int32_t>& bases, const py::sequence& args, std::string label) {
            auto [gx, gy, gz] = grid;
            l.add_launch(std::move(kernel), gx, gy, gz, codes, bases, kernel_args(codes, args), std::move(label));
          },
          py::arg("kernel"), py::arg("grid"), py::arg("codes"), py::arg("bases"), py::arg("args"), py::arg("label"),
          "A cubin launch; a pointer argument with base b >= 0 passes bases[b] + its value (a byte offset).")
      .def(
          "add_gemm",
          [](blade::StepList& l, std::shared_ptr<blade::CublasLt> lt, int64_t plan, const std::array<int32_t, 5>& bases,
             const std::array<int64_t, 5>& offsets, std::string label) {
            l.add_gemm(std::move(lt), plan, bases, offsets, std::move(label));
          },
          py::arg("lt"), py::arg("plan"), py::arg("bases"), py::arg("offsets"), py::arg("label"),
          "A prepared cuBLASLt plan; (base, byte offset) of a, b, d, bias (base -1: none), workspace.")
      .def(
          "add_conv",
          [](blade::StepList& l, std::shared_ptr<blade::CudnnConv> conv, int64_t plan,
             const std::array<int32_t, 5>& bases, const std::array<int64_t, 5>& offsets, std::string label) {
            l.add_conv(std::move(conv), plan, bases, offsets, std::move(label));
          },
          py::arg("conv"), py::arg("plan"), py::arg("bases"), py::arg("offsets"), py::arg("label"),
          "A prepared cuDNN convolution; (base, byte offset) of x, w, y, bias (base -1: none), workspace (-1: none).")
      .def(
          "add_attention",
          [](blade::StepList& l, std::shared_ptr<blade::CudnnAttention> attention, int64_t plan,
             const std::array<int32_t, 5>& bases, const std::array<int64_t, 5>& offsets, std::string label) {
            l.add_attention(std::move(attention), plan, bases, offsets, std::move(label));
          },
          py::arg("attention"), py::arg("plan"), py::arg("bases"), py::arg("offsets"), py::arg("label"),
          "A prepared cuDNN attention; (base, byte offset) of q, k, v, o, workspace (-1: none).")
      .def("add_copy", &blade::StepList::add_copy, py::arg("bases"), py::arg("offsets"), py::arg("dst_pitch"),
           py::arg("src_pitch"), py::arg("width"), py::arg("height"), py::arg("label"),
           "A copy of `height` rows of `width` bytes; (base, byte offset) of the destination and the source.")
      .def("resolve", &blade::StepList::resolve, py::arg("bases"), py::arg("begin"), py::arg("end"),
           "What steps [begin, end) would pass: launch parameter slots, GEMM pointers (no CUDA).")
      .def("run", &blade::StepList::run, py::arg("bases"), py::arg("stream"), py::arg("device"), py::arg("begin"),
           py::arg("end"), "Enqueue steps [begin, end) on a CUstream handle.")
      .def(
          "call", [](std::shared_ptr<blade::StepList> l, std::vector<uint64_t> bases) {
            return blade::StepCall(std::move(l), std::move(bases));
          },
          py::arg("bases"), "One call's bases (StepCall): set once, updated per new root, read by each range.");
  py::class_<blade::StepCall>(m, "StepCall")
      .def("set", &blade::StepCall::set, py::arg("base"), py::arg("value"))
      .def_property_readonly("bases", &blade::StepCall::bases)
      .def("run", &blade::StepCall::run, py::arg("stream"), py::arg("device"), py::arg("begin"), py::arg("end"),
           "Enqueue steps [begin, end) with this call's bases.");
}
