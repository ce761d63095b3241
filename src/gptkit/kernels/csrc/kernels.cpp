// gptkit's native CPU kernels, registered as torch ops in the `gptkit_native` namespace.
//
// impl.h is compiled three times: for AVX-512, for AVX2 + FMA and for the baseline x86-64 (or whatever the
// compiler's default is elsewhere). The instruction set is chosen at run time from the CPU's features
// (or forced with set_isa, which gptkit.kernels drives from GPTKIT_KERNELS), never at build time, so one
// build runs on every machine of the same architecture.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define GK_X86 1
#endif

#ifdef GK_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")
#define GK_ISA isa_avx512
#define GK_AVX512_BLOCKS 1
#define GK_VNNI 1
#include "impl.h"
#undef GK_VNNI
#undef GK_AVX512_BLOCKS
#undef GK_ISA
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define GK_ISA isa_avx2
#include "impl.h"
#undef GK_ISA
#pragma GCC pop_options
#endif

#define GK_ISA isa_portable
#include "impl.h"
#undef GK_ISA

namespace {

enum Isa : int64_t { PORTABLE = 0, AVX2 = 1, AVX512 = 2 };

int64_t best_isa() {
#ifdef GK_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vnni"))
    return AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return AVX2;
#endif
  return PORTABLE;
}

int64_t active_isa = best_isa();

struct Kernels {
  decltype(&isa_portable::matmul_rows) matmul_rows;
  decltype(&isa_portable::dequantize_rows) dequantize_rows;
  decltype(&isa_portable::decode_attention_pairs) decode_attention_pairs;
  decltype(&isa_portable::packed_matmul) packed_matmul;
  decltype(&isa_portable::unpack) unpack;
};

Kernels kernels() {
#ifdef GK_X86
  if (active_isa == AVX512)
    return {isa_avx512::matmul_rows, isa_avx512::dequantize_rows, isa_avx512::decode_attention_pairs,
            isa_avx512::packed_matmul, isa_avx512::unpack};
  if (active_isa == AVX2)
    return {isa_avx2::matmul_rows, isa_avx2::dequantize_rows, isa_avx2::decode_attention_pairs,
            isa_avx2::packed_matmul, isa_avx2::unpack};
#endif
  return {isa_portable::matmul_rows, isa_portable::dequantize_rows, isa_portable::decode_attention_pairs,
          isa_portable::packed_matmul, isa_portable::unpack};
}

int64_t cpu_isa() { return best_isa(); }

int64_t set_isa(int64_t isa) {
  TORCH_CHECK(isa >= PORTABLE && isa <= best_isa(), "gptkit kernels: this CPU cannot run instruction set ", isa);
  active_isa = isa;
  return active_isa;
}

int64_t get_isa() { return active_isa; }

isa_portable::BlockType checked_type(int64_t ggml_type) {
  isa_portable::BlockType t = isa_portable::block_type(int(ggml_type));
  TORCH_CHECK(t.values != 0, "gptkit kernels: ggml type ", ggml_type, " is not supported");
  return t;
}

void check_weight(const at::Tensor& w, const isa_portable::BlockType& t, int64_t K) {
  TORCH_CHECK(w.dtype() == at::kByte && w.dim() == 2 && w.is_contiguous(), "weight must be contiguous (N, row_bytes) uint8");
  TORCH_CHECK(K > 0 && K % t.values == 0, "K=", K, " is not a multiple of the block size ", t.values);
  TORCH_CHECK(w.size(1) == K / t.values * t.bytes, "weight rows hold ", w.size(1), " bytes, expected ",
              K / t.values * t.bytes);
}

// Per-thread float scratch of at least n values (one dequantized weight row, or attention scores).
float* scratch(int64_t n) {
  thread_local std::vector<float> buffer;
  if (int64_t(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

// x (M, K) float32 @ dequantize(w)^T -> (M, N) float32, w (N, row_bytes) ggml blocks of ``ggml_type``.
at::Tensor ggml_matmul(const at::Tensor& x, const at::Tensor& w, int64_t ggml_type) {
  const auto t = checked_type(ggml_type);
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2, "x must be (M, K) float32");
  const at::Tensor xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), N = w.size(0);
  check_weight(w, t, K);
  at::Tensor y = at::empty({M, N}, xc.options());
  const float* xp = xc.data_ptr<float>();
  const uint8_t* wp = w.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  const int64_t row_bytes = w.size(1);
  const auto matmul_rows = kernels().matmul_rows;
  // a grain of 16 rows: 576 rows split over 2 threads in two parallel chunks, and whole cache lines of y
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    matmul_rows(xp, M, K, wp, row_bytes, int(ggml_type), n0, n1, yp, N, scratch(K));
  });
  return y;
}

