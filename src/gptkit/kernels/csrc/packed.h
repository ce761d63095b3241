// "x16" packed weights: Q4_0, Q4_1 and Q8_0 blocks of 16 output rows interleaved, so that one vector
// holds four consecutive weights (unsigned bytes) of each of 16 rows and an integer dot product (AVX-512
// VNNI vpdpbusd, unsigned x signed bytes) yields 16 rows' partial sums in its 16 lanes, with the rows'
// scales loaded as one vector.
//
// Layout (ggml's own codes and scales rearranged, no value changes): rows padded to a multiple of 16; for
// each group of 16 rows and each block b of 32 inputs, group_block_bytes<T>() bytes:
//   codes: 64-byte chunks, byte 4 l + j of a chunk belonging to row (lane) l:
//          Q4: 4 chunks i = 0..3: low nibble code(8i + j), high nibble code(8i + 4 + j);
//          Q8: 8 chunks c = 0..7: code(4c + j) + 128 (so that every code is an unsigned byte);
//   d: the 16 rows' fp16 scales; m: the 16 rows' fp16 minimums (Q4_1 only).
// Activations are quantized per block of 32 to 15-bit integers qx (scale amax / 16383: a relative error
// near 3e-5, so results stay close to fp32 rounding of the dequantized reference), held as two bytes,
// qx = 128 hi + lo with lo in [0, 127], so that vpdpbusd takes both halves. A block's dot product is exact
// in integers: sum_j w_j x_j = d dx (128 sum_j q_j hi_j + sum_j q_j lo_j - c sum_j qx_j) + m dx sum_j qx_j,
// q_j the stored code, c = 8 (Q4_0), 128 (Q8_0), 0 (Q4_1). The sums per block and row are the same
// whatever the number of rows, so one row and many get identical results.

template <int T> struct Packed;
template <> struct Packed<2> { static constexpr int code_bytes = 256, offset = 8, has_min = 0, in_bytes = 18, qs = 2; };
template <> struct Packed<3> { static constexpr int code_bytes = 256, offset = 0, has_min = 1, in_bytes = 20, qs = 4; };
template <> struct Packed<8> { static constexpr int code_bytes = 512, offset = 128, has_min = 0, in_bytes = 34, qs = 2; };

template <int T>
static constexpr int group_block_bytes() { return Packed<T>::code_bytes + 32 + 32 * Packed<T>::has_min; }

// Calls body.template operator()<T>() for a packable ggml type id; false for any other type.
template <class Body>
static inline bool with_packed_type(int ggml_type, Body&& body) {
  switch (ggml_type) {
    case 2: body.template operator()<2>(); return true;
    case 3: body.template operator()<3>(); return true;
    case 8: body.template operator()<8>(); return true;
  }
  return false;
}

// The code (0..15 for Q4, signed for Q8) of input j of a ggml block (ggml's Q4: qs[j] low nibble is
// input j, high nibble input j + 16).
template <int T>
static inline int block_code(const uint8_t* block, int j) {
  const uint8_t* qs = block + Packed<T>::qs;
  if (T == 8) return int(int8_t(qs[j]));
  return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

// Pack row groups [g0, g1) of N rows of ggml blocks (rows[n]: row n's first block) into out (groups,
// blocks * group_block_bytes). Returns false if a row has a NaN or infinite scale (the caller refuses it).
template <int T>
static bool pack_groups(const uint8_t* const* rows, int64_t N, int64_t blocks, int64_t g0, int64_t g1, uint8_t* out) {
  constexpr int GB = group_block_bytes<T>();
  using P = Packed<T>;
  bool finite = true;
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* dst = out + (g * blocks + b) * GB;
      std::memset(dst, 0, GB);  // padding rows: zero codes and scales
      for (int lane = 0; lane < 16 && g * 16 + lane < N; ++lane) {
        const uint8_t* src = rows[g * 16 + lane] + b * P::in_bytes;
        const uint8_t* qs = src + P::qs;
        for (int c = 0; c < 8; ++c) {
          for (int j = 0; j < 4; ++j) {
            if (T == 8) {  // the signed byte plus 128
              dst[64 * c + 4 * lane + j] = uint8_t(qs[4 * c + j] ^ 0x80);
            } else if (c < 4) {
              const int low = block_code<T>(src, 8 * c + j), high = block_code<T>(src, 8 * c + 4 + j);
              dst[64 * c + 4 * lane + j] = uint8_t(low | high << 4);
            }
          }
        }
        std::memcpy(dst + P::code_bytes + 2 * lane, src, 2);  // d
        if (P::has_min) std::memcpy(dst + P::code_bytes + 32 + 2 * lane, src + 2, 2);  // m
        for (int f = 0; f < 1 + P::has_min; ++f) finite &= ((read_u16(src + 2 * f) >> 10) & 0x1f) != 0x1f;
      }
    }
  }
  return finite;
}

