// Blade runtime: convolutions through cuDNN opened at run time (see cudnn_conv.h).
#include "cudnn_conv.h"


#include <algorithm>
#include <stdexcept>

#include "cuda_driver.h"
#include "cudnn_abi.h"
#include "cudnn_graph.h"

namespace blade {

namespace {

using namespace cudnn_abi;
using cudnn::GraphBuilder;
using cudnn::GraphPlan;
using cudnn::Library;
using cudnn::library;
using cudnn::status_text;

// cuDNN's dims of the problem: every tensor has 2 + max(spatial, 2) dims (a 1-D convolution is a
// 2-D one of height 1).
int rank(const ConvProblem& p) { return 2 + (p.spatial < 2 ? 2 : p.spatial); }

// The spatial sizes as cuDNN sees them (a leading 1 for 1-D); `fill` for the added dim.
std::vector<int> spatial_of(const ConvProblem& p, const std::array<int64_t, 3>& v, int fill) {
  std::vector<int> out;
  if (p.spatial == 1) out.push_back(fill);
  for (int i = 0; i < p.spatial; ++i) out.push_back(static_cast<int>(v[i]));
  return out;
}

// Packed strides of dims [n, c, spatial...]: channels-last or channels-first.
std::vector<int> packed_strides(const std::vector<int>& dims, bool nhwc) {
  std::vector<int> s(dims.size());
  if (!nhwc) {
    int acc = 1;
    for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) s[i] = acc, acc *= dims[i];
    return s;
  }
  int acc = 1;
  s[1] = acc, acc *= dims[1];
  for (int i = static_cast<int>(dims.size()) - 1; i >= 2; --i) s[i] = acc, acc *= dims[i];
  s[0] = acc;
  return s;
}

// unique ids of the graph's tensors (the variant pack names its pointers by them)
constexpr int64_t kUidX = 1, kUidW = 2, kUidY = 3, kUidBias = 4, kUidConvOut = 5;

std::vector<int64_t> wide(const std::vector<int>& v) { return std::vector<int64_t>(v.begin(), v.end()); }

// The graph y = conv(x, w) (+ bias) and the first of cuDNN's heuristic engine configurations that
// makes an execution plan within `limit` bytes of workspace; false (and why) where none does.
bool build_graph(const Library& l, Handle h, const ConvProblem& p, bool bias, int64_t limit,
                 const std::vector<int>& xdims, const std::vector<int>& wdims, const std::vector<int>& ydims,
                 const std::vector<int>& pad, const std::vector<int>& stride, const std::vector<int>& dilation,
                 GraphPlan& g, std::string* why) {
  using namespace cudnn_backend;
  g.lib = &l;
  GraphBuilder b(l, g, why);
  Desc x = b.tensor(kUidX, p.dtype, wide(xdims), wide(packed_strides(xdims, p.nhwc && !p.x_channels_first)), false);
  Desc w = b.tensor(kUidW, p.dtype, wide(wdims), wide(packed_strides(wdims, p.nhwc)), false);
  Desc y = b.tensor(kUidY, p.dtype, wide(ydims), wide(packed_strides(ydims, p.nhwc)), false);
  Desc conv_out = y;
  Desc bias_t = nullptr;
  if (bias) {
    std::vector<int> bdims(xdims.size(), 1);
    bdims[1] = static_cast<int>(p.k);
    // strides in the problem's layout (channels-last: [K, 1, K, K]), as PyTorch gives them
    bias_t = b.tensor(kUidBias, p.dtype, wide(bdims), wide(packed_strides(bdims, p.nhwc)), false);
    conv_out = b.tensor(kUidConvOut, kFloat, wide(ydims), wide(packed_strides(ydims, p.nhwc)), true);
  }
  Desc conv = b.make(kConvolutionDesc, "creating the convolution descriptor");
  int32_t compute = kFloat, mode = kCrossCorrelation;
  int64_t spatial = static_cast<int64_t>(pad.size());
  std::vector<int64_t> pads = wide(pad), strides = wide(stride), dilations = wide(dilation);
  b.set(conv, kConvCompType, kTypeDataType, 1, &compute, "the convolution's compute type");
  b.set(conv, kConvMode, kTypeConvolutionMode, 1, &mode, "the convolution's mode");
  b.set(conv, kConvSpatialDims, kTypeInt64, 1, &spatial, "the convolution's spatial dims");
  b.set(conv, kConvDilations, kTypeInt64, spatial, dilations.data(), "the convolution's dilations");
  b.set(conv, kConvFilterStrides, kTypeInt64, spatial, strides.data(), "the convolution's strides");
  b.set(conv, kConvPrePaddings, kTypeInt64, spatial, pads.data(), "the convolution's paddings");
  b.set(conv, kConvPostPaddings, kTypeInt64, spatial, pads.data(), "the convolution's paddings");
  b.finalize(conv, "finalizing the convolution descriptor");
  Desc op = b.make(kConvForwardOpDesc, "creating the convolution operation");
  float alpha = 1.0f, beta = 0.0f;
  b.set(op, kConvFwdX, kTypeDescriptor, 1, &x, "the convolution's input");
  b.set(op, kConvFwdW, kTypeDescriptor, 1, &w, "the convolution's weight");
  b.set(op, kConvFwdY, kTypeDescriptor, 1, &conv_out, "the convolution's output");
  b.set(op, kConvFwdConvDesc, kTypeDescriptor, 1, &conv, "the convolution's descriptor");
  b.set(op, kConvFwdAlpha, kTypeFloat, 1, &alpha, "the convolution's alpha");
  b.set(op, kConvFwdBeta, kTypeFloat, 1, &beta, "the convolution's beta");
  b.finalize(op, "finalizing the convolution operation");
  std::vector<Desc> ops{op};
  if (bias) {
    Desc pw = b.make(kPointwiseDesc, "creating the bias addition");
    int32_t add = kPointwiseAdd, precision = kFloat;
    b.set(pw, kPointwiseMode, kTypePointwiseMode, 1, &add, "the bias addition's mode");
    b.set(pw, kPointwiseMathPrec, kTypeDataType, 1, &precision, "the bias addition's precision");
    b.finalize(pw, "finalizing the bias addition");
    Desc add_op = b.make(kPointwiseOpDesc, "creating the bias operation");
    b.set(add_op, kPointwisePwDesc, kTypeDescriptor, 1, &pw, "the bias operation's descriptor");
    b.set(add_op, kPointwiseX, kTypeDescriptor, 1, &conv_out, "the bias operation's input");
    b.set(add_op, kPointwiseB, kTypeDescriptor, 1, &bias_t, "the bias operation's bias");
    b.set(add_op, kPointwiseY, kTypeDescriptor, 1, &y, "the bias operation's output");
    b.finalize(add_op, "finalizing the bias operation");
    ops.push_back(add_op);
  }
  Desc graph = b.make(kOperationGraphDesc, "creating the operation graph");
  b.set(graph, kGraphOps, kTypeDescriptor, static_cast<int64_t>(ops.size()), ops.data(), "the graph's operations");
  b.set(graph, kGraphHandle, kTypeHandle, 1, &h, "the graph's handle");
  b.finalize(graph, "finalizing the operation graph");
  if (!b.ok()) return false;
  return make_plan(l, h, graph, limit, g, why);
}

}  // namespace

