// Blade runtime: the native step loop of a call plan (see step_list.h).
#include "step_list.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace blade {

void StepList::add_launch(std::shared_ptr<CudaKernel> kernel, int64_t gx, int64_t gy, int64_t gz,
                          const std::string& codes, const std::vector<int32_t>& bases,
                          const std::vector<KernelArg>& args, std::string label) {
  if (bases.size() != codes.size()) {
    throw std::invalid_argument(label + ": " + std::to_string(codes.size()) + " type codes, " +
                                std::to_string(bases.size()) + " bases");
  }
  Step s;
  s.label = std::move(label);
  s.kernel = std::move(kernel);
  s.grid[0] = gx, s.grid[1] = gy, s.grid[2] = gz;
  s.slots = pack_params(codes, args).slots;  // checks the codes and the count
  for (size_t k = 0; k < codes.size(); ++k) {
    if (bases[k] < 0) continue;
    if (codes[k] != 'p') throw std::invalid_argument(s.label + ": argument " + std::to_string(k) + " has a base but is not a pointer");
    s.ptrs.emplace_back(k, bases[k]);
    num_bases_ = std::max<int64_t>(num_bases_, bases[k] + 1);
  }
  steps_.push_back(std::move(s));
}

void StepList::add_gemm(std::shared_ptr<CublasLt> lt, int64_t plan, const std::array<int32_t, 5>& bases,
                        const std::array<int64_t, 5>& offsets, std::string label) {
  Step s;
  s.kind = Kind::kGemm;
  s.lt = std::move(lt);
  add_library_step(std::move(s), plan, bases, offsets, std::move(label), "a GEMM", {false, false, false, true, false});
}

void StepList::add_conv(std::shared_ptr<CudnnConv> conv, int64_t plan, const std::array<int32_t, 5>& bases,
                        const std::array<int64_t, 5>& offsets, std::string label) {
  Step s;
  s.kind = Kind::kConv;
  s.conv = std::move(conv);
  add_library_step(std::move(s), plan, bases, offsets, std::move(label), "a convolution",
                   {false, false, false, true, true});
}

void StepList::add_attention(std::shared_ptr<CudnnAttention> attention, int64_t plan,
                             const std::array<int32_t, 5>& bases, const std::array<int64_t, 5>& offsets,
                             std::string label) {
  Step s;
  s.kind = Kind::kAttention;
  s.attention = std::move(attention);
  add_library_step(std::move(s), plan, bases, offsets, std::move(label), "an attention",
                   {false, false, false, false, true});
}

void StepList::add_copy(const std::array<int32_t, 2>& bases, const std::array<int64_t, 2>& offsets,
                        int64_t dst_pitch, int64_t src_pitch, int64_t width, int64_t height, std::string label) {
  if (bases[0] < 0 || bases[1] < 0) throw std::invalid_argument(label + ": a copy operand without a base");
  if (width < 0 || height < 0 || (height > 1 && (dst_pitch < width || src_pitch < width))) {
    throw std::invalid_argument(label + ": a copy of " + std::to_string(height) + " rows of " + std::to_string(width) +
                                " bytes with pitches " + std::to_string(dst_pitch) + " and " + std::to_string(src_pitch));
  }
  Step s;
  s.kind = Kind::kCopy;
  s.label = std::move(label);
  s.bases = {bases[0], bases[1], -1, -1, -1};
  s.offsets = {offsets[0], offsets[1], 0, 0, 0};
  s.copy = {dst_pitch, src_pitch, width, height};
  num_bases_ = std::max<int64_t>(num_bases_, std::max(bases[0], bases[1]) + 1);
  steps_.push_back(std::move(s));
}

void StepList::add_library_step(Step s, int64_t plan, const std::array<int32_t, 5>& bases,
                                const std::array<int64_t, 5>& offsets, std::string label, const char* what,
                                const std::array<bool, 5>& optional) {
  s.label = std::move(label);
  s.plan = plan;
  s.bases = bases;
  s.offsets = offsets;
  for (int k = 0; k < 5; ++k) {
    if (bases[k] < 0 && !optional[k]) throw std::invalid_argument(s.label + ": " + what + " operand without a base");
    num_bases_ = std::max<int64_t>(num_bases_, bases[k] + 1);
  }
  steps_.push_back(std::move(s));
}

void StepList::check_range(const std::vector<uint64_t>& bases, size_t begin, size_t end) const {
  if (begin > end || end > steps_.size()) {
    throw std::out_of_range("steps [" + std::to_string(begin) + ", " + std::to_string(end) + ") of a list of " +
                            std::to_string(steps_.size()));
  }
  if (static_cast<int64_t>(bases.size()) < num_bases_) {
    throw std::invalid_argument(std::to_string(bases.size()) + " bases given, the steps name " +
                                std::to_string(num_bases_));
  }
}

