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
#include <atomic>
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
  decltype(&isa_portable::unpack_transposed) unpack_transposed;
};

Kernels kernels() {
#ifdef GK_X86
  if (active_isa == AVX512)
    return {isa_avx512::matmul_rows, isa_avx512::dequantize_rows, isa_avx512::decode_attention_pairs,
            isa_avx512::packed_matmul, isa_avx512::unpack, isa_avx512::unpack_transposed};
  if (active_isa == AVX2)
    return {isa_avx2::matmul_rows, isa_avx2::dequantize_rows, isa_avx2::decode_attention_pairs,
            isa_avx2::packed_matmul, isa_avx2::unpack, isa_avx2::unpack_transposed};
#endif
  return {isa_portable::matmul_rows, isa_portable::dequantize_rows, isa_portable::decode_attention_pairs,
          isa_portable::packed_matmul, isa_portable::unpack, isa_portable::unpack_transposed};
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
  at::parallel_for(0, B * H, 1, [&](int64_t p0, int64_t p1) {
    attention(qp, kp, vp, mp, op, H, Hkv, S, S_max, D, float(scale), 1, p0, p1, scratch(S));
  });
  return out;
}


int64_t packed_block_bytes(int64_t ggml_type) {
  int64_t bytes = 0;
  const bool ok = isa_portable::with_packed_type(int(ggml_type), [&]<int T>() { bytes = isa_portable::group_block_bytes<T>(); });
  TORCH_CHECK(ok, "gptkit kernels: ggml type ", ggml_type, " has no packed layout");
  return bytes;
}

// Rows of ggml blocks -> the x16 layout (packed.h): (ceil(N / 16), K / 32 * group block bytes). The rows
// are ``parts`` (each (N_i, row_bytes)) concatenated, then taken in ``order`` (N,) (a row permutation, or
// empty for as they are), so row transforms and fused [q; k; v] cost no copy of the file.
at::Tensor ggml_pack(at::TensorList parts, const at::Tensor& order, int64_t ggml_type, int64_t K) {
  const int64_t group_bytes = packed_block_bytes(ggml_type);
  const auto t = checked_type(ggml_type);
  std::vector<const uint8_t*> all_rows;
  for (const at::Tensor& part : parts) {
    check_weight(part, t, K);
    for (int64_t n = 0; n < part.size(0); ++n) all_rows.push_back(part.data_ptr<uint8_t>() + n * part.size(1));
  }
  const int64_t N = int64_t(all_rows.size()), groups = (N + 15) / 16, blocks = K / 32;
  std::vector<const uint8_t*> rows(all_rows);
  if (order.numel() > 0) {
    TORCH_CHECK(order.dtype() == at::kLong && order.numel() == N, "order must hold one int64 per row");
    const at::Tensor o = order.contiguous();
    for (int64_t n = 0; n < N; ++n) {
      const int64_t source = o.data_ptr<int64_t>()[n];
      TORCH_CHECK(source >= 0 && source < N, "order has row ", source, " of ", N);
      rows[n] = all_rows[source];
    }
  }
  at::Tensor out = at::empty({groups, blocks * group_bytes}, at::TensorOptions().dtype(at::kByte));
  uint8_t* op = out.data_ptr<uint8_t>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, groups, 16, [&](int64_t g0, int64_t g1) {
    isa_portable::with_packed_type(int(ggml_type), [&]<int T>() {
      if (!isa_portable::pack_groups<T>(rows.data(), N, blocks, g0, g1, op)) finite = false;
    });
  });
  TORCH_CHECK(finite.load(), "NaN or infinite block scales");
  return out;
}

void check_packed(const at::Tensor& packed, int64_t ggml_type, int64_t K, int64_t N) {
  const int64_t group_bytes = packed_block_bytes(ggml_type);
  TORCH_CHECK(packed.dtype() == at::kByte && packed.dim() == 2 && packed.is_contiguous(), "packed weights must be contiguous uint8");
  TORCH_CHECK(K > 0 && K % 32 == 0 && packed.size(1) == K / 32 * group_bytes && packed.size(0) * 16 >= N,
              "packed weights do not match K=", K, ", N=", N);
}

// A quantized weight as the block op receives it: the file's blocks (N, row_bytes) or the x16 layout.
struct WeightRef {
  const uint8_t* data;
  int64_t type, N, K, row_bytes;
  bool packed;
};

WeightRef weight_ref(const at::Tensor& data, int64_t type, int64_t N, int64_t K, bool packed) {
  if (packed) {
    check_packed(data, type, K, N);
  } else {
    check_weight(data, checked_type(type), K);
    TORCH_CHECK(data.size(0) == N, "weight has ", data.size(0), " rows, expected ", N);
  }
  return {data.data_ptr<uint8_t>(), type, N, K, packed ? 0 : data.size(1), packed};
}

