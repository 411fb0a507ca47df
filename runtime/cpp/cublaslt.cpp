// Blade runtime: GEMMs through cuBLASLt opened at run time (see cublaslt.h).
#include "cublaslt.h"

#include <dlfcn.h>

#include <stdexcept>

#include "cublaslt_abi.h"
#include "cuda_driver.h"
#include "dl_symbols.h"

namespace blade {

namespace {

using namespace cublaslt_abi;

struct Library {
  bool loaded = false;
  std::string why;
  Status (*create)(Handle*) = nullptr;
  Status (*destroy)(Handle) = nullptr;
  const char* (*status_string)(Status) = nullptr;
  Status (*desc_create)(MatmulDesc*, int, int) = nullptr;
  Status (*desc_destroy)(MatmulDesc) = nullptr;
  Status (*desc_set)(MatmulDesc, int, const void*, size_t) = nullptr;
  Status (*layout_create)(Layout*, int, uint64_t, uint64_t, int64_t) = nullptr;
  Status (*layout_destroy)(Layout) = nullptr;
  Status (*layout_set)(Layout, int, const void*, size_t) = nullptr;
  Status (*pref_create)(Preference*) = nullptr;
  Status (*pref_destroy)(Preference) = nullptr;
  Status (*pref_set)(Preference, int, const void*, size_t) = nullptr;
  Status (*heuristic)(Handle, MatmulDesc, Layout, Layout, Layout, Layout, Preference, int, HeuristicResult*,
                      int*) = nullptr;
  Status (*matmul)(Handle, MatmulDesc, const void*, const void*, Layout, const void*, Layout, const void*,
                   const void*, Layout, void*, Layout, const Algo*, void*, size_t, void*) = nullptr;
};

template <typename F>
bool bind(void* lib, const char* name, F* fn, std::string* why) {
  return bind_symbol(lib, "cuBLASLt", name, fn, why);
}

Library open_library(const std::string& path) {
  Library l;
  void* lib = open_shared_library(path, "cuBLASLt", &l.why);
  if (lib == nullptr) return l;
  l.loaded = bind(lib, "cublasLtCreate", &l.create, &l.why) && bind(lib, "cublasLtDestroy", &l.destroy, &l.why) &&
             bind(lib, "cublasLtGetStatusString", &l.status_string, &l.why) &&
             bind(lib, "cublasLtMatmulDescCreate", &l.desc_create, &l.why) &&
             bind(lib, "cublasLtMatmulDescDestroy", &l.desc_destroy, &l.why) &&
             bind(lib, "cublasLtMatmulDescSetAttribute", &l.desc_set, &l.why) &&
             bind(lib, "cublasLtMatrixLayoutCreate", &l.layout_create, &l.why) &&
             bind(lib, "cublasLtMatrixLayoutDestroy", &l.layout_destroy, &l.why) &&
             bind(lib, "cublasLtMatrixLayoutSetAttribute", &l.layout_set, &l.why) &&
             bind(lib, "cublasLtMatmulPreferenceCreate", &l.pref_create, &l.why) &&
             bind(lib, "cublasLtMatmulPreferenceDestroy", &l.pref_destroy, &l.why) &&
             bind(lib, "cublasLtMatmulPreferenceSetAttribute", &l.pref_set, &l.why) &&
             bind(lib, "cublasLtMatmulAlgoGetHeuristic", &l.heuristic, &l.why) &&
             bind(lib, "cublasLtMatmul", &l.matmul, &l.why);
  return l;
}

// One library per path, opened once.
const Library& library(const std::string& path) { return opened_once<Library>(path, open_library); }

std::string status_text(const Library& l, Status s) {
  const char* text = l.status_string ? l.status_string(s) : nullptr;
  return std::string(text ? text : "cuBLAS error") + " (" + std::to_string(s) + ")";
}

// The largest power of two (at most 256) dividing a pointer: what cuBLASLt may assume about it.
int alignment(uint64_t ptr) {
  int a = 1;
  while (a < 256 && ptr % (2 * a) == 0) a *= 2;
  return a;
}

}  // namespace

std::string describe(const GemmProblem& p) {
  auto mat = [](const char* name, bool t, int64_t rows, int64_t cols, int64_t ld) {
    return std::string(name) + (t ? "^T" : "") + " stored " + std::to_string(t ? cols : rows) + "x" +
           std::to_string(t ? rows : cols) + " ld " + std::to_string(ld);
  };
  std::string s = "cuBLASLt GEMM " + std::string(p.dtype == kFloat16 ? "float16" : p.dtype == kBFloat16 ? "bfloat16" : "dtype " + std::to_string(p.dtype)) +
                  " D(" + std::to_string(p.m) + "x" + std::to_string(p.n) + ") = " + mat("A", p.transa, p.m, p.k, p.lda) +
                  " . " + mat("B", p.transb, p.k, p.n, p.ldb) + ", D ld " + std::to_string(p.ldd);
  if (p.batch > 1) {
    s += ", batch " + std::to_string(p.batch) + " strides " + std::to_string(p.stride_a) + "/" +
         std::to_string(p.stride_b) + "/" + std::to_string(p.stride_d);
  }
  return s;
}

void validate(const GemmProblem& p) {
  if (p.dtype != kFloat16 && p.dtype != kBFloat16) {
    throw std::invalid_argument(describe(p) + ": only float16 and bfloat16 are supported");
  }
  if (p.m < 0 || p.n < 0 || p.k < 0 || p.batch < 1) throw std::invalid_argument(describe(p) + ": negative size");
  int64_t a_rows = p.transa ? p.k : p.m, b_rows = p.transb ? p.n : p.k;
  if (p.lda < std::max<int64_t>(1, a_rows) || p.ldb < std::max<int64_t>(1, b_rows) ||
      p.ldd < std::max<int64_t>(1, p.m)) {
    throw std::invalid_argument(describe(p) + ": a leading dimension is smaller than its matrix's stored rows");
  }
  if (p.batch > 1 && (p.stride_a < 0 || p.stride_b < 0 || p.stride_d < 1)) {
    throw std::invalid_argument(describe(p) + ": invalid batch strides");
  }
}

bool cublaslt_available(const std::string& path, std::string* why) {
  const Library& l = library(path);
  if (!l.loaded && why) *why = l.why;
  return l.loaded;
}

struct CublasLt::Plan {
  const Library* lib = nullptr;
  GemmProblem problem;
  bool bias = false;
  int64_t device = 0;
  int64_t workspace_limit = 0;
  int align_a = 256, align_b = 256, align_d = 256;
  MatmulDesc desc = nullptr;
  Layout a = nullptr, b = nullptr, d = nullptr;
  Algo algo{};
  size_t workspace = 0;
  ~Plan() {
    if (lib == nullptr) return;
    if (desc) lib->desc_destroy(desc);
    for (Layout l : {a, b, d}) {
      if (l) lib->layout_destroy(l);
    }
  }
};

CublasLt::CublasLt(std::string library_path) : library_(std::move(library_path)) {
  std::string why;
  if (!cublaslt_available(library_, &why)) throw std::runtime_error(why);
}

CublasLt::~CublasLt() {
  const Library& l = library(library_);
  plans_.clear();
  for (auto& [device, handle] : handles_) l.destroy(static_cast<Handle>(handle));
}

int64_t CublasLt::plans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(plans_.size());
}