std::array<int64_t, 3> conv_output(const ConvProblem& p) {
  std::array<int64_t, 3> out{};
  for (int i = 0; i < p.spatial && i < 3; ++i) {
    int64_t span = p.dilation[i] * (p.kernel[i] - 1) + 1;
    out[i] = p.stride[i] > 0 ? (p.in[i] + 2 * p.pad[i] - span) / p.stride[i] + 1 : 0;
  }
  return out;
}

std::string describe(const ConvProblem& p) {
  auto list = [&](const std::array<int64_t, 3>& v) {
    std::string s;
    for (int i = 0; i < p.spatial && i < 3; ++i) s += (i ? "x" : "") + std::to_string(v[i]);
    return s;
  };
  std::string s = "cuDNN convolution " +
                  std::string(p.dtype == kHalf ? "float16" : p.dtype == kBFloat16 ? "bfloat16" : "dtype " + std::to_string(p.dtype)) +
                  (p.nhwc ? " channels-last" : " channels-first") + " N " + std::to_string(p.n) + ", C " +
                  std::to_string(p.c) + " -> K " + std::to_string(p.k) + ", input " + list(p.in) + ", kernel " +
                  list(p.kernel) + ", stride " + list(p.stride) + ", padding " + list(p.pad) + ", dilation " +
                  list(p.dilation);
  if (p.groups != 1) s += ", groups " + std::to_string(p.groups);
  if (p.x_channels_first) s += ", input channels-first";
  return s;
}