// y (M, N) = x (M, K) @ W^T (+ bias): the kernels of ggml_packed_matmul / ggml_matmul without an op call.
void linear_into(const float* x, int64_t M, const WeightRef& w, const float* bias, float* y) {
  const int64_t K = w.K, N = w.N;
  if (w.packed) {
    const int64_t blocks = K / 32;
    std::vector<int8_t> high(M * K), low(M * K);
    std::vector<float> scales(M * blocks);
    std::vector<int32_t> sums(M * blocks);
    std::vector<isa_portable::QuantizedRow> rows(M);
    for (int64_t m = 0; m < M; ++m) {
      int8_t *hi = high.data() + m * K, *lo = low.data() + m * K;
      float* scale = scales.data() + m * blocks;
      int32_t* sum = sums.data() + m * blocks;
      isa_portable::quantize_row(x + m * K, K, hi, lo, scale, sum);
      rows[m] = {hi, lo, scale, sum};
    }
    const auto packed_matmul = kernels().packed_matmul;
    at::parallel_for(0, (N + 15) / 16, 4, [&](int64_t g0, int64_t g1) {
      packed_matmul(int(w.type), w.data, K, rows.data(), M, g0, g1, y, N);
    });
  } else {
    const auto matmul_rows = kernels().matmul_rows;
    at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
      matmul_rows(x, M, K, w.data, w.row_bytes, int(w.type), n0, n1, y, N, scratch(K));
    });
  }
  if (bias != nullptr)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}


// x (M, K) float32 @ dequantize(w)^T -> (M, N) float32, w (N, row_bytes) ggml blocks of ``ggml_type``.
at::Tensor ggml_matmul(const at::Tensor& x, const at::Tensor& w, int64_t ggml_type) {
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2, "x must be (M, K) float32");
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({xc.size(0), w.size(0)}, xc.options());
  linear_into(xc.data_ptr<float>(), xc.size(0), weight_ref(w, ggml_type, w.size(0), xc.size(1), false), nullptr,
              y.data_ptr<float>());
  return y;
}

// x (M, K) float32 @ W^T -> (M, N) float32, W packed by ggml_pack.
at::Tensor ggml_packed_matmul(const at::Tensor& x, const at::Tensor& packed, int64_t ggml_type, int64_t N) {
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2, "x must be (M, K) float32");
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({xc.size(0), N}, xc.options());
  linear_into(xc.data_ptr<float>(), xc.size(0), weight_ref(packed, ggml_type, N, xc.size(1), true), nullptr,
              y.data_ptr<float>());
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

// Row groups [g0, g1) of packed weights dequantized as W^T: (K, 16 (g1 - g0)) in float32 or bfloat16.
at::Tensor ggml_packed_transposed(const at::Tensor& packed, int64_t ggml_type, int64_t K, int64_t g0, int64_t g1,
                                  at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "unpack to float32 or bfloat16");
  check_packed(packed, ggml_type, K, 0);
  TORCH_CHECK(0 <= g0 && g0 <= g1 && g1 <= packed.size(0), "row groups out of range");
  const int64_t width = 16 * (g1 - g0);
  at::Tensor out = at::empty({K, width}, packed.options().dtype(dtype));
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  void* op = out.data_ptr();
  const auto unpack_transposed = kernels().unpack_transposed;
  const bool bf16 = dtype == at::kBFloat16;
  at::parallel_for(g0, g1, 4, [&](int64_t a, int64_t b) {
    unpack_transposed(int(ggml_type), wp, K, a, b, g0, width, op, bf16);
  });
  return out;
}

// ---- one decoder block for decode rows (one new token per row), in one op --------------------------------

const float* optional_data(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<float>() : nullptr;
}

// Row-wise RMSNorm (kind 0) or LayerNorm (kind 1) of x (M, C) into y, times weight, plus bias.
void norm_rows(const float* x, int64_t M, int64_t C, int64_t kind, double eps, const float* weight,
               const float* bias, float* y) {
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * C;
    double mean = 0.0, square = 0.0;
    for (int64_t c = 0; c < C; ++c) mean += row[c], square += double(row[c]) * row[c];
    mean /= C;
    square /= C;
    const double center = kind == 0 ? 0.0 : mean;
    const double variance = kind == 0 ? square : square - mean * mean;
    const float inverse = float(1.0 / std::sqrt(variance + eps));
    for (int64_t c = 0; c < C; ++c) {
      float v = float(row[c] - center) * inverse * weight[c];
      y[m * C + c] = bias != nullptr ? v + bias[c] : v;
    }
  }
}

// Rotate-half rotary embedding of n_heads heads of one row in place: x (heads, D), cos/sin (D).
void rotate_heads(float* x, int64_t heads, int64_t D, const float* cos, const float* sin) {
  const int64_t half = D / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * D;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = b * cos[i + half] + a * sin[i + half];
    }
  }
}