// dequantize(w) -> (N, K) in float32 or bfloat16.
at::Tensor ggml_dequantize(const at::Tensor& w, int64_t ggml_type, int64_t K, at::ScalarType dtype) {
  const auto t = checked_type(ggml_type);
  check_weight(w, t, K);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "dequantize to float32 or bfloat16");
  const int64_t N = w.size(0);
  at::Tensor out = at::empty({N, K}, w.options().dtype(dtype));
  const uint8_t* wp = w.data_ptr<uint8_t>();
  void* op = out.data_ptr();
  const auto dequantize_rows = kernels().dequantize_rows;
  const bool bf16 = dtype == at::kBFloat16;
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    dequantize_rows(wp, w.size(1), int(ggml_type), K, n0, n1, op, bf16, scratch(K));
  });
  return out;
}

// softmax(q k^T * scale, masked) v for one query per row: q (B, H, D); k, v (B, Hkv, S_max, D) float32
// caches of which the first S = visible.size(1) columns are read; visible (B, S) bool -> (B, H, D).
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& visible, double scale) {
  TORCH_CHECK(q.dtype() == at::kFloat && k.dtype() == at::kFloat && v.dtype() == at::kFloat,
              "decode_attention reads float32 queries and caches");
  TORCH_CHECK(q.dim() == 3 && k.dim() == 4 && v.sizes() == k.sizes() && visible.dim() == 2, "bad shapes");
  TORCH_CHECK(k.is_contiguous() && v.is_contiguous(), "caches must be contiguous");
  const at::Tensor qc = q.contiguous();
  const at::Tensor mask = visible.to(at::kBool).contiguous();
  const int64_t B = qc.size(0), H = qc.size(1), D = qc.size(2), Hkv = k.size(1), S_max = k.size(2);
  const int64_t S = mask.size(1);
  TORCH_CHECK(k.size(0) == B && k.size(3) == D && H % Hkv == 0 && mask.size(0) == B && S <= S_max,
              "decode_attention: shapes do not agree");
  at::Tensor out = at::empty_like(qc);
  const float *qp = qc.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const uint8_t* mp = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
  float* op = out.data_ptr<float>();
  const auto attention = kernels().decode_attention_pairs;
  at::parallel_for(0, B * Hkv, 1, [&](int64_t p0, int64_t p1) {
    attention(qp, kp, vp, mp, op, H, Hkv, S, S_max, D, float(scale), p0, p1, scratch((H / Hkv) * S));
  });
  return out;
}


int64_t packed_block_bytes(int64_t ggml_type) {
  int64_t bytes = 0;
  const bool ok = isa_portable::with_packed_type(int(ggml_type), [&]<int T>() { bytes = isa_portable::group_block_bytes<T>(); });
  TORCH_CHECK(ok, "gptkit kernels: ggml type ", ggml_type, " has no packed layout");
  return bytes;
}

// w (N, row_bytes) ggml blocks -> the x16 layout (packed.h): (ceil(N / 16), K / 32 * group block bytes).
at::Tensor ggml_pack(const at::Tensor& w, int64_t ggml_type, int64_t K) {
  const int64_t group_bytes = packed_block_bytes(ggml_type);
  check_weight(w, checked_type(ggml_type), K);
  const int64_t N = w.size(0), groups = (N + 15) / 16, blocks = K / 32;
  at::Tensor out = at::empty({groups, blocks * group_bytes}, w.options());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  uint8_t* op = out.data_ptr<uint8_t>();
  const int64_t row_bytes = w.size(1);
  at::parallel_for(0, groups, 16, [&](int64_t g0, int64_t g1) {
    isa_portable::with_packed_type(int(ggml_type), [&]<int T>() {
      isa_portable::pack_groups<T>(wp, N, row_bytes, blocks, g0, g1, op);
    });
  });
  return out;
}

