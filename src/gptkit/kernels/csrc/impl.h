// The kernels proper, written once in portable C++ with GCC vector extensions and included once per
// instruction set by kernels.cpp (namespace GK_ISA, under a `#pragma GCC target`). Each function works on a
// range of output rows or (row, head) pairs so that the caller can spread the ranges over threads.

namespace GK_ISA {

#include "blocks.h"

typedef float vec16 __attribute__((vector_size(64)));  // one zmm, two ymm or four xmm registers

static inline vec16 load16(const float* p) {
  vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

static inline void store16(float* p, vec16 v) { std::memcpy(p, &v, sizeof v); }

static inline float sum16(vec16 v) {
  float s = 0.f;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
}

// sum_d a[d] b[d], 16 lanes at a time.
static inline float dot(const float* a, const float* b, int64_t n) {
  vec16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc += load16(a + i) * load16(b + i);
  float s = sum16(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

#ifdef GK_AVX512_BLOCKS
// The hot 32-weight blocks with AVX-512 intrinsics: the portable versions leave the nibble unpacking and
// the half -> float conversion to the compiler, which does them element by element.
static inline __m512 broadcast_half(const uint8_t* p) { return _mm512_set1_ps(_cvtsh_ss(read_u16(p))); }

static inline void nibbles_scaled(const uint8_t* qs, __m512 d, __m512 m, float* y) {
  const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  _mm512_storeu_ps(y, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15))), d, m));
  _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), d, m));
}

static inline void fast_q4_0(const uint8_t* b, float* y) {
  const __m512 d = broadcast_half(b);
  nibbles_scaled(b + 2, d, _mm512_mul_ps(d, _mm512_set1_ps(-8.f)), y);
}

static inline void fast_q4_1(const uint8_t* b, float* y) { nibbles_scaled(b + 4, broadcast_half(b), broadcast_half(b + 2), y); }

static inline void fast_q8_0(const uint8_t* b, float* y) {
  const __m512 d = broadcast_half(b);
  for (int half = 0; half < 2; ++half) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * half));
    _mm512_storeu_ps(y + 16 * half, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d));
  }
}
// A 32-weight block of type T (2: Q4_0, 3: Q4_1, 8: Q8_0) as two vectors of 16 floats.
template <int T>
static inline void block_vectors(const uint8_t* b, __m512& lo, __m512& hi) {
  const __m512 d = broadcast_half(b);
  if constexpr (T == 8) {
    lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(b + 2)))), d);
    hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(b + 18)))), d);
  } else {
    const __m512 m = T == 3 ? broadcast_half(b + 2) : _mm512_mul_ps(d, _mm512_set1_ps(-8.f));
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(b + (T == 3 ? 4 : 2))));
    lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15))), d, m);
    hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), d, m);
  }
}

// R rows of x (stride K) times one weight row of type T, dequantized in registers: R outputs.
template <int T, int BYTES, int R>
static inline void fused_rows(const float* x, int64_t K, const uint8_t* row, float* out, int64_t out_stride) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < K / 32; ++b) {
    __m512 lo, hi;
    block_vectors<T>(row + b * BYTES, lo, hi);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + r * K + 32 * b), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + r * K + 32 * b + 16), acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) out[r * out_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

// matmul_rows for the hot types without a scratch row: up to 8 rows of x share each dequantized block.
// Row chunks outside, weight rows inside: a chunk of x (8 x K floats) stays in L1 while weights stream.
template <int T, int BYTES>
static void fused_matmul_rows(const float* x, int64_t M, int64_t K, const uint8_t* w, int64_t row_bytes,
                              int64_t n0, int64_t n1, float* y, int64_t N) {
  for (int64_t m = 0; m < M;) {
    const int64_t rows = M - m >= 8 ? 8 : M - m >= 4 ? 4 : M - m >= 2 ? 2 : 1;
    const float* xm = x + m * K;
    float* ym = y + m * N;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = w + n * row_bytes;
      if (rows == 8) fused_rows<T, BYTES, 8>(xm, K, row, ym + n, N);
      else if (rows == 4) fused_rows<T, BYTES, 4>(xm, K, row, ym + n, N);
      else if (rows == 2) fused_rows<T, BYTES, 2>(xm, K, row, ym + n, N);
      else fused_rows<T, BYTES, 1>(xm, K, row, ym + n, N);
    }
    m += rows;
  }
}
#define GK_FUSED 1
#define GK_Q4_0 fast_q4_0
#define GK_Q4_1 fast_q4_1
#define GK_Q8_0 fast_q8_0
#else
#define GK_Q4_0 block_q4_0
#define GK_Q4_1 block_q4_1
#define GK_Q8_0 block_q8_0
#endif

using BlockFn = void (*)(const uint8_t*, float*);

// Weights and bytes per block of a ggml type id (0 values: a type these kernels do not read).
struct BlockType {
  int values;
  int bytes;
};

