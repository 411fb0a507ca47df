// Blade runtime: scaled dot-product attention through cuDNN's fused attention operation, opened at
// run time like the convolution (cudnn_conv.h; the shared graph-API pieces in cudnn_graph.h).
//
// One call computes O = softmax(scale * Q K^T) V for Q [b, h_q, s_q, d], K [b, h_k, s_kv, d],
// V [b, h_k, s_kv, d_v] and O [b, h_q, s_q, d_v] (h_q a multiple of h_k: grouped-query attention),
// float16 or bfloat16, each with its own strides (the last dim's 1), float32 accumulation, no
// mask tensor, no dropout, no softmax statistics (inference). Two operation graphs:
// * not causal: cuDNN's fused OPERATION_SDPA_FWD (cuDNN 9.13.1 and later), one operation;
// * causal (query i sees keys 0..i, top-left aligned, as torch's is_causal): the composite graph
//   cudnn-frontend builds for it: matmul Q K^T, scale, the mask from two index generators, a
//   compare and a select (-inf), softmax as max / subtract / exp / sum / divide (with the log-sum
//   statistics branch the engine requires, virtual), the probabilities in the data's dtype, and
//   matmul by V.
// The plan of a problem (dims, strides, dtype, causal, scale, device) is made once on `prepare`
// (the operation graph, the first of cuDNN's heuristic engine configurations that makes an
// execution plan within the workspace limit); `run` builds one variant pack (the scale, and -inf
// for the causal mask, passed by value as host floats) and executes it on the caller's stream.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace blade {

namespace cudnn {
class Handles;
}  // namespace cudnn

struct AttentionProblem {
  int dtype = 2;  // cudnnDataType: 2 float16, 9 bfloat16
  int64_t b = 0, h_q = 0, h_k = 0, s_q = 0, s_kv = 0, d = 0, d_v = 0;
  // strides in elements of Q, K, V, O over their dims [b, h, s, d]
  std::array<int64_t, 4> q_stride{}, k_stride{}, v_stride{}, o_stride{};
  bool causal = false;
};

// The problem in words, for error messages and tests.
std::string describe(const AttentionProblem& p);

// Throws std::invalid_argument when cuDNN's fused attention does not take the problem: a dtype
// other than float16/bfloat16, a size below 1, h_q not a multiple of h_k, a head dim not a multiple
// of 8 or above 256, a last-dim stride other than 1, another stride not a multiple of 8 elements
// (16 bytes).
void validate(const AttentionProblem& p);

class CudnnAttention {
 public:
  explicit CudnnAttention(std::string library);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // The id of the plan of a problem with softmax scale `scale` on device `device` (made once,
  // kept). Throws naming the problem and cuDNN's answer where cuDNN makes no plan for it.
  int64_t prepare(const AttentionProblem& p, float scale, int64_t workspace_limit, int64_t device);

  // Bytes of workspace a plan needs (run's `workspace` holds at least that many).
  int64_t workspace_size(int64_t plan) const;
  // Which heuristic engine configuration the plan runs (for reports).
  std::string engine(int64_t plan) const;
  int64_t plans() const;

  // Enqueue O = attention(Q, K, V) on `stream` of CUDA device `device`.
  void run(int64_t plan, uint64_t q, uint64_t k, uint64_t v, uint64_t o, uint64_t workspace, uint64_t stream,
           int64_t device);

 private:
  struct Plan;

  std::string library_;
  mutable std::mutex mutex_;
  std::unique_ptr<cudnn::Handles> handles_;  // destroyed before the plans (the destructor)
  std::map<std::string, int64_t> by_key_;  // problem, scale, limit, device -> plan id
  std::vector<std::unique_ptr<Plan>> plans_;
};

}  // namespace blade