void check_packed(const at::Tensor& packed, int64_t ggml_type, int64_t K, int64_t N) {
  const int64_t group_bytes = packed_block_bytes(ggml_type);
  TORCH_CHECK(packed.dtype() == at::kByte && packed.dim() == 2 && packed.is_contiguous(), "packed weights must be contiguous uint8");
  TORCH_CHECK(K > 0 && K % 32 == 0 && packed.size(1) == K / 32 * group_bytes && packed.size(0) * 16 >= N,
              "packed weights do not match K=", K, ", N=", N);
}

// x (M, K) float32 @ W^T -> (M, N) float32, W packed by ggml_pack.
at::Tensor ggml_packed_matmul(const at::Tensor& x, const at::Tensor& packed, int64_t ggml_type, int64_t N) {
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2, "x must be (M, K) float32");
  const at::Tensor xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), blocks = K / 32;
  check_packed(packed, ggml_type, K, N);
  std::vector<int16_t> codes(M * K);
  std::vector<float> scales(M * blocks);
  std::vector<int32_t> sums(M * blocks);
  std::vector<isa_portable::QuantizedRow> rows(M);
  const float* xp = xc.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m) {
    isa_portable::quantize_row(xp + m * K, K, codes.data() + m * K, scales.data() + m * blocks, sums.data() + m * blocks);
    rows[m] = {codes.data() + m * K, scales.data() + m * blocks, sums.data() + m * blocks};
  }
  at::Tensor y = at::empty({M, N}, xc.options());
  float* yp = y.data_ptr<float>();
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  const auto packed_matmul = kernels().packed_matmul;
  at::parallel_for(0, (N + 15) / 16, 4, [&](int64_t g0, int64_t g1) {
    packed_matmul(int(ggml_type), wp, K, reinterpret_cast<const void*>(rows.data()), M, g0, g1, yp, N);
  });
  return y;
}

// Rows ``rows`` (int64) of packed weights -> (len(rows), K) in float32 or bfloat16.
at::Tensor ggml_packed_rows(const at::Tensor& packed, int64_t ggml_type, int64_t K, const at::Tensor& rows,
                            at::ScalarType dtype) {
  TORCH_CHECK(rows.dtype() == at::kLong && rows.dim() == 1, "rows must be a 1-D int64 tensor");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "unpack to float32 or bfloat16");
  check_packed(packed, ggml_type, K, 0);
  const at::Tensor index = rows.contiguous();
  const int64_t n = index.size(0), limit = packed.size(0) * 16;
  const int64_t* ip = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(ip[i] >= 0 && ip[i] < limit, "row ", ip[i], " out of range");
  at::Tensor out = at::empty({n, K}, packed.options().dtype(dtype));
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  void* op = out.data_ptr();
  const auto unpack = kernels().unpack;
  const bool bf16 = dtype == at::kBFloat16;
  at::parallel_for(0, n, 16, [&](int64_t i0, int64_t i1) {
    unpack(int(ggml_type), wp, K, ip, i0, i1, op, bf16, scratch(K));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(gptkit_native, m) {
  m.def("ggml_matmul(Tensor x, Tensor w, int ggml_type) -> Tensor");
  m.def("ggml_dequantize(Tensor w, int ggml_type, int k, ScalarType dtype) -> Tensor");
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, Tensor visible, float scale) -> Tensor");
  m.def("ggml_pack(Tensor w, int ggml_type, int k) -> Tensor");
  m.def("ggml_packed_matmul(Tensor x, Tensor packed, int ggml_type, int n) -> Tensor");
  m.def("ggml_packed_rows(Tensor packed, int ggml_type, int k, Tensor rows, ScalarType dtype) -> Tensor");
  m.def("cpu_isa() -> int");
  m.def("get_isa() -> int");
  m.def("set_isa(int isa) -> int");
}

TORCH_LIBRARY_IMPL(gptkit_native, CPU, m) {
  m.impl("ggml_matmul", ggml_matmul);
  m.impl("ggml_dequantize", ggml_dequantize);
  m.impl("decode_attention", decode_attention);
  m.impl("ggml_pack", ggml_pack);
  m.impl("ggml_packed_matmul", ggml_packed_matmul);
  m.impl("ggml_packed_rows", ggml_packed_rows);
}

TORCH_LIBRARY_IMPL(gptkit_native, CompositeExplicitAutograd, m) {
  m.impl("cpu_isa", cpu_isa);
  m.impl("get_isa", get_isa);
  m.impl("set_isa", set_isa);
}
