// Blade runtime: convolutions through cuDNN opened at run time (see cudnn_conv.h).
#include "cudnn_conv.h"

#include <dlfcn.h>

#include <algorithm>
#include <stdexcept>

#include "cuda_driver.h"
#include "cudnn_abi.h"
#include "dl_symbols.h"

namespace blade {

namespace {

using namespace cudnn_abi;

struct Library {
  bool loaded = false;
  std::string why;
  Status (*create)(Handle*) = nullptr;
  Status (*destroy)(Handle) = nullptr;
  Status (*set_stream)(Handle, void*) = nullptr;
  const char* (*error_string)(Status) = nullptr;
  Status (*tensor_create)(TensorDesc*) = nullptr;
  Status (*tensor_destroy)(TensorDesc) = nullptr;
  Status (*tensor_set)(TensorDesc, int, int, const int*, const int*) = nullptr;
  Status (*filter_create)(FilterDesc*) = nullptr;
  Status (*filter_destroy)(FilterDesc) = nullptr;
  Status (*filter_set)(FilterDesc, int, int, int, const int*) = nullptr;
  Status (*conv_create)(ConvDesc*) = nullptr;
  Status (*conv_destroy)(ConvDesc) = nullptr;
  Status (*conv_set)(ConvDesc, int, const int*, const int*, const int*, int, int) = nullptr;
  Status (*conv_groups)(ConvDesc, int) = nullptr;
  Status (*conv_math)(ConvDesc, int) = nullptr;
  Status (*output_dim)(ConvDesc, TensorDesc, FilterDesc, int, int*) = nullptr;
  Status (*heuristic)(Handle, TensorDesc, FilterDesc, ConvDesc, TensorDesc, int, int*, FwdAlgoPerf*) = nullptr;
  Status (*find)(Handle, TensorDesc, const void*, FilterDesc, const void*, ConvDesc, TensorDesc, void*, int, int*,
                 FwdAlgoPerf*, void*, size_t) = nullptr;
  Status (*workspace)(Handle, TensorDesc, FilterDesc, ConvDesc, TensorDesc, int, size_t*) = nullptr;
  Status (*forward)(Handle, const void*, TensorDesc, const void*, FilterDesc, const void*, ConvDesc, int, void*,
                    size_t, const void*, TensorDesc, void*) = nullptr;
  Status (*add)(Handle, const void*, TensorDesc, const void*, const void*, TensorDesc, void*) = nullptr;
  // the graph API (bound where present: without it every plan takes the legacy calls above)
  bool graph = false;
  Status (*be_create)(int, cudnn_backend::Desc*) = nullptr;
  Status (*be_destroy)(cudnn_backend::Desc) = nullptr;
  Status (*be_set)(cudnn_backend::Desc, int, int, int64_t, const void*) = nullptr;
  Status (*be_get)(cudnn_backend::Desc, int, int, int64_t, int64_t*, void*) = nullptr;
  Status (*be_finalize)(cudnn_backend::Desc) = nullptr;
  Status (*be_execute)(Handle, cudnn_backend::Desc, cudnn_backend::Desc) = nullptr;
};

template <typename F>
bool bind(void* lib, const char* name, F* fn, std::string* why) {
  return bind_symbol(lib, "cuDNN", name, fn, why);
}

Library open_library(const std::string& path) {
  Library l;
  void* lib = open_shared_library(path, "cuDNN", &l.why);
  if (lib == nullptr) return l;
  l.loaded = bind(lib, "cudnnCreate", &l.create, &l.why) && bind(lib, "cudnnDestroy", &l.destroy, &l.why) &&
             bind(lib, "cudnnSetStream", &l.set_stream, &l.why) &&
             bind(lib, "cudnnGetErrorString", &l.error_string, &l.why) &&
             bind(lib, "cudnnCreateTensorDescriptor", &l.tensor_create, &l.why) &&
             bind(lib, "cudnnDestroyTensorDescriptor", &l.tensor_destroy, &l.why) &&
             bind(lib, "cudnnSetTensorNdDescriptor", &l.tensor_set, &l.why) &&
             bind(lib, "cudnnCreateFilterDescriptor", &l.filter_create, &l.why) &&
             bind(lib, "cudnnDestroyFilterDescriptor", &l.filter_destroy, &l.why) &&
             bind(lib, "cudnnSetFilterNdDescriptor", &l.filter_set, &l.why) &&
             bind(lib, "cudnnCreateConvolutionDescriptor", &l.conv_create, &l.why) &&
             bind(lib, "cudnnDestroyConvolutionDescriptor", &l.conv_destroy, &l.why) &&
             bind(lib, "cudnnSetConvolutionNdDescriptor", &l.conv_set, &l.why) &&
             bind(lib, "cudnnSetConvolutionGroupCount", &l.conv_groups, &l.why) &&
             bind(lib, "cudnnSetConvolutionMathType", &l.conv_math, &l.why) &&
             bind(lib, "cudnnGetConvolutionNdForwardOutputDim", &l.output_dim, &l.why) &&
             bind(lib, "cudnnGetConvolutionForwardAlgorithm_v7", &l.heuristic, &l.why) &&
             bind(lib, "cudnnFindConvolutionForwardAlgorithmEx", &l.find, &l.why) &&
             bind(lib, "cudnnGetConvolutionForwardWorkspaceSize", &l.workspace, &l.why) &&
             bind(lib, "cudnnConvolutionForward", &l.forward, &l.why) && bind(lib, "cudnnAddTensor", &l.add, &l.why);
  std::string no_graph;
  l.graph = bind(lib, "cudnnBackendCreateDescriptor", &l.be_create, &no_graph) &&
            bind(lib, "cudnnBackendDestroyDescriptor", &l.be_destroy, &no_graph) &&
            bind(lib, "cudnnBackendSetAttribute", &l.be_set, &no_graph) &&
            bind(lib, "cudnnBackendGetAttribute", &l.be_get, &no_graph) &&
            bind(lib, "cudnnBackendFinalize", &l.be_finalize, &no_graph) &&
            bind(lib, "cudnnBackendExecute", &l.be_execute, &no_graph);
  return l;
}

// One library per path, opened once.
const Library& library(const std::string& path) { return opened_once<Library>(path, open_library); }

std::string status_text(const Library& l, Status s) {
  const char* text = l.error_string ? l.error_string(s) : nullptr;
  return std::string(text ? text : "cuDNN error") + " (" + std::to_string(s) + ")";
}

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

// The descriptors of one graph-API plan (destroyed with it) and how it runs.
struct GraphPlan {
  const Library* lib = nullptr;
  std::vector<cudnn_backend::Desc> owned;
  cudnn_backend::Desc exec = nullptr;  // the execution plan
  int64_t workspace = 0;
  bool bias = false;
  std::string engine;  // which heuristic result it is (for reports)
  GraphPlan() = default;
  GraphPlan(const GraphPlan&) = delete;
  GraphPlan& operator=(const GraphPlan&) = delete;
  ~GraphPlan() {
    for (auto it = owned.rbegin(); it != owned.rend(); ++it) lib->be_destroy(*it);
  }
};

// unique ids of the graph's tensors (the variant pack names its pointers by them)
constexpr int64_t kUidX = 1, kUidW = 2, kUidY = 3, kUidBias = 4, kUidConvOut = 5;

// Builds descriptors, stopping at the first failure (then `why` says which step and cuDNN's status).
class GraphBuilder {
 public:
  GraphBuilder(const Library& l, GraphPlan& g, std::string* why) : l_(l), g_(g), why_(why) {}
  bool ok() const { return ok_; }
  cudnn_backend::Desc make(int type, const char* what) {
    cudnn_backend::Desc d = nullptr;
    if (!ok_) return nullptr;
    if (!check(l_.be_create(type, &d), what)) return nullptr;
    g_.owned.push_back(d);
    return d;
  }
  void set(cudnn_backend::Desc d, int name, int type, int64_t count, const void* values, const char* what) {
    if (ok_) check(l_.be_set(d, name, type, count, values), what);
  }
  void finalize(cudnn_backend::Desc d, const char* what) {
    if (ok_) check(l_.be_finalize(d), what);
  }
  cudnn_backend::Desc tensor(int64_t uid, int dtype, const std::vector<int64_t>& dims,
                             const std::vector<int64_t>& strides, bool is_virtual) {
    using namespace cudnn_backend;
    Desc t = make(kTensorDesc, "creating a tensor descriptor");
    int32_t type = dtype;
    int64_t alignment = 16;
    set(t, kTensorDataType, kTypeDataType, 1, &type, "a tensor's data type");
    set(t, kTensorDimensions, kTypeInt64, static_cast<int64_t>(dims.size()), dims.data(), "a tensor's dims");
    set(t, kTensorStrides, kTypeInt64, static_cast<int64_t>(strides.size()), strides.data(), "a tensor's strides");
    set(t, kTensorUniqueId, kTypeInt64, 1, &uid, "a tensor's id");
    set(t, kTensorByteAlignment, kTypeInt64, 1, &alignment, "a tensor's alignment");
    if (is_virtual) {
      bool v = true;
      set(t, kTensorIsVirtual, kTypeBoolean, 1, &v, "a virtual tensor");
    }
    finalize(t, "finalizing a tensor descriptor");
    return t;
  }

