// Blade runtime: attention through cuDNN's fused attention operation (see cudnn_attention.h).
#include "cudnn_attention.h"

#include <cstdio>
#include <cstring>
#include <limits>
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

// unique ids of the graph's tensors (the variant pack names its pointers by them)
constexpr int64_t kUidQ = 1, kUidK = 2, kUidV = 3, kUidO = 4, kUidScale = 5, kUidNegInf = 6;
constexpr int64_t kFirstVirtualUid = 101;  // the composite graph's intermediates

std::string dims(int64_t a, int64_t b, int64_t c, int64_t d) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ", " + std::to_string(d) + "]";
}

std::string strides(const std::array<int64_t, 4>& s) { return dims(s[0], s[1], s[2], s[3]); }

std::vector<int64_t> vec(const std::array<int64_t, 4>& s) { return std::vector<int64_t>(s.begin(), s.end()); }

// The operations of a composite graph, built through one GraphBuilder (its first failure kept).
class Composite {
 public:
  Composite(GraphBuilder& b) : b_(b) {}
  std::vector<cudnn_backend::Desc> ops;

  // a virtual intermediate of dims `d` (packed strides)
  cudnn_backend::Desc virt(int dtype, const std::vector<int64_t>& d) {
    std::vector<int64_t> st(d.size());
    int64_t acc = 1;
    for (int i = static_cast<int>(d.size()) - 1; i >= 0; --i) st[i] = acc, acc *= d[i];
    return b_.tensor(next_uid_++, dtype, d, st, true);
  }

  // y = mode(x[, b][, t]) computed in `precision`; `axis` >= 0: GEN_INDEX's axis
  void pointwise(int mode, int precision, cudnn_backend::Desc x, cudnn_backend::Desc bd, cudnn_backend::Desc t,
                 cudnn_backend::Desc y, int64_t axis = -1) {
    using namespace cudnn_backend;
    Desc pw = b_.make(kPointwiseDesc, "creating a pointwise descriptor");
    int32_t m = mode, prec = precision;
    b_.set(pw, kPointwiseMode, kTypePointwiseMode, 1, &m, "a pointwise mode");
    b_.set(pw, kPointwiseMathPrec, kTypeDataType, 1, &prec, "a pointwise precision");
    if (axis >= 0) b_.set(pw, kPointwiseAxis, kTypeInt64, 1, &axis, "an index generator's axis");
    b_.finalize(pw, "finalizing a pointwise descriptor");
    Desc op = b_.make(kPointwiseOpDesc, "creating a pointwise operation");
    b_.set(op, kPointwisePwDesc, kTypeDescriptor, 1, &pw, "a pointwise operation's descriptor");
    b_.set(op, kPointwiseX, kTypeDescriptor, 1, &x, "a pointwise operation's input");
    if (bd) b_.set(op, kPointwiseB, kTypeDescriptor, 1, &bd, "a pointwise operation's second input");
    if (t) b_.set(op, kPointwiseT, kTypeDescriptor, 1, &t, "a select's condition");
    b_.set(op, kPointwiseY, kTypeDescriptor, 1, &y, "a pointwise operation's output");
    b_.finalize(op, "finalizing a pointwise operation");
    ops.push_back(op);
  }

  // c = a @ b (float32 accumulation)
  void matmul(cudnn_backend::Desc a, cudnn_backend::Desc bd, cudnn_backend::Desc c) {
    using namespace cudnn_backend;
    Desc mm = b_.make(kMatmulDesc, "creating a matmul descriptor");
    int32_t compute = kFloat;
    b_.set(mm, kMatmulCompType, kTypeDataType, 1, &compute, "a matmul's compute type");
    b_.finalize(mm, "finalizing a matmul descriptor");
    Desc op = b_.make(kMatmulOpDesc, "creating a matmul operation");
    b_.set(op, kMatmulA, kTypeDescriptor, 1, &a, "a matmul's A");
    b_.set(op, kMatmulB, kTypeDescriptor, 1, &bd, "a matmul's B");
    b_.set(op, kMatmulC, kTypeDescriptor, 1, &c, "a matmul's C");
    b_.set(op, kMatmulOpMatmul, kTypeDescriptor, 1, &mm, "a matmul's descriptor");
    b_.finalize(op, "finalizing a matmul operation");
    ops.push_back(op);
  }

