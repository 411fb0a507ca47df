// ctest: the cuDNN convolution's and attention's parts that need no GPU: problem validation,
// output sizes and descriptions, and a clear "cannot be opened" where the library is missing (the
// CI machine) instead of a crash.
#include <stdexcept>
#include <string>

#include "check.h"
#include "../cudnn_attention.h"
#include "../cudnn_conv.h"

namespace {

using blade_test::check;
using blade_test::failures;

bool rejects(const blade::ConvProblem& p, const std::string& needle) {
  try {
    blade::validate(p);
  } catch (const std::invalid_argument& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

blade::ConvProblem unet_conv() {  // a 3x3 convolution of an SD UNet block at 64x64, batch 2
  blade::ConvProblem p;
  p.dtype = 2, p.nhwc = true, p.spatial = 2;
  p.n = 2, p.c = 320, p.k = 320;
  p.in = {64, 64, 0}, p.kernel = {3, 3, 0}, p.pad = {1, 1, 0}, p.stride = {1, 1, 0}, p.dilation = {1, 1, 0};
  return p;
}

void test_output_and_validate() {
  blade::ConvProblem p = unet_conv();
  blade::validate(p);
  check(blade::conv_output(p)[0] == 64 && blade::conv_output(p)[1] == 64, "3x3, padding 1: same size");
  p.stride = {2, 2, 0};
  p.in = {63, 65, 0};  // odd sizes: floor((63 + 2 - 3) / 2) + 1 = 32, 33
  check(blade::conv_output(p)[0] == 32 && blade::conv_output(p)[1] == 33, "strided output sizes as PyTorch's");
  check(blade::describe(p).find("input 63x65, kernel 3x3, stride 2x2") != std::string::npos, "describe names sizes");
  blade::ConvProblem one = unet_conv();
  one.spatial = 1, one.in = {77, 0, 0}, one.kernel = {5, 0, 0}, one.pad = {0, 0, 0}, one.dilation = {2, 0, 0};
  one.stride = {1, 0, 0};
  blade::validate(one);
  check(blade::conv_output(one)[0] == 77 - 8, "1-D dilated: 77 - 2 * 4");
  blade::ConvProblem bad = unet_conv();
  bad.dtype = 0;
  check(rejects(bad, "float16 and bfloat16"), "float32 is refused by name");
  bad = unet_conv();
  bad.groups = 3;
  check(rejects(bad, "divisible by the groups"), "channels not divisible by the groups refused");
  bad = unet_conv();
  bad.in = {2, 2, 0}, bad.pad = {0, 0, 0}, bad.kernel = {3, 3, 0};
  check(rejects(bad, "output is empty"), "a kernel larger than the padded input refused");
  bad = unet_conv();
  bad.spatial = 4;
  check(rejects(bad, "1 to 3 spatial dims"), "4 spatial dims refused");
  bad = unet_conv();
  bad.n = 1 << 16;
  check(rejects(bad, "2^31 elements"), "sizes past cuDNN's int descriptors refused");
  blade::ConvProblem first = unet_conv();  // a model's NCHW input read by a channels-last convolution
  first.c = 4, first.x_channels_first = true;
  blade::validate(first);
  check(blade::describe(first).find("channels-last") != std::string::npos &&
            blade::describe(first).find("input channels-first") != std::string::npos,
        "describe names a channels-first input: " + blade::describe(first));
  check(blade::describe(first) != blade::describe([] { blade::ConvProblem q = unet_conv(); q.c = 4; return q; }()),
        "a channels-first input is another problem (plans are kept by description)");
  first.nhwc = false;
  check(rejects(first, "only in a channels-last problem"), "a channels-first input of a channels-first problem refused");
}

blade::AttentionProblem unet_attention() {  // an SD 1.5 UNet self-attention at 64x64, batch 2
  blade::AttentionProblem p;
  p.dtype = 2, p.b = 2, p.h_q = 8, p.h_k = 8, p.s_q = 4096, p.s_kv = 4096, p.d = 40, p.d_v = 40;
  p.q_stride = p.k_stride = p.v_stride = {4096 * 320 * 3, 40, 320 * 3, 1};  // views of one QKV projection
  p.o_stride = {4096 * 320, 40, 320, 1};                                  // [b, s, h, d] in memory
  return p;
}

bool attention_rejects(const blade::AttentionProblem& p, const std::string& needle) {
  try {
    blade::validate(p);
  } catch (const std::invalid_argument& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

void test_attention_validate() {
  blade::AttentionProblem p = unet_attention();
  blade::validate(p);
  check(blade::describe(p).find("Q [2, 8, 4096, 40] strides [3932160, 40, 960, 1]") != std::string::npos,
        "describe names sizes and strides: " + blade::describe(p));
  blade::AttentionProblem bad = unet_attention();
  bad.dtype = 0;
  check(attention_rejects(bad, "float16 and bfloat16"), "float32 attention refused by name");
  bad = unet_attention();
  bad.d = bad.d_v = 36;
  check(attention_rejects(bad, "multiples of 8"), "a head dim not a multiple of 8 refused");
  bad = unet_attention();
  bad.d = 264;
  check(attention_rejects(bad, "at most 256"), "a head dim above 256 refused");
  bad = unet_attention();
  bad.h_k = 3;
  check(attention_rejects(bad, "multiple of key heads"), "query heads not a multiple of key heads refused");
  bad = unet_attention();
  bad.k_stride[3] = 2;
  check(attention_rejects(bad, "stride must be 1"), "a strided head dim refused");
  bad = unet_attention();
  bad.v_stride[2] = 44;
  check(attention_rejects(bad, "multiples of 8 elements"), "a row stride off 16 bytes refused");
  bad = unet_attention();
  bad.k_stride[0] = 0;  // K broadcast over the batch
  check(attention_rejects(bad, "stride 0"), "a broadcast (stride 0) dim of size > 1 refused");
  blade::AttentionProblem one = unet_attention();
  one.b = 1, one.q_stride[0] = one.k_stride[0] = one.v_stride[0] = one.o_stride[0] = 0;
  blade::validate(one);  // a size-1 dim's stride addresses nothing
  bad = unet_attention();
  bad.s_kv = 0;
  check(attention_rejects(bad, "size below 1"), "an empty key sequence refused");
}

void test_missing_library() {
  std::string why;
  check(!blade::cudnn_available("/nonexistent/libcudnn.so.9", &why), "a missing library is not available");
  check(why.find("cannot be opened") != std::string::npos, "and says why: " + why);
  bool threw = false;
  try {
    blade::CudnnConv conv("/nonexistent/libcudnn.so.9");
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("cannot be opened") != std::string::npos;
  }
  check(threw, "constructing on a missing library raises with the reason");
  threw = false;
  try {
    blade::CudnnAttention attention("/nonexistent/libcudnn.so.9");
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("cannot be opened") != std::string::npos;
  }
  check(threw, "the attention on a missing library raises with the reason");
}

}  // namespace

int main() {
  test_output_and_validate();
  test_attention_validate();
  test_missing_library();
  if (failures == 0) std::printf("cudnn_conv: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
