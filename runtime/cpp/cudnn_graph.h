// Blade runtime: cuDNN opened at run time, and what the operations built on cuDNN's graph
// ("backend") API share: the library's entry points, an execution plan's descriptors, a builder
// that stops at the first failure and says where, the heuristic search for a plan within a
// workspace limit, and one execution through a variant pack. Used by the convolution
// (cudnn_conv.h) and the attention (cudnn_attention.h). The ABI is declared in cudnn_abi.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cudnn_abi.h"

namespace blade {
namespace cudnn {

using cudnn_abi::Handle;
using cudnn_abi::kSuccess;
using cudnn_abi::Status;
using cudnn_abi::TensorDesc;
using cudnn_abi::FilterDesc;
using cudnn_abi::ConvDesc;
using cudnn_abi::FwdAlgoPerf;

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

// The library at `path` (a path or soname), opened once per process; `loaded` false and `why`
// where it cannot be opened or lacks an entry point of the legacy calls (the graph API's are
// optional: `graph`).
const Library& library(const std::string& path);

// cuDNN's text for a status, and its number.
std::string status_text(const Library& l, Status s);

// The descriptors of one graph-API plan (destroyed with it) and how it runs.
struct GraphPlan {
  const Library* lib = nullptr;
  std::vector<cudnn_backend::Desc> owned;
  cudnn_backend::Desc exec = nullptr;  // the execution plan
  int64_t workspace = 0;
  std::string engine;  // which heuristic result it is (for reports)
  // With keep_call_state(): the variant pack of the last execute and what it binds, kept while a
  // call binds the same pointers (a graphs-off call at a repeated shape does: the same arena,
  // weights and inputs), so that a call skips making one (create, three sets, finalize, destroy).
  // Guarded by the owner's mutex.
  mutable cudnn_backend::Desc pack = nullptr;
  mutable std::vector<int64_t> pack_uids;
  mutable std::vector<void*> pack_pointers;
  mutable void* pack_workspace = nullptr;
  GraphPlan() = default;
  GraphPlan(const GraphPlan&) = delete;
  GraphPlan& operator=(const GraphPlan&) = delete;
  ~GraphPlan() {
    if (pack) lib->be_destroy(pack);
    for (auto it = owned.rbegin(); it != owned.rend(); ++it) lib->be_destroy(*it);
  }
};

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
  // A tensor descriptor; `is_virtual`: an intermediate of the graph (no memory); `by_value`: a
  // scalar the variant pack passes as a host pointer.
  cudnn_backend::Desc tensor(int64_t uid, int dtype, const std::vector<int64_t>& dims,
                             const std::vector<int64_t>& strides, bool is_virtual, bool by_value = false) {
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
    if (by_value) {
      bool v = true;
      set(t, kTensorIsByValue, kTypeBoolean, 1, &v, "a by-value tensor");
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

// Whether cuDNN calls keep their per-call state (the variant pack, the handle's stream) for the
// next call: the default; BLADE_CUDNN_KEEP_CALLS=0 builds both on every call (the old way, kept to
// compare). Session 20 (H100, benchmarks/host_step_costs.py): an SD 1.5 UNet call's cuDNN
// convolutions 9.97 -> 9.12 us of host time each, attentions 8.93 -> 7.40; the cuDNN GPU suites
// pass either way.
bool keep_call_state();

// cuDNN handles, one per CUDA device, made on first use (with the device's primary context
// current) and destroyed with this object. Not locked: its owner's mutex guards it.
class Handles {
 public:
  explicit Handles(const Library& l) : l_(l) {}
  ~Handles();
  Handles(const Handles&) = delete;
  Handles& operator=(const Handles&) = delete;
  Handle get(int64_t device);
  // The device's handle with its stream set to `stream`, for a call on device `device` of a plan
  // made for device `planned`; where they differ or cuDNN fails, throws naming what(), the problem
  // (a callable: the text is made only then, not on every call).
  template <typename What>
  Handle on_stream(int64_t device, int64_t planned, uint64_t stream, const What& what) {
    if (device != planned) {
      throw std::invalid_argument(what() + ": planned for device " + std::to_string(planned) + ", run on " +
                                  std::to_string(device));
    }
    Handle h = get(device);  // makes the device's context current
    Status s = set_stream(device, h, stream);
    if (s != kSuccess) throw std::runtime_error(what() + ": cudnnSetStream: " + status_text(l_, s));
    return h;
  }
  // cudnnSetStream on the device's handle `h`; with keep_call_state(), skipped where `stream` is the
  // one set last: it is not a pointer store (cuDNN queries the driver about the stream on every
  // call: ~2.5 us on a B200 by NVIDIA/cudnn-frontend#611; once per library step of a graphs-off
  // call, not measured here yet). Every stream change of these handles goes through here.
  Status set_stream(int64_t device, Handle h, uint64_t stream) {
    auto it = streams_.find(device);
    if (it != streams_.end() && it->second == stream && keep_call_state()) return cudnn_abi::kSuccess;
    streams_.erase(device);  // unknown until cuDNN has taken it
    Status s = l_.set_stream(h, reinterpret_cast<void*>(stream));
    if (s == cudnn_abi::kSuccess) streams_[device] = stream;
    return s;
  }

 private:
  const Library& l_;
  std::map<int64_t, Handle> handles_;
  std::map<int64_t, uint64_t> streams_;  // the stream set last on each device's handle
};

// plans[id], or std::out_of_range naming `what` ("cuDNN plan", "attention plan") and the id.
template <typename Plan>
Plan& plan_at(const std::vector<std::unique_ptr<Plan>>& plans, int64_t id, const char* what) {
  if (id < 0 || id >= static_cast<int64_t>(plans.size())) throw std::out_of_range(std::string("no ") + what + " " + std::to_string(id));
  return *plans[id];
}

// The first of cuDNN's heuristic engine configurations for `graph` (INSTANT, then FALLBACK, as
// PyTorch) that makes an execution plan within `limit` bytes of workspace, kept in `g`; false (and
// why, listing what was tried) where none does.
bool make_plan(const Library& l, Handle h, cudnn_backend::Desc graph, int64_t limit, GraphPlan& g, std::string* why);

// Execute a plan with the variant pack (uids[k] -> pointers[k], host pointers for by-value
// tensors: they must outlive the plan, the pack is reused) and `workspace`; kSuccess or the
// failing status (`what` says which call failed).
Status execute(const Library& l, Handle h, const GraphPlan& g, int64_t n, const int64_t* uids, void* const* pointers,
               void* workspace, std::string* what);

}  // namespace cudnn
}  // namespace blade