uint64_t StepList::at(const std::vector<uint64_t>& bases, int32_t base, int64_t offset) const {
  return base < 0 ? 0 : bases[base] + static_cast<uint64_t>(offset);
}

std::vector<std::vector<uint64_t>> StepList::resolve(const std::vector<uint64_t>& bases, size_t begin,
                                                     size_t end) const {
  check_range(bases, begin, end);
  std::vector<std::vector<uint64_t>> out;
  for (size_t i = begin; i < end; ++i) {
    const Step& s = steps_[i];
    if (s.kind == Kind::kCopy) {
      out.push_back({at(bases, s.bases[0], s.offsets[0]), at(bases, s.bases[1], s.offsets[1])});
      continue;
    }
    if (s.kind != Kind::kLaunch) {
      std::vector<uint64_t> ptrs(5);
      for (int k = 0; k < 5; ++k) ptrs[k] = at(bases, s.bases[k], s.offsets[k]);
      out.push_back(std::move(ptrs));
      continue;
    }
    std::vector<uint64_t> slots(s.slots.begin(), s.slots.end() - 2);  // without the scratch pointers
    for (const auto& [slot, base] : s.ptrs) slots[slot] += bases[base];
    out.push_back(std::move(slots));
  }
  return out;
}

void StepList::run(const std::vector<uint64_t>& bases, uint64_t stream, int64_t device, size_t begin,
                   size_t end) const {
  check_range(bases, begin, end);
  uint64_t local[256];
  for (size_t i = begin; i < end; ++i) {
    const Step& s = steps_[i];
    try {
      if (s.kind == Kind::kCopy) {
        copy_2d(at(bases, s.bases[0], s.offsets[0]), s.copy[0], at(bases, s.bases[1], s.offsets[1]), s.copy[1],
                s.copy[2], s.copy[3], stream, device);
        continue;
      }
      if (s.kind == Kind::kAttention) {
        if (!s.attention) throw std::logic_error("no cuDNN attention given (a list made to be resolved only)");
        uint64_t p[5];
        for (int k = 0; k < 5; ++k) p[k] = at(bases, s.bases[k], s.offsets[k]);
        s.attention->run(s.plan, p[0], p[1], p[2], p[3], p[4], stream, device);
        continue;
      }
      if (s.kind == Kind::kConv) {
        if (!s.conv) throw std::logic_error("no cuDNN library given (a list made to be resolved only)");
        uint64_t p[5];
        for (int k = 0; k < 5; ++k) p[k] = at(bases, s.bases[k], s.offsets[k]);
        s.conv->run(s.plan, p[0], p[1], p[2], p[3], p[4], stream, device);
        continue;
      }
      if (s.kind == Kind::kGemm) {
        if (!s.lt) throw std::logic_error("no cuBLASLt library given (a list made to be resolved only)");
        uint64_t p[5];
        for (int k = 0; k < 5; ++k) p[k] = at(bases, s.bases[k], s.offsets[k]);
        if (!s.lt->run(s.plan, p[0], p[1], p[2], p[3], p[4], stream, device)) {
          throw std::runtime_error("an operand is less aligned than the GEMM's plan assumed");
        }
        continue;
      }
      if (!s.kernel) throw std::logic_error("no kernel given (a list made to be resolved only)");
      size_t n = s.slots.size();
      if (n > 256) throw std::invalid_argument(std::to_string(n) + " parameters (at most 256)");
      std::memcpy(local, s.slots.data(), n * sizeof(uint64_t));
      for (const auto& [slot, base] : s.ptrs) local[slot] += bases[base];
      s.kernel->launch_slots(s.grid[0], s.grid[1], s.grid[2], stream, local, n, device);
    } catch (const std::exception& e) {
      throw std::runtime_error(s.label + ": " + e.what());
    }
  }
}

StepCall::StepCall(std::shared_ptr<const StepList> list, std::vector<uint64_t> bases)
    : list_(std::move(list)), bases_(std::move(bases)) {
  if (!list_) throw std::invalid_argument("StepCall without a step list");
  if (static_cast<int64_t>(bases_.size()) < list_->num_bases()) {
    throw std::invalid_argument(std::to_string(bases_.size()) + " bases given, the steps name " +
                                std::to_string(list_->num_bases()));
  }
}

void StepCall::set(int64_t base, uint64_t value) {
  if (base < 0 || base >= static_cast<int64_t>(bases_.size())) {
    throw std::out_of_range("base " + std::to_string(base) + " of " + std::to_string(bases_.size()));
  }
  bases_[base] = value;
}

}  // namespace blade