float gelu(float v, bool tanh_approximation) {
  if (tanh_approximation) return 0.5f * v * (1.f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  return 0.5f * v * (1.f + std::erf(v * 0.7071067811865476f));
}

// x (M, C) float32 -> x + attn(norm(x)), then + mlp(norm(x)): the decoder block for T = M / B new tokens
// in each of the B cache rows (token m in row m / T; T = 1 for decode, T > 1 to verify drafted tokens).
// qkv rows are [q; k; v]; cos/sin (M, D) or empty (no rotary); the new keys and values go to column
// columns[m] of the (B, Hkv, S_max, D) caches (all before any attention reads them); visible (M, S) says
// which cache columns each token attends (causal among a row's new tokens).
// mlp_kind: 0 SwiGLU (up holds [gate; up]), 1 GELU (erf), 2 GELU (tanh).
at::Tensor decode_block(const at::Tensor& x, const at::Tensor& attn_norm_w, const c10::optional<at::Tensor>& attn_norm_b,
                        const at::Tensor& qkv, int64_t qkv_type, bool qkv_packed, const c10::optional<at::Tensor>& qkv_b,
                        const at::Tensor& proj, int64_t proj_type, bool proj_packed, const c10::optional<at::Tensor>& proj_b,
                        const at::Tensor& mlp_norm_w, const c10::optional<at::Tensor>& mlp_norm_b,
                        const at::Tensor& up, int64_t up_type, bool up_packed, const c10::optional<at::Tensor>& up_b,
                        const at::Tensor& down, int64_t down_type, bool down_packed, const c10::optional<at::Tensor>& down_b,
                        const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& k_cache, const at::Tensor& v_cache,
                        const at::Tensor& columns, const at::Tensor& visible, int64_t n_head, int64_t norm_kind,
                        double eps, int64_t mlp_kind, int64_t ffn_dim) {
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2 && x.is_contiguous(), "x must be contiguous (M, C) float32");
  TORCH_CHECK(k_cache.dtype() == at::kFloat && k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.dim() == 4,
              "caches must be contiguous float32 (B, Hkv, S_max, D)");
  const int64_t M = x.size(0), C = x.size(1), Hkv = k_cache.size(1), S_max = k_cache.size(2), D = k_cache.size(3);
  const int64_t B = k_cache.size(0);
  const int64_t q_dim = n_head * D, kv_dim = Hkv * D, qkv_dim = q_dim + 2 * kv_dim, S = visible.size(1);
  const int64_t up_dim = mlp_kind == 0 ? 2 * ffn_dim : ffn_dim;
  TORCH_CHECK(B > 0 && M % B == 0 && columns.numel() == M && visible.size(0) == M && S <= S_max,
              "decode_block: tokens, columns, mask and cache rows disagree");
  const int64_t T = M / B;  // new tokens per cache row
  const WeightRef w_qkv = weight_ref(qkv, qkv_type, qkv_dim, C, qkv_packed);
  const WeightRef w_proj = weight_ref(proj, proj_type, C, q_dim, proj_packed);
  const WeightRef w_up = weight_ref(up, up_type, up_dim, C, up_packed);
  const WeightRef w_down = weight_ref(down, down_type, C, ffn_dim, down_packed);
  const bool rotary = cos.numel() > 0;
  const at::Tensor cols = columns.to(at::kLong).contiguous();
  const at::Tensor mask = visible.to(at::kBool).contiguous();

  at::Tensor out = x.clone();
  float* h = out.data_ptr<float>();  // the residual stream, updated in place
  std::vector<float> normed(M * C), heads(M * qkv_dim), attended(M * q_dim), delta(M * C);
  std::vector<float> hidden(M * up_dim), act(M * ffn_dim);

  // attention: norm -> qkv -> rotary -> cache write -> attention -> proj -> residual
  norm_rows(h, M, C, norm_kind, eps, attn_norm_w.data_ptr<float>(), optional_data(attn_norm_b), normed.data());
  linear_into(normed.data(), M, w_qkv, optional_data(qkv_b), heads.data());
  float* kc = k_cache.data_ptr<float>();
  float* vc = v_cache.data_ptr<float>();
  const int64_t* cp = cols.data_ptr<int64_t>();
  for (int64_t m = 0; m < M; ++m) {
    float* row = heads.data() + m * qkv_dim;  // [q (n_head, D); k (Hkv, D); v (Hkv, D)]
    if (rotary) rotate_heads(row, n_head + Hkv, D, cos.data_ptr<float>() + m * D, sin.data_ptr<float>() + m * D);
    TORCH_CHECK(cp[m] >= 0 && cp[m] < S_max, "cache column out of range");
    const int64_t cache_row = m / T;
    for (int64_t g = 0; g < Hkv; ++g) {
      std::memcpy(kc + ((cache_row * Hkv + g) * S_max + cp[m]) * D, row + q_dim + g * D, D * sizeof(float));
      std::memcpy(vc + ((cache_row * Hkv + g) * S_max + cp[m]) * D, row + q_dim + kv_dim + g * D, D * sizeof(float));
    }
  }
  std::vector<float> queries(M * q_dim);
  for (int64_t m = 0; m < M; ++m) std::memcpy(queries.data() + m * q_dim, heads.data() + m * qkv_dim, q_dim * sizeof(float));
  const auto attention = kernels().decode_attention_pairs;
  const uint8_t* mp = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
  const float scale = float(1.0 / std::sqrt(double(D)));
  at::parallel_for(0, M * n_head, 1, [&](int64_t p0, int64_t p1) {
    attention(queries.data(), kc, vc, mp, attended.data(), n_head, Hkv, S, S_max, D, scale, T, p0, p1, scratch(S));
  });
  linear_into(attended.data(), M, w_proj, optional_data(proj_b), delta.data());
  for (int64_t i = 0; i < M * C; ++i) h[i] += delta[i];

  // MLP: norm -> up (gate) -> activation -> down -> residual
  norm_rows(h, M, C, norm_kind, eps, mlp_norm_w.data_ptr<float>(), optional_data(mlp_norm_b), normed.data());
  linear_into(normed.data(), M, w_up, optional_data(up_b), hidden.data());
  for (int64_t m = 0; m < M; ++m) {
    const float* row = hidden.data() + m * up_dim;
    float* a = act.data() + m * ffn_dim;
    for (int64_t i = 0; i < ffn_dim; ++i) {
      if (mlp_kind == 0) {
        const float gate = row[i];
        a[i] = gate / (1.f + std::exp(-gate)) * row[ffn_dim + i];
      } else {
        a[i] = gelu(row[i], mlp_kind == 2);
      }
    }
  }
  linear_into(act.data(), M, w_down, optional_data(down_b), delta.data());
  for (int64_t i = 0; i < M * C; ++i) h[i] += delta[i];
  return out;
}

}  // namespace