// Stored code (an unsigned byte: value = (code - offset) d + m) of input j of lane ``lane`` in a packed
// group block.
template <int T>
static inline int packed_code(const uint8_t* blk, int lane, int j) {
  if (T == 8) return blk[64 * (j / 4) + 4 * lane + j % 4];
  const uint8_t pair = blk[64 * (j / 8) + 4 * lane + j % 4];
  return j % 8 < 4 ? (pair & 0x0F) : (pair >> 4);
}

// Activations of one row quantized per block of 32: the codes' high and low bytes, the scale dx and the
// codes' sum.
struct QuantizedRow {
  const int8_t* hi;    // (K,) in [-128, 127]
  const int8_t* lo;    // (K,) in [0, 127]
  const float* scale;  // (blocks,)
  const int32_t* sum;  // (blocks,) sum of the block's codes
};

constexpr int ACTIVATION_MAX = 16383;  // 15-bit codes: 128 hi + lo spans [-16384, 16383]

static inline void quantize_row(const float* x, int64_t K, int8_t* hi, int8_t* lo, float* scale, int32_t* sum) {
  for (int64_t b = 0; b < K / 32; ++b) {
    float amax = 0.f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / float(ACTIVATION_MAX), inverse = d != 0.f ? 1.f / d : 0.f;
    int32_t total = 0;
    for (int j = 0; j < 32; ++j) {
      const int v = std::clamp(int(std::nearbyint(x[32 * b + j] * inverse)), -ACTIVATION_MAX, ACTIVATION_MAX);
      lo[32 * b + j] = int8_t(v & 127);
      hi[32 * b + j] = int8_t((v - (v & 127)) / 128);
      total += v;
    }
    scale[b] = d;
    sum[b] = total;
  }
}

// Portable (any ISA): 16 rows of group ``g`` times R quantized activation rows -> out[r * 16 + lane].
template <int T>
static void packed_group_portable(const uint8_t* group, int64_t blocks, const QuantizedRow* x, int R, float* out) {
  constexpr int GB = group_block_bytes<T>();
  using P = Packed<T>;
  for (int i = 0; i < 16 * R; ++i) out[i] = 0.f;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = group + b * GB;
    for (int lane = 0; lane < 16; ++lane) {
      const float d = half_at(blk + P::code_bytes + 2 * lane);
      const float m = P::has_min ? half_at(blk + P::code_bytes + 32 + 2 * lane) : 0.f;
      for (int r = 0; r < R; ++r) {
        const int8_t *hi = x[r].hi + 32 * b, *lo = x[r].lo + 32 * b;
        int32_t dot = 0;
        for (int j = 0; j < 32; ++j) dot += packed_code<T>(blk, lane, j) * (128 * int32_t(hi[j]) + lo[j]);
        const float dx = x[r].scale[b];
        const int32_t sx = x[r].sum[b];
        out[r * 16 + lane] += float(dot - P::offset * sx) * (d * dx) + m * (dx * float(sx));
      }
    }
  }
}

#ifdef GK_VNNI
// The 8 code vectors of one packed block: lane l of vector c holds row l's stored codes of inputs 4c..4c+3
// as four unsigned bytes (what vpdpbusd multiplies with four broadcast signed activation bytes).
template <int T>
static inline void block_code_vectors(const uint8_t* blk, __m512i* codes) {
  if (T == 8) {
    for (int c = 0; c < 8; ++c) codes[c] = _mm512_loadu_si512(blk + 64 * c);
  } else {
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int i = 0; i < 4; ++i) {
      const __m512i both = _mm512_loadu_si512(blk + 64 * i);
      codes[2 * i] = _mm512_and_si512(both, low);
      codes[2 * i + 1] = _mm512_and_si512(_mm512_srli_epi16(both, 4), low);
    }
  }
}