void validate(const ConvProblem& p) {
  if (p.dtype != kHalf && p.dtype != kBFloat16) {
    throw std::invalid_argument(describe(p) + ": only float16 and bfloat16 are supported");
  }
  if (p.spatial < 1 || p.spatial > 3) {
    throw std::invalid_argument(describe(p) + ": 1 to 3 spatial dims, not " + std::to_string(p.spatial));
  }
  if (p.n < 1 || p.c < 1 || p.k < 1 || p.groups < 1) throw std::invalid_argument(describe(p) + ": a size below 1");
  if (p.x_channels_first && !p.nhwc) {
    throw std::invalid_argument(describe(p) + ": a channels-first input is described only in a channels-last problem");
  }
  if (p.c % p.groups != 0 || p.k % p.groups != 0) {
    throw std::invalid_argument(describe(p) + ": channels not divisible by the groups");
  }
  auto out = conv_output(p);
  for (int i = 0; i < p.spatial; ++i) {
    if (p.in[i] < 1 || p.kernel[i] < 1 || p.stride[i] < 1 || p.dilation[i] < 1 || p.pad[i] < 0) {
      throw std::invalid_argument(describe(p) + ": a spatial size, stride or dilation below 1, or a negative padding");
    }
    if (out[i] < 1) throw std::invalid_argument(describe(p) + ": the output is empty");
  }
  int64_t elements = p.n * std::max(p.c, p.k);
  for (int i = 0; i < p.spatial; ++i) elements *= std::max(p.in[i], out[i]);
  if (elements >= (int64_t{1} << 31)) {
    throw std::invalid_argument(describe(p) + ": 2^31 elements or more (cuDNN's descriptors take int sizes)");
  }
}

bool cudnn_available(const std::string& path, std::string* why) {
  const Library& l = library(path);
  if (!l.loaded && why) *why = l.why;
  return l.loaded;
}

struct CudnnConv::Plan {
  const Library* lib = nullptr;
  ConvProblem problem;
  bool bias = false, searched = false;
  int64_t device = 0;
  TensorDesc x = nullptr, y = nullptr, b = nullptr;
  FilterDesc w = nullptr;
  ConvDesc conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
  std::unique_ptr<GraphPlan> graph;  // set: the plan runs through the graph API
  std::string graph_why;             // why not, where it does not
  bool legacy = false;               // the legacy algorithm is set (a graph plan's fallback)
  bool graph_off = false;            // the graph plan failed to execute once: legacy calls from then on
  int64_t graph_fallbacks = 0;       // calls of a graph plan that took the legacy calls
  ~Plan() {
    if (lib == nullptr) return;
    for (TensorDesc t : {x, y, b}) {
      if (t) lib->tensor_destroy(t);
    }
    if (w) lib->filter_destroy(w);
    if (conv) lib->conv_destroy(conv);
  }
};

