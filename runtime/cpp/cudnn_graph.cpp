// Blade runtime: cuDNN opened at run time and the graph-API pieces its operations share (see
// cudnn_graph.h).
#include "cudnn_graph.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "cuda_driver.h"
#include "dl_symbols.h"

namespace blade {
namespace cudnn {

using cudnn_abi::kSuccess;

namespace {

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




}  // namespace

bool keep_call_state() {
  static const bool keep = [] {
    const char* v = std::getenv("BLADE_CUDNN_KEEP_CALLS");
    return v == nullptr || *v != '0';
  }();
  return keep;
}

const Library& library(const std::string& path) { return opened_once<Library>(path, open_library); }

std::string status_text(const Library& l, Status s) {
  const char* text = l.error_string ? l.error_string(s) : nullptr;
  return std::string(text ? text : "cuDNN error") + " (" + std::to_string(s) + ")";
}

Handles::~Handles() {
  for (auto& [device, handle] : handles_) l_.destroy(handle);
}

Handle Handles::get(int64_t device) {
  auto it = handles_.find(device);
  if (it != handles_.end()) return it->second;
  current_context(device);
  Handle h = nullptr;
  Status s = l_.create(&h);
  if (s != kSuccess) throw std::runtime_error("cudnnCreate on device " + std::to_string(device) + ": " + status_text(l_, s));
  handles_[device] = h;
  return h;
}

bool make_plan(const Library& l, Handle h, cudnn_backend::Desc graph, int64_t limit, GraphPlan& g, std::string* why) {
  using namespace cudnn_backend;
  GraphBuilder b(l, g, why);
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

Status execute(const Library& l, Handle h, const GraphPlan& g, int64_t n, const int64_t* uids, void* const* pointers,
               void* workspace, std::string* what) {
  using namespace cudnn_backend;
  const bool keep = keep_call_state();
  Desc pack = g.pack;
  bool same = keep && pack && g.pack_workspace == workspace && static_cast<int64_t>(g.pack_uids.size()) == n &&
              std::equal(uids, uids + n, g.pack_uids.begin()) && std::equal(pointers, pointers + n, g.pack_pointers.begin());
  if (!same) {
    pack = nullptr;
    Status s = l.be_create(kVariantPackDesc, &pack);
    if (s != cudnn_abi::kSuccess) {
      *what = "creating a variant pack";
      return s;
    }
    s = l.be_set(pack, kVariantPackUniqueIds, kTypeInt64, n, uids);
    if (s == cudnn_abi::kSuccess) s = l.be_set(pack, kVariantPackDataPointers, kTypeVoidPtr, n, pointers);
    if (s == cudnn_abi::kSuccess) s = l.be_set(pack, kVariantPackWorkspace, kTypeVoidPtr, 1, &workspace);
    if (s == cudnn_abi::kSuccess) s = l.be_finalize(pack);
    if (s != cudnn_abi::kSuccess) {
      *what = "making the variant pack";
      l.be_destroy(pack);
      return s;
    }
    if (keep) {  // replaces the kept one (whose pointers differ)
      if (g.pack) l.be_destroy(g.pack);
      g.pack = pack;
      g.pack_uids.assign(uids, uids + n);
      g.pack_pointers.assign(pointers, pointers + n);
      g.pack_workspace = workspace;
    }
  }
  Status s = l.be_execute(h, g.exec, pack);
  if (s != cudnn_abi::kSuccess) *what = "cudnnBackendExecute (" + g.engine + ")";
  if (!keep) l.be_destroy(pack);
  return s;
}

}  // namespace cudnn
}  // namespace blade