// The same as packed_group_portable with AVX-512 VNNI; each block's codes are unpacked once for R rows.
template <int T, int R>
static void packed_group_vnni(const uint8_t* group, int64_t blocks, const QuantizedRow* x, float* out) {
  constexpr int GB = group_block_bytes<T>();
  using P = Packed<T>;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = group + b * GB;
    __m512i codes[8];
    block_code_vectors<T>(blk, codes);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + P::code_bytes)));
    __m512 m = _mm512_setzero_ps();
    if (P::has_min) m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + P::code_bytes + 32)));
    for (int r = 0; r < R; ++r) {
      const int8_t *hi = x[r].hi + 32 * b, *lo = x[r].lo + 32 * b;
      constexpr int CHAINS = R >= 2 ? 1 : 2;  // independent sums (x2: high, low) hide vpdpbusd's latency
      __m512i high[CHAINS], low[CHAINS];
      for (int i = 0; i < CHAINS; ++i) high[i] = low[i] = _mm512_setzero_si512();
      for (int c = 0; c < 8; ++c) {
        int32_t four_hi, four_lo;
        std::memcpy(&four_hi, hi + 4 * c, 4);
        std::memcpy(&four_lo, lo + 4 * c, 4);
        high[c % CHAINS] = _mm512_dpbusd_epi32(high[c % CHAINS], codes[c], _mm512_set1_epi32(four_hi));
        low[c % CHAINS] = _mm512_dpbusd_epi32(low[c % CHAINS], codes[c], _mm512_set1_epi32(four_lo));
      }
      for (int i = 1; i < CHAINS; ++i) high[0] = _mm512_add_epi32(high[0], high[i]), low[0] = _mm512_add_epi32(low[0], low[i]);
      const __m512i dot = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(high[0], 7), low[0]),
                                           _mm512_set1_epi32(-P::offset * x[r].sum[b]));
      const float dx = x[r].scale[b];
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, _mm512_set1_ps(dx)), acc[r]);
      if (P::has_min) acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(dx * float(x[r].sum[b])), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + 16 * r, acc[r]);
}
#endif

// y (M, N) for row groups [g0, g1): x quantized rows (M of them), packed weights (groups, blocks * GB).
template <int T>
static void packed_matmul_groups(const uint8_t* packed, int64_t blocks, const QuantizedRow* x, int64_t M,
                                 int64_t g0, int64_t g1, float* y, int64_t N) {
  constexpr int GB = group_block_bytes<T>();
  float tile[16 * 8];
  for (int64_t g = g0; g < g1; ++g) {  // a group's blocks (a few KiB) stay in L1 for every row of x
    const uint8_t* group = packed + g * blocks * GB;
    const int64_t lanes = std::min<int64_t>(16, N - g * 16);
    for (int64_t m = 0; m < M;) {
      const int R = M - m >= 8 ? 8 : M - m >= 4 ? 4 : M - m >= 2 ? 2 : 1;  // rows sharing one unpacking
#ifdef GK_VNNI
      if (R == 8) packed_group_vnni<T, 8>(group, blocks, x + m, tile);
      else if (R == 4) packed_group_vnni<T, 4>(group, blocks, x + m, tile);
      else if (R == 2) packed_group_vnni<T, 2>(group, blocks, x + m, tile);
      else packed_group_vnni<T, 1>(group, blocks, x + m, tile);
#else
      packed_group_portable<T>(group, blocks, x + m, R, tile);
#endif
      for (int r = 0; r < R; ++r) std::memcpy(y + (m + r) * N + g * 16, tile + 16 * r, lanes * sizeof(float));
      m += R;
    }
  }
}

// Rows of packed weights back to floats (or bf16 bits): ``rows`` lists the row indices (n of them).
template <int T>
static void unpack_rows(const uint8_t* packed, int64_t blocks, const int64_t* rows, int64_t i0, int64_t i1,
                        int64_t K, void* out, bool bf16, float* scratch) {
  constexpr int GB = group_block_bytes<T>();
  using P = Packed<T>;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t g = rows[i] / 16, lane = rows[i] % 16;
    float* values = bf16 ? scratch : static_cast<float*>(out) + i * K;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = packed + (g * blocks + b) * GB;
      const float d = half_at(blk + P::code_bytes + 2 * lane);
      const float m = P::has_min ? half_at(blk + P::code_bytes + 32 + 2 * lane) : 0.f;
      float* y = values + 32 * b;
      for (int j = 0; j < 32; ++j) y[j] = float(packed_code<T>(blk, int(lane), j) - P::offset) * d + m;
    }
    if (bf16) {
      uint16_t* dst = static_cast<uint16_t*>(out) + i * K;
      for (int64_t k = 0; k < K; ++k) dst[k] = float_to_bf16(values[k]);
    }
  }
}