TORCH_LIBRARY(gptkit_native, m) {
  m.def("ggml_matmul(Tensor x, Tensor w, int ggml_type) -> Tensor");
  m.def("ggml_dequantize(Tensor w, int ggml_type, int k, ScalarType dtype) -> Tensor");
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, Tensor visible, float scale) -> Tensor");
  m.def("ggml_pack(Tensor[] parts, Tensor order, int ggml_type, int k) -> Tensor");
  m.def("ggml_packed_matmul(Tensor x, Tensor packed, int ggml_type, int n) -> Tensor");
  m.def("ggml_packed_rows(Tensor packed, int ggml_type, int k, Tensor rows, ScalarType dtype) -> Tensor");
  m.def(
      "decode_block(Tensor x, Tensor attn_norm_w, Tensor? attn_norm_b, Tensor qkv, int qkv_type, bool qkv_packed, "
      "Tensor? qkv_b, Tensor proj, int proj_type, bool proj_packed, Tensor? proj_b, Tensor mlp_norm_w, "
      "Tensor? mlp_norm_b, Tensor up, int up_type, bool up_packed, Tensor? up_b, Tensor down, int down_type, "
      "bool down_packed, Tensor? down_b, Tensor cos, Tensor sin, Tensor(a!) k_cache, Tensor(b!) v_cache, "
      "Tensor columns, Tensor visible, int n_head, int norm_kind, float eps, int mlp_kind, int ffn_dim) -> Tensor");
  m.def("ggml_packed_transposed(Tensor packed, int ggml_type, int k, int g0, int g1, ScalarType dtype) -> Tensor");
  m.def("cpu_isa() -> int");
  m.def("get_isa() -> int");
  m.def("set_isa(int isa) -> int");
}

TORCH_LIBRARY_IMPL(gptkit_native, CPU, m) {
  m.impl("ggml_matmul", ggml_matmul);
  m.impl("ggml_dequantize", ggml_dequantize);
  m.impl("decode_attention", decode_attention);
  m.impl("ggml_pack", ggml_pack);
  m.impl("decode_block", decode_block);
  m.impl("ggml_packed_transposed", ggml_packed_transposed);
  m.impl("ggml_packed_matmul", ggml_packed_matmul);
  m.impl("ggml_packed_rows", ggml_packed_rows);
}

TORCH_LIBRARY_IMPL(gptkit_native, CompositeExplicitAutograd, m) {
  m.impl("cpu_isa", cpu_isa);
  m.impl("get_isa", get_isa);
  m.impl("set_isa", set_isa);
}