  // y = reduce(x) over the dims where y has size 1
  void reduction(int mode, cudnn_backend::Desc x, cudnn_backend::Desc y) {
    using namespace cudnn_backend;
    Desc rd = b_.make(kReductionDesc, "creating a reduction descriptor");
    int32_t m = mode, compute = kFloat;
    b_.set(rd, kReductionOperator, kTypeReductionOp, 1, &m, "a reduction's operator");
    b_.set(rd, kReductionCompType, kTypeDataType, 1, &compute, "a reduction's compute type");
    b_.finalize(rd, "finalizing a reduction descriptor");
    Desc op = b_.make(kReductionOpDesc, "creating a reduction operation");
    b_.set(op, kReductionX, kTypeDescriptor, 1, &x, "a reduction's input");
    b_.set(op, kReductionY, kTypeDescriptor, 1, &y, "a reduction's output");
    b_.set(op, kReductionOpReduction, kTypeDescriptor, 1, &rd, "a reduction's descriptor");
    b_.finalize(op, "finalizing a reduction operation");
    ops.push_back(op);
  }

 private:
  GraphBuilder& b_;
  int64_t next_uid_ = kFirstVirtualUid;
};

// The composite graph of causal attention (see cudnn_attention.h): its operations, given the
// graph's non-virtual tensors.
std::vector<cudnn_backend::Desc> causal_graph(GraphBuilder& b, const AttentionProblem& p, cudnn_backend::Desc q,
                                              cudnn_backend::Desc kt, cudnn_backend::Desc v, cudnn_backend::Desc o,
                                              cudnn_backend::Desc scale, cudnn_backend::Desc neg_inf) {
  using namespace cudnn_backend;
  Composite c(b);
  const std::vector<int64_t> scores{p.b, p.h_q, p.s_q, p.s_kv}, rows{p.b, p.h_q, p.s_q, 1};
  Desc s1 = c.virt(kFloat, scores);
  c.matmul(q, kt, s1);
  Desc s2 = c.virt(kFloat, scores);
  c.pointwise(kPointwiseMul, kFloat, s1, scale, nullptr, s2);
  Desc row = c.virt(kInt32, scores), col = c.virt(kInt32, scores), keep = c.virt(kBoolean, scores);
  c.pointwise(kPointwiseGenIndex, kFloat, s2, nullptr, nullptr, row, 2);  // the query's index
  c.pointwise(kPointwiseGenIndex, kFloat, s2, nullptr, nullptr, col, 3);  // the key's index
  c.pointwise(kPointwiseCmpGe, kBoolean, row, col, nullptr, keep);        // key <= query
  Desc s3 = c.virt(kFloat, scores);
  c.pointwise(kPointwiseBinarySelect, kFloat, s2, neg_inf, keep, s3);     // kept, else -inf
  Desc max = c.virt(kFloat, rows);
  c.reduction(kReduceMax, s3, max);
  Desc shifted = c.virt(kFloat, scores), e = c.virt(kFloat, scores), sum = c.virt(kFloat, rows);
  c.pointwise(kPointwiseSub, kFloat, s3, max, nullptr, shifted);
  c.pointwise(kPointwiseExp, kFloat, shifted, nullptr, nullptr, e);
  c.reduction(kReduceAdd, e, sum);
  // the log-sum statistics (virtual: inference): without this branch cuDNN offers no engine
  Desc log_sum = c.virt(kFloat, rows), stats = c.virt(kFloat, rows);
  c.pointwise(kPointwiseLog, kFloat, sum, nullptr, nullptr, log_sum);
  c.pointwise(kPointwiseAdd, kFloat, max, log_sum, nullptr, stats);
  Desc probs = c.virt(p.dtype, scores);  // in the data's dtype: the second matmul's A must be
  c.pointwise(kPointwiseDiv, kFloat, e, sum, nullptr, probs);
  c.matmul(probs, v, o);
  return c.ops;
}

}  // namespace

std::string describe(const AttentionProblem& p) {
  return std::string("cuDNN attention ") +
         (p.dtype == kHalf ? "float16" : p.dtype == kBFloat16 ? "bfloat16" : "dtype " + std::to_string(p.dtype)) +
         " Q " + dims(p.b, p.h_q, p.s_q, p.d) + " strides " + strides(p.q_stride) + ", K " +
         dims(p.b, p.h_k, p.s_kv, p.d) + " strides " + strides(p.k_stride) + ", V " +
         dims(p.b, p.h_k, p.s_kv, p.d_v) + " strides " + strides(p.v_stride) + ", O strides " + strides(p.o_stride) +
         (p.causal ? ", causal" : "");
}