void* CublasLt::handle_for(int64_t device) {
  auto it = handles_.find(device);
  if (it != handles_.end()) return it->second;
  const Library& l = library(library_);
  Handle h = nullptr;
  Status s = l.create(&h);
  if (s != kSuccess) throw std::runtime_error("cublasLtCreate on device " + std::to_string(device) + ": " + status_text(l, s));
  handles_[device] = h;
  return h;
}

CublasLt::Plan& CublasLt::plan_for(const Key& key, const GemmProblem& p, bool bias, int64_t workspace_bytes,
                                   int align_a, int align_b, int align_d, int64_t device) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  const Library& l = library(library_);
  auto plan = std::make_unique<Plan>();
  plan->lib = &l;
  plan->problem = p;
  plan->bias = bias;
  plan->device = device;
  plan->workspace_limit = workspace_bytes;
  plan->align_a = align_a, plan->align_b = align_b, plan->align_d = align_d;
  auto check = [&](Status s, const char* what) {
    if (s != kSuccess) throw std::runtime_error(describe(p) + ": " + what + ": " + status_text(l, s));
  };
  check(l.desc_create(&plan->desc, kCompute32F, kFloat32), "cublasLtMatmulDescCreate");
  int32_t ta = p.transa ? kOpT : kOpN, tb = p.transb ? kOpT : kOpN;
  check(l.desc_set(plan->desc, kDescTransA, &ta, sizeof ta), "setting TRANSA");
  check(l.desc_set(plan->desc, kDescTransB, &tb, sizeof tb), "setting TRANSB");
  uint32_t epilogue = bias ? kEpilogueBias : kEpilogueDefault;
  check(l.desc_set(plan->desc, kDescEpilogue, &epilogue, sizeof epilogue), "setting the epilogue");
  if (bias) {
    int32_t bias_type = p.dtype;
    check(l.desc_set(plan->desc, kDescBiasDataType, &bias_type, sizeof bias_type), "setting the bias type");
  }
  auto layout = [&](Layout* out, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
    check(l.layout_create(out, p.dtype, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld),
          "cublasLtMatrixLayoutCreate");
    if (p.batch > 1) {
      int32_t count = static_cast<int32_t>(p.batch);
      check(l.layout_set(*out, kLayoutBatchCount, &count, sizeof count), "setting the batch count");
      check(l.layout_set(*out, kLayoutStridedBatchOffset, &stride, sizeof stride), "setting the batch stride");
    }
  };
  layout(&plan->a, p.transa ? p.k : p.m, p.transa ? p.m : p.k, p.lda, p.stride_a);
  layout(&plan->b, p.transb ? p.n : p.k, p.transb ? p.k : p.n, p.ldb, p.stride_b);
  layout(&plan->d, p.m, p.n, p.ldd, p.stride_d);
  Preference pref = nullptr;
  check(l.pref_create(&pref), "cublasLtMatmulPreferenceCreate");
  struct PrefGuard {
    const Library& l;
    Preference p;
    ~PrefGuard() { l.pref_destroy(p); }
  } guard{l, pref};
  uint64_t max_ws = static_cast<uint64_t>(workspace_bytes);
  check(l.pref_set(pref, kPrefMaxWorkspaceBytes, &max_ws, sizeof max_ws), "setting the workspace size");
  uint32_t aa = align_a, ab = align_b, ad = align_d;
  check(l.pref_set(pref, kPrefMinAlignmentA, &aa, sizeof aa), "setting A's alignment");
  check(l.pref_set(pref, kPrefMinAlignmentB, &ab, sizeof ab), "setting B's alignment");
  check(l.pref_set(pref, kPrefMinAlignmentC, &ad, sizeof ad), "setting C's alignment");
  check(l.pref_set(pref, kPrefMinAlignmentD, &ad, sizeof ad), "setting D's alignment");
  HeuristicResult result{};
  int found = 0;
  check(l.heuristic(static_cast<Handle>(handle_for(device)), plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1,
                    &result, &found),
        "cublasLtMatmulAlgoGetHeuristic");
  if (found < 1 || result.state != kSuccess) {
    throw std::runtime_error(describe(p) + ": cuBLASLt has no algorithm for it (alignments " + std::to_string(align_a) +
                             "/" + std::to_string(align_b) + "/" + std::to_string(align_d) + " bytes, workspace " +
                             std::to_string(workspace_bytes) + " bytes)");
  }
  plan->algo = result.algo;
  plan->workspace = result.workspaceSize;
  by_id_.push_back(plan.get());
  return *(plans_[key] = std::move(plan));
}