// y (M, N) = x (M, K) @ W^T for packed W: rows of x quantized here, row groups [g0, g1) computed.
// (The rows come as void* so that every instruction set's function has the same signature.)
static void packed_matmul(int ggml_type, const uint8_t* packed, int64_t K, const void* rows, int64_t M,
                          int64_t g0, int64_t g1, float* y, int64_t N) {
  const QuantizedRow* x = static_cast<const QuantizedRow*>(rows);
  with_packed_type(ggml_type, [&]<int T>() { packed_matmul_groups<T>(packed, K / 32, x, M, g0, g1, y, N); });
}

static void unpack(int ggml_type, const uint8_t* packed, int64_t K, const int64_t* rows, int64_t i0, int64_t i1,
                   void* out, bool bf16, float* scratch) {
  with_packed_type(ggml_type, [&]<int T>() { unpack_rows<T>(packed, K / 32, rows, i0, i1, K, out, bf16, scratch); });
}

// Row groups [g0, g1) of packed weights, dequantized and transposed: out (K, width) row-major, with
// out[k][16 (g - g0) + lane] = W[16 g + lane][k] (floats, or bf16 bits when ``bf16``). This is the layout
// the packed codes already have (lanes are rows), so a dense many-row matmul can use it without a
// transpose: y = x @ out.
template <int T>
static void unpack_transposed_groups(const uint8_t* packed, int64_t blocks, int64_t g0, int64_t g1, int64_t first,
                                     int64_t width, void* out, bool bf16) {
  constexpr int GB = group_block_bytes<T>();
  using P = Packed<T>;
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t column = 16 * (g - first);
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = packed + (g * blocks + b) * GB;
#ifdef GK_VNNI
      __m512i codes[8];
      block_code_vectors<T>(blk, codes);
      const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + P::code_bytes)));
      __m512 base = _mm512_mul_ps(d, _mm512_set1_ps(-float(P::offset)));  // value of code 0
      if (P::has_min)
        base = _mm512_add_ps(base, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + P::code_bytes + 32))));
      for (int c = 0; c < 8; ++c) {
        for (int j = 0; j < 4; ++j) {  // byte j of each lane: input 4c + j
          const __m512i code = _mm512_and_si512(_mm512_srli_epi32(codes[c], 8 * j), _mm512_set1_epi32(0xFF));
          const __m512 value = _mm512_fmadd_ps(_mm512_cvtepi32_ps(code), d, base);
          const int64_t k = 32 * b + 4 * c + j;
          if (bf16) {
            __m512i bits = _mm512_castps_si512(value);
            const __m512i round = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1)),
                                                   _mm512_set1_epi32(0x7FFF));
            bits = _mm512_srli_epi32(_mm512_add_epi32(bits, round), 16);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(out) + k * width + column),
                                _mm512_cvtepi32_epi16(bits));
          } else {
            _mm512_storeu_ps(static_cast<float*>(out) + k * width + column, value);
          }
        }
      }
#else
      for (int lane = 0; lane < 16; ++lane) {
        const float d = half_at(blk + P::code_bytes + 2 * lane);
        const float m = P::has_min ? half_at(blk + P::code_bytes + 32 + 2 * lane) : 0.f;
        for (int j = 0; j < 32; ++j) {
          const float value = float(packed_code<T>(blk, lane, j) - P::offset) * d + m;
          const int64_t at = (32 * b + j) * width + column + lane;
          if (bf16) static_cast<uint16_t*>(out)[at] = float_to_bf16(value);
          else static_cast<float*>(out)[at] = value;
        }
      }
#endif
    }
  }
}

static void unpack_transposed(int ggml_type, const uint8_t* packed, int64_t K, int64_t g0, int64_t g1, int64_t first,
                              int64_t width, void* out, bool bf16) {
  with_packed_type(ggml_type, [&]<int T>() { unpack_transposed_groups<T>(packed, K / 32, g0, g1, first, width, out, bf16); });
}