void validate(const AttentionProblem& p) {
  if (p.dtype != kHalf && p.dtype != kBFloat16) {
    throw std::invalid_argument(describe(p) + ": only float16 and bfloat16 are supported");
  }
  if (p.b < 1 || p.h_q < 1 || p.h_k < 1 || p.s_q < 1 || p.s_kv < 1 || p.d < 1 || p.d_v < 1) {
    throw std::invalid_argument(describe(p) + ": a size below 1");
  }
  if (p.h_q % p.h_k != 0) throw std::invalid_argument(describe(p) + ": query heads not a multiple of key heads");
  if (p.d % 8 != 0 || p.d_v % 8 != 0 || p.d > 256 || p.d_v > 256) {
    throw std::invalid_argument(describe(p) + ": head dims must be multiples of 8, at most 256");
  }
  const std::array<int64_t, 4> sizes[4] = {{p.b, p.h_q, p.s_q, p.d}, {p.b, p.h_k, p.s_kv, p.d},
                                            {p.b, p.h_k, p.s_kv, p.d_v}, {p.b, p.h_q, p.s_q, p.d_v}};
  const std::array<int64_t, 4>* all[4] = {&p.q_stride, &p.k_stride, &p.v_stride, &p.o_stride};
  for (int t = 0; t < 4; ++t) {
    const auto& s = *all[t];
    if (s[3] != 1) throw std::invalid_argument(describe(p) + ": the head dim's stride must be 1");
    for (int i = 0; i < 3; ++i) {
      if (s[i] < 0 || s[i] % 8 != 0) {
        throw std::invalid_argument(describe(p) + ": strides must be non-negative multiples of 8 elements (16 bytes)");
      }
      if (s[i] == 0 && sizes[t][i] > 1) {
        throw std::invalid_argument(describe(p) + ": a dim of size > 1 with stride 0 (broadcast) is not taken");
      }
    }
  }
}

struct CudnnAttention::Plan {
  AttentionProblem problem;
  float scale = 1.0f;
  float neg_inf = -std::numeric_limits<float>::infinity();  // by-value tensors: the kept variant pack points here
  int64_t device = 0;
  GraphPlan graph;
};

CudnnAttention::CudnnAttention(std::string library_path) : library_(std::move(library_path)) {
  const Library& l = library(library_);
  if (!l.loaded) throw std::runtime_error(l.why);
  if (!l.graph) throw std::runtime_error("this cuDNN has no graph API (cuDNN's fused attention needs it)");
  handles_ = std::make_unique<cudnn::Handles>(l);
}

CudnnAttention::~CudnnAttention() {
  handles_.reset();  // cudnnDestroy waits for the device: no plan goes while its work may still run
  plans_.clear();
}