CudnnConv::CudnnConv(std::string library_path, bool graph_api)
    : library_(std::move(library_path)), use_graph_(graph_api) {
  std::string why;
  if (!cudnn_available(library_, &why)) throw std::runtime_error(why);
  handles_ = std::make_unique<cudnn::Handles>(library(library_));
}

std::string CudnnConv::api(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Plan& plan = cudnn::plan_at(plans_, id, "cuDNN plan");
  if (!plan.graph) return "legacy (" + plan.graph_why + ")";
  if (plan.graph_off) return "legacy after the graph plan failed (" + plan.graph_why + ")";
  std::string text = "graph (" + plan.graph->engine + ")";
  if (plan.graph_fallbacks) {
    text += ", " + std::to_string(plan.graph_fallbacks) + " calls through the legacy calls (" + plan.graph_why + ")";
  }
  return text;
}

CudnnConv::~CudnnConv() {
  handles_.reset();  // cudnnDestroy waits for the device: no plan goes while its work may still run
  plans_.clear();
}

int64_t CudnnConv::plans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(plans_.size());
}

int64_t CudnnConv::prepare(const ConvProblem& p, bool bias, int64_t workspace_limit, int64_t device, bool search,
                           uint64_t x, uint64_t w, uint64_t y, uint64_t workspace, uint64_t stream) {
  validate(p);
  if (workspace_limit < 0) throw std::invalid_argument("negative workspace limit");
  if (search && (x == 0 || w == 0 || y == 0 || (workspace_limit > 0 && workspace == 0))) {
    throw std::invalid_argument(describe(p) + ": a search needs the input, weight, output and workspace buffers");
  }
  std::string key = describe(p) + (bias ? " bias" : "") + " limit " + std::to_string(workspace_limit) + " device " +
                    std::to_string(device);
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = by_key_.find(key);
  if (found != by_key_.end() &&
      (!search || plans_[found->second]->searched || plans_[found->second]->graph)) {
    return found->second;  // a graph plan is not searched (heuristic engine order)
  }

  const Library& l = library(library_);
  current_context(device);
  Handle h = handles_->get(device);
  auto plan = std::make_unique<Plan>();
  plan->lib = &l;
  plan->problem = p;
  plan->bias = bias;
  plan->device = device;
  auto check = [&](Status s, const char* what) {
    if (s != kSuccess) throw std::runtime_error(describe(p) + ": " + what + ": " + status_text(l, s));
  };
  int nb = rank(p);
  std::vector<int> xdims{static_cast<int>(p.n), static_cast<int>(p.c)}, ydims{static_cast<int>(p.n), static_cast<int>(p.k)};
  std::vector<int> wdims{static_cast<int>(p.k), static_cast<int>(p.c / p.groups)};
  for (int v : spatial_of(p, p.in, 1)) xdims.push_back(v);
  for (int v : spatial_of(p, conv_output(p), 1)) ydims.push_back(v);
  for (int v : spatial_of(p, p.kernel, 1)) wdims.push_back(v);
  check(l.tensor_create(&plan->x), "cudnnCreateTensorDescriptor");
  check(l.tensor_set(plan->x, p.dtype, nb, xdims.data(), packed_strides(xdims, p.nhwc && !p.x_channels_first).data()),
        "describing the input");
  check(l.tensor_create(&plan->y), "cudnnCreateTensorDescriptor");
  check(l.tensor_set(plan->y, p.dtype, nb, ydims.data(), packed_strides(ydims, p.nhwc).data()), "describing the output");
  check(l.filter_create(&plan->w), "cudnnCreateFilterDescriptor");
  check(l.filter_set(plan->w, p.dtype, p.nhwc ? kNHWC : kNCHW, nb, wdims.data()), "describing the weight");
  if (bias) {
    std::vector<int> bdims(nb, 1);
    bdims[1] = static_cast<int>(p.k);
    check(l.tensor_create(&plan->b), "cudnnCreateTensorDescriptor");
    check(l.tensor_set(plan->b, p.dtype, nb, bdims.data(), packed_strides(bdims, false).data()), "describing the bias");
  }
  std::vector<int> pad = spatial_of(p, p.pad, 0), strides = spatial_of(p, p.stride, 1),
                   dilation = spatial_of(p, p.dilation, 1);
  check(l.conv_create(&plan->conv), "cudnnCreateConvolutionDescriptor");
  check(l.conv_set(plan->conv, nb - 2, pad.data(), strides.data(), dilation.data(), kCrossCorrelation, kFloat),
        "describing the convolution");
  check(l.conv_groups(plan->conv, static_cast<int>(p.groups)), "setting the groups");
  check(l.conv_math(plan->conv, kTensorOpMath), "setting tensor-core math");
  std::vector<int> out(nb);
  check(l.output_dim(plan->conv, plan->x, plan->w, nb, out.data()), "cudnnGetConvolutionNdForwardOutputDim");
  if (out != ydims) throw std::logic_error(describe(p) + ": cuDNN computes another output size than Blade");

  // the graph API first (heuristic engine order, no search); the legacy calls where it has no plan,
  // and as the graph plan's fallback (a pointer less aligned than declared, a failed execute)
  if (l.graph && use_graph_) {
    auto g = std::make_unique<GraphPlan>();
    if (build_graph(l, h, p, bias, workspace_limit, xdims, wdims, ydims, pad, strides, dilation, *g, &plan->graph_why)) {
      plan->graph = std::move(g);
      search = false;
    }
  } else if (!l.graph) {
    plan->graph_why = "this cuDNN has no graph API";
  } else {
    plan->graph_why = "the graph API not asked for";
  }
  FwdAlgoPerf perf[kAlgoCount] = {};
  int returned = 0;
  if (plan->graph) {  // the fallback: cuDNN's heuristic pick, not fatal where there is none
    if (l.heuristic(h, plan->x, plan->w, plan->conv, plan->y, kAlgoCount, &returned, perf) != kSuccess) returned = 0;
  } else if (search) {
    check(handles_->set_stream(device, h, stream), "cudnnSetStream");
    check(l.find(h, plan->x, reinterpret_cast<const void*>(x), plan->w, reinterpret_cast<const void*>(w), plan->conv,
                 plan->y, reinterpret_cast<void*>(y), kAlgoCount, &returned, perf,
                 reinterpret_cast<void*>(workspace), static_cast<size_t>(workspace_limit)),
          "cudnnFindConvolutionForwardAlgorithmEx");
  } else {
    check(l.heuristic(h, plan->x, plan->w, plan->conv, plan->y, kAlgoCount, &returned, perf),
          "cudnnGetConvolutionForwardAlgorithm_v7");
  }
  bool chosen = false;
  for (int i = 0; i < returned && !chosen; ++i) {
    if (perf[i].status != kSuccess || perf[i].memory > static_cast<size_t>(workspace_limit)) continue;
    // the algorithm's own math type (as PyTorch does), then the workspace it needs with it
    if (l.conv_math(plan->conv, perf[i].mathType) != kSuccess) continue;
    size_t bytes = 0;
    if (l.workspace(h, plan->x, plan->w, plan->conv, plan->y, perf[i].algo, &bytes) != kSuccess ||
        bytes > static_cast<size_t>(workspace_limit)) {
      continue;
    }
    plan->algo = perf[i].algo;
    plan->workspace = bytes;
    chosen = true;
  }
  plan->legacy = chosen;
  if (plan->graph) {
    plan->workspace = std::max(plan->workspace, static_cast<size_t>(plan->graph->workspace));
  } else if (!chosen) {
    throw std::runtime_error(describe(p) + ": cuDNN has no algorithm for it within " +
                             std::to_string(workspace_limit) + " bytes of workspace (" + std::to_string(returned) +
                             " considered; graph API: " + plan->graph_why + ")");
  }
  plan->searched = search;
  int64_t id = static_cast<int64_t>(plans_.size());
  plans_.push_back(std::move(plan));
  by_key_[key] = id;
  return id;
}