 private:
  bool check(Status s, const char* what) {
    if (s == kSuccess) return true;
    ok_ = false;
    *why_ = std::string(what) + ": " + status_text(l_, s);
    return false;
  }
  const Library& l_;
  GraphPlan& g_;
  std::string* why_;
  bool ok_ = true;
};

std::vector<int64_t> wide(const std::vector<int>& v) { return std::vector<int64_t>(v.begin(), v.end()); }

// The graph y = conv(x, w) (+ bias) and the first of cuDNN's heuristic engine configurations that
// makes an execution plan within `limit` bytes of workspace; false (and why) where none does.
bool build_graph(const Library& l, Handle h, const ConvProblem& p, bool bias, int64_t limit,
                 const std::vector<int>& xdims, const std::vector<int>& wdims, const std::vector<int>& ydims,
                 const std::vector<int>& pad, const std::vector<int>& stride, const std::vector<int>& dilation,
                 GraphPlan& g, std::string* why) {
  using namespace cudnn_backend;
  g.lib = &l;
  g.bias = bias;
  GraphBuilder b(l, g, why);
  Desc x = b.tensor(kUidX, p.dtype, wide(xdims), wide(packed_strides(xdims, p.nhwc)), false);
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
  std::string tried;
  for (int32_t heur_mode : {kHeurModeInstant, kHeurModeFallback}) {  // as PyTorch: then the fallback list
    Desc heur = b.make(kEngineHeurDesc, "creating the engine heuristics");
    b.set(heur, kHeurOperationGraph, kTypeDescriptor, 1, &graph, "the heuristics' graph");
    b.set(heur, kHeurMode, kTypeHeurMode, 1, &heur_mode, "the heuristics' mode");
    b.finalize(heur, "finalizing the engine heuristics");
    if (!b.ok()) return false;
    int64_t count = 0;
    Status s = l.be_get(heur, kHeurResults, kTypeDescriptor, 0, &count, nullptr);
    if (s != kSuccess || count < 1) {
      tried += " mode " + std::to_string(heur_mode) + ": " + (s != kSuccess ? status_text(l, s) : "no engine");
      continue;
    }
    count = std::min<int64_t>(count, 16);
    std::vector<Desc> configs;
    for (int64_t i = 0; i < count; ++i) configs.push_back(b.make(kEngineCfgDesc, "creating an engine configuration"));
    if (!b.ok()) return false;
    int64_t got = 0;
    s = l.be_get(heur, kHeurResults, kTypeDescriptor, count, &got, configs.data());
    if (s != kSuccess) {
      tried += " mode " + std::to_string(heur_mode) + ": reading the results: " + status_text(l, s);
      continue;
    }
    for (int64_t i = 0; i < got; ++i) {
      Desc plan = nullptr;
      if (l.be_create(kExecutionPlanDesc, &plan) != kSuccess) continue;
      int64_t ws = -1, one = 0;
      Status ps = l.be_set(plan, kPlanHandle, kTypeHandle, 1, &h);
      if (ps == kSuccess) ps = l.be_set(plan, kPlanEngineConfig, kTypeDescriptor, 1, &configs[i]);
      if (ps == kSuccess) ps = l.be_finalize(plan);
      if (ps == kSuccess) ps = l.be_get(plan, kPlanWorkspaceSize, kTypeInt64, 1, &one, &ws);
      if (ps == kSuccess && ws >= 0 && ws <= limit) {
        g.owned.push_back(plan);
        g.exec = plan;
        g.workspace = ws;
        g.engine = "heuristic mode " + std::to_string(heur_mode) + ", configuration " + std::to_string(i);
        return true;
      }
      l.be_destroy(plan);
      tried += " mode " + std::to_string(heur_mode) + " #" + std::to_string(i) + ": " +
               (ps == kSuccess ? "workspace " + std::to_string(ws) : status_text(l, ps));
    }
  }
  *why = "no engine configuration makes an execution plan within " + std::to_string(limit) + " bytes (" + tried + ")";
  return false;
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
}

std::string CudnnConv::api(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (id < 0 || id >= static_cast<int64_t>(plans_.size())) throw std::out_of_range("no cuDNN plan " + std::to_string(id));
  const Plan& plan = *plans_[id];
  if (!plan.graph) return "legacy (" + plan.graph_why + ")";
  if (plan.graph_off) return "legacy after the graph plan failed (" + plan.graph_why + ")";
  std::string text = "graph (" + plan.graph->engine + ")";
  if (plan.graph_fallbacks) {
    text += ", " + std::to_string(plan.graph_fallbacks) + " calls through the legacy calls (" + plan.graph_why + ")";
  }
  return text;
}

CudnnConv::~CudnnConv() {
  const Library& l = library(library_);
  plans_.clear();
  for (auto& [device, handle] : handles_) l.destroy(static_cast<Handle>(handle));
}

int64_t CudnnConv::plans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(plans_.size());
}

void* CudnnConv::handle_for(int64_t device) {
  auto it = handles_.find(device);
  if (it != handles_.end()) return it->second;
  const Library& l = library(library_);
  current_context(device);
  Handle h = nullptr;
  Status s = l.create(&h);
  if (s != kSuccess) throw std::runtime_error("cudnnCreate on device " + std::to_string(device) + ": " + status_text(l, s));
  handles_[device] = h;
  return h;
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
  Handle h = static_cast<Handle>(handle_for(device));
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
  check(l.tensor_set(plan->x, p.dtype, nb, xdims.data(), packed_strides(xdims, p.nhwc).data()), "describing the input");
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
    check(l.set_stream(h, reinterpret_cast<void*>(stream)), "cudnnSetStream");
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
  if (id < 0 || id >= static_cast<int64_t>(plans_.size())) throw std::out_of_range("no cuDNN plan " + std::to_string(id));
  return static_cast<int64_t>(plans_[id]->workspace);
}

std::pair<int, bool> CudnnConv::algorithm(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (id < 0 || id >= static_cast<int64_t>(plans_.size())) throw std::out_of_range("no cuDNN plan " + std::to_string(id));
  return {plans_[id]->algo, plans_[id]->searched};
}

void CudnnConv::run(int64_t id, uint64_t x, uint64_t w, uint64_t y, uint64_t bias, uint64_t workspace,
                    uint64_t stream, int64_t device) {
  std::lock_guard<std::mutex> lock(mutex_);  // the handle's stream is set per call
  if (id < 0 || id >= static_cast<int64_t>(plans_.size())) throw std::out_of_range("no cuDNN plan " + std::to_string(id));
  Plan& plan = *plans_[id];
  const ConvProblem& p = plan.problem;
  if (device != plan.device) {
    throw std::invalid_argument(describe(p) + ": planned for device " + std::to_string(plan.device) + ", run on " +
                                std::to_string(device));
  }
  if ((bias != 0) != plan.bias) throw std::invalid_argument(describe(p) + ": bias given where the plan has none, or the reverse");
  if (plan.workspace > 0 && workspace == 0) throw std::invalid_argument(describe(p) + ": no workspace given");
  const Library& l = *plan.lib;
  current_context(device);
  Handle h = static_cast<Handle>(handle_for(device));
  Status s = l.set_stream(h, reinterpret_cast<void*>(stream));
  if (s != kSuccess) throw std::runtime_error(describe(p) + ": cudnnSetStream: " + status_text(l, s));
  // the graph plan promised cuDNN 16-byte aligned tensors: a pointer less aligned takes the legacy calls
  bool aligned = ((x | w | y | bias | (plan.graph && plan.graph->workspace ? workspace : 0)) & 15) == 0;
  bool graph = plan.graph && !plan.graph_off;
  if (graph && (aligned || !plan.legacy)) {
    if (!aligned) {
      throw std::invalid_argument(describe(p) + ": a pointer is less than 16-byte aligned and cuDNN offered no "
                                  "legacy algorithm to take it");
    }
    using namespace cudnn_backend;
    Desc pack = nullptr;
    s = l.be_create(kVariantPackDesc, &pack);
    if (s != kSuccess) throw std::runtime_error(describe(p) + ": creating a variant pack: " + status_text(l, s));
    int64_t uids[4] = {kUidX, kUidW, kUidY, kUidBias};
    void* ptrs[4] = {reinterpret_cast<void*>(x), reinterpret_cast<void*>(w), reinterpret_cast<void*>(y),
                     reinterpret_cast<void*>(bias)};
    void* ws = plan.workspace ? reinterpret_cast<void*>(workspace) : nullptr;
    int64_t n = plan.bias ? 4 : 3;
    s = l.be_set(pack, kVariantPackUniqueIds, kTypeInt64, n, uids);
    if (s == kSuccess) s = l.be_set(pack, kVariantPackDataPointers, kTypeVoidPtr, n, ptrs);
    if (s == kSuccess) s = l.be_set(pack, kVariantPackWorkspace, kTypeVoidPtr, 1, &ws);
    if (s == kSuccess) s = l.be_finalize(pack);
    Status built = s;
    if (s == kSuccess) s = l.be_execute(h, plan.graph->exec, pack);
    l.be_destroy(pack);
    if (s == kSuccess) return;
    std::string what = std::string(built == kSuccess ? "cudnnBackendExecute" : "making the variant pack") + " (" +
                       plan.graph->engine + "): " + status_text(l, s);
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