int64_t CudnnAttention::prepare(const AttentionProblem& p, float scale, int64_t workspace_limit, int64_t device) {
  validate(p);
  if (workspace_limit < 0) throw std::invalid_argument("negative workspace limit");
  char scale_bits[32];
  std::snprintf(scale_bits, sizeof scale_bits, "%a", static_cast<double>(scale));
  std::string key = describe(p) + " scale " + scale_bits + " limit " + std::to_string(workspace_limit) + " device " +
                    std::to_string(device);
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = by_key_.find(key);
  if (found != by_key_.end()) return found->second;

  const Library& l = library(library_);
  current_context(device);
  Handle h = handles_->get(device);
  auto plan = std::make_unique<Plan>();
  plan->problem = p;
  plan->scale = scale;
  plan->device = device;
  GraphPlan& g = plan->graph;
  g.lib = &l;
  std::string why;
  GraphBuilder b(l, g, &why);
  using namespace cudnn_backend;
  Desc q = b.tensor(kUidQ, p.dtype, {p.b, p.h_q, p.s_q, p.d}, vec(p.q_stride), false);
  Desc v = b.tensor(kUidV, p.dtype, {p.b, p.h_k, p.s_kv, p.d_v}, vec(p.v_stride), false);
  Desc o = b.tensor(kUidO, p.dtype, {p.b, p.h_q, p.s_q, p.d_v}, vec(p.o_stride), false);
  // the scale (and -inf): float32 scalars passed by value, of the other tensors' rank
  Desc sc = b.tensor(kUidScale, kFloat, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  std::vector<Desc> ops;
  if (p.causal) {
    // K read as K^T [b, h, d, s_kv]: the same memory, the last two dims and strides swapped
    const auto& ks = p.k_stride;
    Desc kt = b.tensor(kUidK, p.dtype, {p.b, p.h_k, p.d, p.s_kv}, {ks[0], ks[1], ks[3], ks[2]}, false);
    Desc neg_inf = b.tensor(kUidNegInf, kFloat, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
    ops = causal_graph(b, p, q, kt, v, o, sc, neg_inf);
  } else {
    Desc k = b.tensor(kUidK, p.dtype, {p.b, p.h_k, p.s_kv, p.d}, vec(p.k_stride), false);
    Desc op = b.make(kSdpaFwdOpDesc, "creating the fused attention operation (cuDNN 9.13.1 or later)");
    b.set(op, kSdpaFwdQ, kTypeDescriptor, 1, &q, "the attention's Q");
    b.set(op, kSdpaFwdK, kTypeDescriptor, 1, &k, "the attention's K");
    b.set(op, kSdpaFwdV, kTypeDescriptor, 1, &v, "the attention's V");
    b.set(op, kSdpaFwdO, kTypeDescriptor, 1, &o, "the attention's O");
    b.set(op, kSdpaFwdScale, kTypeDescriptor, 1, &sc, "the attention's scale");
    b.finalize(op, "finalizing the fused attention operation");
    ops.push_back(op);
  }
  Desc graph = b.make(kOperationGraphDesc, "creating the operation graph");
  b.set(graph, kGraphOps, kTypeDescriptor, static_cast<int64_t>(ops.size()), ops.data(), "the graph's operations");
  b.set(graph, kGraphHandle, kTypeHandle, 1, &h, "the graph's handle");  // needed: without it no engine
  b.finalize(graph, "finalizing the operation graph");
  if (!b.ok() || !cudnn::make_plan(l, h, graph, workspace_limit, g, &why)) {
    throw std::runtime_error(describe(p) + ": " + why);
  }
  int64_t id = static_cast<int64_t>(plans_.size());
  plans_.push_back(std::move(plan));
  by_key_[key] = id;
  return id;
}

int64_t CudnnAttention::workspace_size(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cudnn::plan_at(plans_, id, "attention plan").graph.workspace;
}

std::string CudnnAttention::engine(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cudnn::plan_at(plans_, id, "attention plan").graph.engine;
}

int64_t CudnnAttention::plans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(plans_.size());
}

void CudnnAttention::run(int64_t id, uint64_t q, uint64_t k, uint64_t v, uint64_t o, uint64_t workspace,
                         uint64_t stream, int64_t device) {
  std::lock_guard<std::mutex> lock(mutex_);  // the handle's stream is set per call
  Plan& plan = cudnn::plan_at(plans_, id, "attention plan");
  const AttentionProblem& p = plan.problem;
  if (((q | k | v | o) & 15) != 0) throw std::invalid_argument(describe(p) + ": a pointer less than 16-byte aligned");
  if (plan.graph.workspace > 0 && workspace == 0) throw std::invalid_argument(describe(p) + ": no workspace given");
  const Library& l = *plan.graph.lib;
  Handle h = handles_->on_stream(device, plan.device, stream, [&] { return describe(p); });
  // by-value tensors: host pointers into the plan (the variant pack may be kept for the next call)
  int64_t uids[6] = {kUidQ, kUidK, kUidV, kUidO, kUidScale, kUidNegInf};
  void* ptrs[6] = {reinterpret_cast<void*>(q), reinterpret_cast<void*>(k), reinterpret_cast<void*>(v),
                   reinterpret_cast<void*>(o), &plan.scale, &plan.neg_inf};
  std::string what;
  Status s = cudnn::execute(l, h, plan.graph, p.causal ? 6 : 5, uids, ptrs,
                     plan.graph.workspace ? reinterpret_cast<void*>(workspace) : nullptr, &what);
  if (s != kSuccess) throw std::runtime_error(describe(p) + ": " + what + ": " + status_text(l, s));
}

}  // namespace blade
