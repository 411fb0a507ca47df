// Blade runtime: convolutions through cuDNN opened at run time (see cudnn_conv.h).
#include "cudnn_conv.h"

#include <dlfcn.h>

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
};

template <typename F>
bool bind(void* lib, const char* name, F* fn, std::string* why) {
  return bind_symbol(lib, "cuDNN", name, fn, why);
}

Library open_library(const std::string& path) {
  Library l;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    l.why = "cuDNN (" + path + ") cannot be opened: " + (err ? err : "unknown error");
    return l;
  }
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
  return l;
}

const Library& library(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<Library>> opened;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = opened[path];
  if (!slot) slot = std::make_unique<Library>(open_library(path));
  return *slot;
}

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
  ~Plan() {
    if (lib == nullptr) return;
    for (TensorDesc t : {x, y, b}) {
      if (t) lib->tensor_destroy(t);
    }
    if (w) lib->filter_destroy(w);
    if (conv) lib->conv_destroy(conv);
  }
};

CudnnConv::CudnnConv(std::string library_path) : library_(std::move(library_path)) {
  std::string why;
  if (!cudnn_available(library_, &why)) throw std::runtime_error(why);
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
  if (found != by_key_.end() && (!search || plans_[found->second]->searched)) return found->second;

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

  FwdAlgoPerf perf[kAlgoCount] = {};
  int returned = 0;
  if (search) {
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
  if (!chosen) {
    throw std::runtime_error(describe(p) + ": cuDNN has no algorithm for it within " +
                             std::to_string(workspace_limit) + " bytes of workspace (" + std::to_string(returned) +
                             " considered)");
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