namespace {

bool check_alignment(int align, uint64_t ptr) { return ptr % static_cast<uint64_t>(align) == 0; }

}  // namespace

int64_t CublasLt::prepare(const GemmProblem& p, bool bias, int64_t workspace_bytes, int align_a, int align_b,
                          int align_d, int64_t device) {
  validate(p);
  if (p.k == 0) throw std::invalid_argument(describe(p) + ": k = 0 (the result is the bias alone: not a GEMM)");
  if (workspace_bytes < 0) throw std::invalid_argument("negative workspace size");
  for (int a : {align_a, align_b, align_d}) {
    if (a < 1 || a > 256 || (a & (a - 1)) != 0) throw std::invalid_argument("alignments are powers of two up to 256");
  }
  current_context(device);
  Key key{device, p.dtype, p.transa, p.transb, p.m, p.n, p.k, p.lda, p.ldb, p.ldd, p.batch, p.stride_a, p.stride_b,
          p.stride_d, bias, workspace_bytes, align_a, align_b, align_d};
  std::lock_guard<std::mutex> lock(mutex_);
  Plan& plan = plan_for(key, p, bias, workspace_bytes, align_a, align_b, align_d, device);
  for (size_t i = 0; i < by_id_.size(); ++i) {
    if (by_id_[i] == &plan) return static_cast<int64_t>(i);
  }
  throw std::logic_error("a cuBLASLt plan without an id");
}

