// Decode attention: a few new query tokens per cache row against the fp32 KV cache, in 16-lane vectors
// (included by impl.h inside each instruction set's namespace; GCC vector extensions, so every ISA gets
// the same code: zmm registers under AVX-512, pairs of ymm under AVX2, xmm in the portable build).

typedef int32_t ivec16 __attribute__((vector_size(64)));

static inline vec16 splat16(float v) { return vec16{} + v; }

// Lane i of a fold's first half: lanes are taken W at a time, alternately from a and b.
constexpr int fold_lane(int W, int i) { return i / W * 2 * W + i % W; }

// Two vectors of partial sums folded into one: a and b hold some keys' partial sums, 2W lanes per key; the
// result holds all their keys' sums in W lanes per key, each the sum of two lanes W apart (so a key's sum
// is added up in the same order wherever it sits).
template <int W>
static inline vec16 fold(vec16 a, vec16 b) {
#define GK_LANES(o)                                                                                           \
  fold_lane(W, 0) + o, fold_lane(W, 1) + o, fold_lane(W, 2) + o, fold_lane(W, 3) + o, fold_lane(W, 4) + o,   \
      fold_lane(W, 5) + o, fold_lane(W, 6) + o, fold_lane(W, 7) + o, fold_lane(W, 8) + o, fold_lane(W, 9) + o, \
      fold_lane(W, 10) + o, fold_lane(W, 11) + o, fold_lane(W, 12) + o, fold_lane(W, 13) + o,                 \
      fold_lane(W, 14) + o, fold_lane(W, 15) + o
  return __builtin_shufflevector(a, b, GK_LANES(0)) + __builtin_shufflevector(a, b, GK_LANES(W));
#undef GK_LANES
}

// (q . k_j) for the 16 keys k_j = keys + j D (D a multiple of 16): each key's 16 partial sums stay in a
// vector, and four rounds of folds turn the 16 vectors into one, lane j holding key j's dot product. This
// replaces 16 horizontal sums (a chain of 15 dependent adds each) with 15 folds.
static inline vec16 dots16(const float* query, const float* keys, int64_t D) {
  vec16 part[16];
  for (int j = 0; j < 16; ++j) {
    part[j] = load16(query) * load16(keys + j * D);
    for (int64_t c = 16; c < D; c += 16) part[j] += load16(query + c) * load16(keys + j * D + c);
  }
  vec16 two[8], four[4], eight[2];
  for (int j = 0; j < 8; ++j) two[j] = fold<8>(part[2 * j], part[2 * j + 1]);
  for (int j = 0; j < 4; ++j) four[j] = fold<4>(two[2 * j], two[2 * j + 1]);
  for (int j = 0; j < 2; ++j) eight[j] = fold<2>(four[2 * j], four[2 * j + 1]);
  return fold<1>(eight[0], eight[1]);
}