int64_t CudnnConv::workspace_size(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(cudnn::plan_at(plans_, id, "cuDNN plan").workspace);
}

std::pair<int, bool> CudnnConv::algorithm(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Plan& plan = cudnn::plan_at(plans_, id, "cuDNN plan");
  return {plan.algo, plan.searched};
}

void CudnnConv::run(int64_t id, uint64_t x, uint64_t w, uint64_t y, uint64_t bias, uint64_t workspace,
                    uint64_t stream, int64_t device) {
  std::lock_guard<std::mutex> lock(mutex_);  // the handle's stream is set per call
  Plan& plan = cudnn::plan_at(plans_, id, "cuDNN plan");
  const ConvProblem& p = plan.problem;
  if ((bias != 0) != plan.bias) throw std::invalid_argument(describe(p) + ": bias given where the plan has none, or the reverse");
  if (plan.workspace > 0 && workspace == 0) throw std::invalid_argument(describe(p) + ": no workspace given");
  const Library& l = *plan.lib;
  Handle h = handles_->on_stream(device, plan.device, stream, [&] { return describe(p); });
  Status s = kSuccess;
  // the graph plan promised cuDNN 16-byte aligned tensors: a pointer less aligned takes the legacy calls
  bool aligned = ((x | w | y | bias | (plan.graph && plan.graph->workspace ? workspace : 0)) & 15) == 0;
  bool graph = plan.graph && !plan.graph_off;
  if (graph && (aligned || !plan.legacy)) {
    if (!aligned) {
      throw std::invalid_argument(describe(p) + ": a pointer is less than 16-byte aligned and cuDNN offered no "
                                  "legacy algorithm to take it");
    }
    int64_t uids[4] = {kUidX, kUidW, kUidY, kUidBias};
    void* ptrs[4] = {reinterpret_cast<void*>(x), reinterpret_cast<void*>(w), reinterpret_cast<void*>(y),
                     reinterpret_cast<void*>(bias)};
    std::string what;
    s = cudnn::execute(l, h, *plan.graph, plan.bias ? 4 : 3, uids, ptrs,
                       plan.workspace ? reinterpret_cast<void*>(workspace) : nullptr, &what);
    if (s == kSuccess) return;
    what += ": " + status_text(l, s);
    if (!plan.legacy) throw std::runtime_error(describe(p) + ": " + what);
    plan.graph_off = true;  // this plan takes the legacy calls from now on (said by api()); the execution
    plan.graph_why = what;  // plan stays alive: earlier calls' work may still be running
  } else if (graph) {
    ++plan.graph_fallbacks;
    plan.graph_why = "a pointer less than 16-byte aligned";
  }
  const float one = 1.0f, zero = 0.0f;
  s = l.forward(h, &one, plan.x, reinterpret_cast<const void*>(x), plan.w, reinterpret_cast<const void*>(w), plan.conv,
                plan.algo, plan.workspace ? reinterpret_cast<void*>(workspace) : nullptr, plan.workspace, &zero, plan.y,
                reinterpret_cast<void*>(y));
  if (s != kSuccess) {
    throw std::runtime_error(describe(p) + ": cudnnConvolutionForward (algorithm " + std::to_string(plan.algo) +
                             "): " + status_text(l, s));
  }
  if (bias != 0) {
    s = l.add(h, &one, plan.b, reinterpret_cast<const void*>(bias), &one, plan.y, reinterpret_cast<void*>(y));
    if (s != kSuccess) throw std::runtime_error(describe(p) + ": cudnnAddTensor (the bias): " + status_text(l, s));
  }
}

}  // namespace blade