static inline BlockType block_type(int ggml_type) {
  switch (ggml_type) {
    case 2: return {32, 18};
    case 3: return {32, 20};
    case 6: return {32, 22};
    case 7: return {32, 24};
    case 8: return {32, 34};
    case 10: return {256, 84};
    case 11: return {256, 110};
    case 12: return {256, 144};
    case 13: return {256, 176};
    case 14: return {256, 210};
    default: return {0, 0};
  }
}

// Calls body.template operator()<block function, values, bytes>() for a ggml type id: the block reader is
// a template argument, so it is inlined into the loops over blocks.
template <class Body>
static inline void with_block_type(int ggml_type, Body&& body) {
  switch (ggml_type) {
    case 2: return body.template operator()<GK_Q4_0, 32, 18>();
    case 3: return body.template operator()<GK_Q4_1, 32, 20>();
    case 6: return body.template operator()<block_q5_0, 32, 22>();
    case 7: return body.template operator()<block_q5_1, 32, 24>();
    case 8: return body.template operator()<GK_Q8_0, 32, 34>();
    case 10: return body.template operator()<block_q2_k, 256, 84>();
    case 11: return body.template operator()<block_q3_k, 256, 110>();
    case 12: return body.template operator()<block_q4_k, 256, 144>();
    case 13: return body.template operator()<block_q5_k, 256, 176>();
    case 14: return body.template operator()<block_q6_k, 256, 210>();
  }
}

// One quantized row of K weights -> K floats.
template <BlockFn F, int V, int BYTES>
static inline void dequantize_row(const uint8_t* row, int64_t K, float* out) {
  for (int64_t b = 0; b < K / V; ++b) F(row + b * BYTES, out + b * V);
}

// Dot products of one dequantized weight row w (K floats) with R rows of x (row stride K): R outputs.
template <int R>
static inline void dot_rows(const float* w, const float* x, int64_t K, float* out, int64_t out_stride) {
  vec16 acc[R][2] = {};
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {  // two independent accumulators per row hide the FMA latency
    const vec16 w0 = load16(w + k), w1 = load16(w + k + 16);
    for (int r = 0; r < R; ++r) {
      acc[r][0] += w0 * load16(x + r * K + k);
      acc[r][1] += w1 * load16(x + r * K + k + 16);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = sum16(acc[r][0] + acc[r][1]);
    for (int64_t j = k; j < K; ++j) s += w[j] * x[r * K + j];
    out[r * out_stride] = s;
  }
}

// y[m, n] = sum_k x[m, k] w[n, k] for output rows n in [n0, n1) and every m: x (M, K) floats, w (N,
// row_bytes) ggml blocks, y (M, N). Each weight row is dequantized once into ``scratch`` (K floats, L1)
// and reused by all M rows, 4 at a time.
static void matmul_rows(const float* x, int64_t M, int64_t K, const uint8_t* w, int64_t row_bytes, int type,
                        int64_t n0, int64_t n1, float* y, int64_t N, float* scratch) {
#ifdef GK_FUSED
  if (type == 2) return fused_matmul_rows<2, 18>(x, M, K, w, row_bytes, n0, n1, y, N);
  if (type == 3) return fused_matmul_rows<3, 20>(x, M, K, w, row_bytes, n0, n1, y, N);
  if (type == 8) return fused_matmul_rows<8, 34>(x, M, K, w, row_bytes, n0, n1, y, N);
#endif
  with_block_type(type, [&]<BlockFn F, int V, int BYTES>() {
    for (int64_t n = n0; n < n1; ++n) {
      dequantize_row<F, V, BYTES>(w + n * row_bytes, K, scratch);
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) dot_rows<4>(scratch, x + m * K, K, y + m * N + n, N);
      for (; m + 2 <= M; m += 2) dot_rows<2>(scratch, x + m * K, K, y + m * N + n, N);
      for (; m < M; ++m) dot_rows<1>(scratch, x + m * K, K, y + m * N + n, N);
    }
  });
}

// Float -> bfloat16 bits, rounding to nearest even (NaN stays NaN).
static inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

// Rows [n0, n1) of w dequantized into out (N, K): floats, or bf16 bits when ``bf16``.
static void dequantize_rows(const uint8_t* w, int64_t row_bytes, int type, int64_t K, int64_t n0, int64_t n1,
                            void* out, bool bf16, float* scratch) {
  with_block_type(type, [&]<BlockFn F, int V, int BYTES>() {
    for (int64_t n = n0; n < n1; ++n) {
      if (!bf16) {
        dequantize_row<F, V, BYTES>(w + n * row_bytes, K, static_cast<float*>(out) + n * K);
        continue;
      }
      dequantize_row<F, V, BYTES>(w + n * row_bytes, K, scratch);
      uint16_t* dst = static_cast<uint16_t*>(out) + n * K;
      for (int64_t k = 0; k < K; ++k) dst[k] = float_to_bf16(scratch[k]);
    }
  });
}

#include "attention.h"
#include "packed.h"

}  // namespace GK_ISA

#undef GK_FUSED
#undef GK_Q4_0
#undef GK_Q4_1
#undef GK_Q8_0
