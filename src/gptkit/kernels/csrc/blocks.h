// GGML block formats, read in place: one function per type turns one block into floats.
//
// Included once per instruction set (see kernels.cpp): the same portable C++ is compiled for AVX-512,
// AVX2 and the baseline, and the compiler vectorizes the fixed-length loops for each. Layouts and
// arithmetic follow ggml's dequantize_row_* (ggml-quants.c); the tests compare them with the `gguf`
// package's numpy dequantization on random blocks.

static inline uint16_t read_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// IEEE half -> float, exact for every value (subnormals, infinities, NaN).
static inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    float magnitude = std::ldexp(float(mantissa), -24);  // zero or subnormal
    std::memcpy(&bits, &magnitude, 4);
    bits |= sign;
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

static inline float half_at(const uint8_t* p) { return half_to_float(read_u16(p)); }

// Q4_0, 18 bytes / 32 weights: half d, 16 bytes of nibbles (low: weights 0-15, high: 16-31); w = (q - 8) d
static inline void block_q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(int(qs[j] & 0x0F) - 8) * d;
    y[j + 16] = float(int(qs[j] >> 4) - 8) * d;
  }
}

// Q4_1, 20 bytes / 32: half d, half m, 16 bytes of nibbles; w = q d + m
static inline void block_q4_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(qs[j] & 0x0F) * d + m;
    y[j + 16] = float(qs[j] >> 4) * d + m;
  }
}

// Q5_0, 22 bytes / 32: half d, 32 high bits, 16 bytes of low nibbles; w = (q - 16) d
static inline void block_q5_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int high0 = ((qh >> j) << 4) & 0x10, high1 = (qh >> (j + 12)) & 0x10;
    y[j] = float(int((qs[j] & 0x0F) | high0) - 16) * d;
    y[j + 16] = float(int((qs[j] >> 4) | high1) - 16) * d;
  }
}

// Q5_1, 24 bytes / 32: half d, half m, 32 high bits, 16 bytes of low nibbles; w = q d + m
static inline void block_q5_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int high0 = ((qh >> j) << 4) & 0x10, high1 = (qh >> (j + 12)) & 0x10;
    y[j] = float((qs[j] & 0x0F) | high0) * d + m;
    y[j + 16] = float((qs[j] >> 4) | high1) * d + m;
  }
}

// Q8_0, 34 bytes / 32: half d, 32 signed bytes; w = q d
static inline void block_q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

// Q2_K, 84 bytes / 256: 16 scale bytes (4-bit scale | 4-bit min), 64 bytes of 2-bit codes, half d, dmin
static inline void block_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half_at(b + 80), dmin = half_at(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t sc = scales[is++];
        const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
      }
    }
  }
}

// Q3_K, 110 bytes / 256: 32 bytes high-bit mask, 64 bytes of 2-bit codes, 12 bytes of 6-bit scales, half d
static inline void block_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* q = b + 32;
  const float d = half_at(b + 108);
  uint32_t aux[4];
  std::memcpy(aux, b + 96, 12);
  const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu, tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  int8_t scales[16];
  std::memcpy(scales, aux, 16);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d * float(scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          const int i = l + 16 * half;
          *y++ = dl * float(int((q[i] >> shift) & 3) - ((hmask[i] & m) ? 0 : 4));
        }
      }
    }
  }
}

// The 6-bit (scale, min) pair j of a Q4_K/Q5_K super-block's 12 packed scale bytes.
static inline void k_scale_min(int j, const uint8_t* q, float& scale, float& min) {
  if (j < 4) {
    scale = float(q[j] & 63);
    min = float(q[j + 4] & 63);
  } else {
    scale = float((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    min = float((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K, 144 bytes / 256: half d, half dmin, 12 scale bytes, 128 bytes of nibbles (per 64: low, then high)
static inline void block_q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int is = 0; is < 8; is += 2, q += 32) {
    float sc, mn;
    k_scale_min(is, scales, sc, mn);
    const float d1 = d * sc, m1 = dmin * mn;
    k_scale_min(is + 1, scales, sc, mn);
    const float d2 = d * sc, m2 = dmin * mn;
    for (int l = 0; l < 32; ++l) y[l] = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * float(q[l] >> 4) - m2;
    y += 64;
  }
}

// Q5_K, 176 bytes / 256: half d, half dmin, 12 scale bytes, 32 bytes of high bits, 128 bytes of nibbles
static inline void block_q5_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    float sc, mn;
    k_scale_min(is, scales, sc, mn);
    const float d1 = d * sc, m1 = dmin * mn;
    k_scale_min(is + 1, scales, sc, mn);
    const float d2 = d * sc, m2 = dmin * mn;
    for (int l = 0; l < 32; ++l) y[l] = d1 * float((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    y += 64;
  }
}

// Q6_K, 210 bytes / 256: 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 signed scales, half d
static inline void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
  }
}