bool CublasLt::run(int64_t id, uint64_t a, uint64_t b, uint64_t d, uint64_t bias, uint64_t workspace,
                   uint64_t stream, int64_t device) {
  std::lock_guard<std::mutex> lock(mutex_);  // the plan's bias pointer is set per call
  if (id < 0 || id >= static_cast<int64_t>(by_id_.size())) throw std::out_of_range("no cuBLASLt plan " + std::to_string(id));
  Plan& plan = *by_id_[id];
  const GemmProblem& p = plan.problem;
  if (device != plan.device) {
    throw std::invalid_argument(describe(p) + ": planned for device " + std::to_string(plan.device) + ", run on " +
                                std::to_string(device));
  }
  if (!check_alignment(plan.align_a, a) || !check_alignment(plan.align_b, b) || !check_alignment(plan.align_d, d)) {
    return false;
  }
  if ((bias != 0) != plan.bias) throw std::invalid_argument(describe(p) + ": bias given where the plan has none, or the reverse");
  if (p.m == 0 || p.n == 0) return true;
  current_context(device);
  const Library& l = *plan.lib;
  if (bias != 0) {
    void* ptr = reinterpret_cast<void*>(bias);
    Status s = l.desc_set(plan.desc, kDescBiasPointer, &ptr, sizeof ptr);
    if (s != kSuccess) throw std::runtime_error(describe(p) + ": setting the bias pointer: " + status_text(l, s));
  }
  const float alpha = 1.0f, beta = 0.0f;
  Status s = l.matmul(static_cast<Handle>(handle_for(device)), plan.desc, &alpha, reinterpret_cast<const void*>(a),
                      plan.a, reinterpret_cast<const void*>(b), plan.b, &beta, reinterpret_cast<const void*>(d),
                      plan.d, reinterpret_cast<void*>(d), plan.d, &plan.algo,
                      plan.workspace ? reinterpret_cast<void*>(workspace) : nullptr, plan.workspace,
                      reinterpret_cast<void*>(stream));
  if (s != kSuccess) throw std::runtime_error(describe(p) + ": cublasLtMatmul: " + status_text(l, s));
  return true;
}

void CublasLt::gemm(const GemmProblem& p, uint64_t a, uint64_t b, uint64_t d, uint64_t bias, uint64_t workspace,
                    int64_t workspace_bytes, uint64_t stream, int64_t device) {
  validate(p);
  if (p.m == 0 || p.n == 0) return;
  int64_t id = prepare(p, bias != 0, workspace_bytes, alignment(a), alignment(b), alignment(d), device);
  if (!run(id, a, b, d, bias, workspace, stream, device)) throw std::logic_error("a plan refused its own pointers");
}

}  // namespace blade