// e^x for x <= 0 (scores minus their maximum) to about 2 ulp (Cephes' expf polynomial on x - n ln 2,
// times 2^n built in the exponent bits); 0 below -87 (e^-87 is near the smallest normal float) and for -inf.
static inline vec16 select16(ivec16 mask, vec16 a, vec16 b) {  // mask ? a : b, lane by lane (bitwise)
  ivec16 ia, ib;
  std::memcpy(&ia, &a, sizeof ia);
  std::memcpy(&ib, &b, sizeof ib);
  const ivec16 bits = (ia & mask) | (ib & ~mask);
  vec16 out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

static inline vec16 exp16(vec16 x) {
  const ivec16 live = x > -87.f;
  x = select16(live, x, splat16(-87.f));
  const vec16 shifter = splat16(12582912.f);  // 1.5 * 2^23: adding it rounds to the nearest integer
  const vec16 n = (x * 1.44269504088896341f + shifter) - shifter;
  const vec16 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts
  vec16 p = splat16(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vec16 y = p * r * r + r + 1.f;
  const ivec16 bits = (__builtin_convertvector(n, ivec16) + 127) << 23;
  vec16 power;
  std::memcpy(&power, &bits, sizeof power);
  return select16(live, y * power, vec16{});
}

// s[t] = scale (q . k_t) where visible, -inf elsewhere, for t < S; returns the largest. Every key's score
// is the same bits whatever S and wherever its block starts (the folds sum each key's lanes in one order;
// the last, partial block is read from a zero-padded copy), so one token scored alone or among drafted ones
// gets identical results.
static float attention_scores(const float* query, const float* keys, const uint8_t* mask, int64_t S, int64_t D,
                              float scale, float* s) {
  int64_t t = 0;
  if (D % 16 == 0 && D <= 256) {
    for (; t + 16 <= S; t += 16) store16(s + t, dots16(query, keys + t * D, D) * scale);
    if (t < S) {
      float padded[16 * 256];
      std::memcpy(padded, keys + t * D, (S - t) * D * sizeof(float));
      std::memset(padded + (S - t) * D, 0, (16 - (S - t)) * D * sizeof(float));
      const vec16 last = dots16(query, padded, D) * scale;
      for (int64_t j = 0; t + j < S; ++j) s[t + j] = last[j];
      t = S;
    }
  }
  for (; t < S; ++t) s[t] = dot(query, keys + t * D, D) * scale;
  float top = -INFINITY;
  for (t = 0; t < S; ++t) {
    s[t] = mask[t] ? s[t] : -INFINITY;
    top = s[t] > top ? s[t] : top;
  }
  return top;
}

// s[t] = e^(s[t] - top) in place; returns their sum (lane sums over blocks of 16, the last one padded with
// zeros, then the lanes: the same bits for a token whatever S holds beyond its visible columns).
static float exponentials(float* s, int64_t S, float top) {
  vec16 sums = {};
  for (int64_t t = 0; t < S; t += 16) {
    const int64_t n = std::min<int64_t>(16, S - t);
    vec16 block = splat16(-INFINITY);
    if (n == 16) block = load16(s + t);
    else for (int64_t j = 0; j < n; ++j) block[j] = s[t + j];
    const vec16 e = exp16(block - top);
    if (n == 16) store16(s + t, e);
    else for (int64_t j = 0; j < n; ++j) s[t + j] = e[j];
    sums += e;
  }
  return sum16(sums);
}

// y (D) = sum_t w[t] v_t / total, 64 channels (four independent sums) at a time, then 16, then one.
static void weighted_values(const float* w, const float* values, int64_t S, int64_t D, float total, float* y) {
  int64_t c = 0;
  for (; c + 64 <= D; c += 64) {
    vec16 acc[4] = {};
    for (int64_t t = 0; t < S; ++t) {
      if (w[t] == 0.f) continue;
      for (int i = 0; i < 4; ++i) acc[i] += w[t] * load16(values + t * D + c + 16 * i);
    }
    for (int i = 0; i < 4; ++i) store16(y + c + 16 * i, acc[i] / total);
  }
  for (; c + 16 <= D; c += 16) {
    vec16 acc = {};
    for (int64_t t = 0; t < S; ++t) acc += w[t] * load16(values + t * D + c);
    store16(y + c, acc / total);
  }
  for (; c < D; ++c) {
    float acc = 0.f;
    for (int64_t t = 0; t < S; ++t) acc += w[t] * values[t * D + c];
    y[c] = acc / total;
  }
}

// Decode attention for (query token, query head) pairs [p0, p1) over the cache's first S columns: q (M, H, D)
// with M = B * T (T new tokens per cache row, token m in cache row m / T), k/v (B, Hkv, S_max, D) floats,
// visible (M, S) bytes (the causal mask among a row's new tokens is in it), out (M, H, D); query head hq
// reads kv head hq / (H / Hkv). Exact softmax: max, exponentials, sum. Threads over query heads (not kv
// heads) keep 2 cores evenly busy with SmolLM2's 3 kv heads. A token that sees no column gets zeros.
static void decode_attention_pairs(const float* q, const float* k, const float* v, const uint8_t* visible,
                                   float* out, int64_t H, int64_t Hkv, int64_t S, int64_t S_max, int64_t D,
                                   float scale, int64_t T, int64_t p0, int64_t p1, float* s) {
  const int64_t group = H / Hkv;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t token = p / H, b = token / T, head = p % H, h = head / group;
    const float* keys = k + (b * Hkv + h) * S_max * D;
    const float* values = v + (b * Hkv + h) * S_max * D;
    float* y = out + (token * H + head) * D;
    const float top = attention_scores(q + (token * H + head) * D, keys, visible + token * S, S, D, scale, s);
    if (top == -INFINITY) {
      std::memset(y, 0, D * sizeof(float));
      continue;
    }
    weighted_values(s, values, S, D, exponentials(s, S, top), y);
  }
}
