#include "augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

// Hot loops get an AVX2 clone picked at load time (ifunc); no FMA, so results match the plain build
// and TF's float arithmetic (no contraction of a*b+c). Not under ThreadSanitizer: GCC instruments the
// ifunc resolvers, which run while the dynamic linker relocates this library, before its calls into the
// TSan runtime are bound, and the import crashes (make test-tsan).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CVRL_HOT __attribute__((target_clones("avx2", "default")))
#else
#define CVRL_HOT
#endif

namespace cvrl {
namespace augment_detail {

inline float clamp01(float v) { return std::min(std::max(v, 0.f), 1.f); }

struct Interp {
  int lower, upper;
  float lerp;
};

// TF's half-pixel bilinear source coordinates, in single precision like its kernel.
std::vector<Interp> interpolation(int out_size, int in_size) {
  std::vector<Interp> w(out_size);
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  for (int i = 0; i < out_size; ++i) {
    const float in = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float in_f = std::floor(in);
    w[i].lower = std::max(static_cast<int>(in_f), 0);
    w[i].upper = std::min(static_cast<int>(std::ceil(in)), in_size - 1);
    w[i].lerp = in - in_f;
  }
  return w;
}

// The pipeline works on planar frames: plane c of a frame is S*S floats, so every op is a
// unit-stride loop that vectorises. The resize deinterleaves; the output step interleaves back.

CVRL_HOT void u8_to_f32(const uint8_t* src, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = static_cast<float>(src[i]);
}

// Horizontal half of the bilinear kernel for one source row (already converted to float, which is
// exact): top = tl + (tr - tl) * x_lerp, as TF. Writes three planar rows of out_w values at out,
// out + out_w, out + 2 * out_w.
CVRL_HOT void lerp_row(const float* src, const int* lo3, const int* hi3, const float* xl, int out_w, float* out) {
  float* o0 = out;
  float* o1 = out + out_w;
  float* o2 = out + 2 * out_w;
  for (int x = 0; x < out_w; ++x) {
    const float* a = src + lo3[x];
    const float* b = src + hi3[x];
    const float w = xl[x];
    o0[x] = a[0] + (b[0] - a[0]) * w;
    o1[x] = a[1] + (b[1] - a[1]) * w;
    o2[x] = a[2] + (b[2] - a[2]) * w;
  }
}

// Vertical half: v = top + (bottom - top) * y_lerp, optional truncation to integer, then x/255.
CVRL_HOT void lerp_rows(const float* top, const float* bottom, float y_lerp, int n, bool truncate, float* out) {
  const float inv255 = 1.f / 255.f;
  if (truncate) {
    for (int i = 0; i < n; ++i) {
      const float v = top[i] + (bottom[i] - top[i]) * y_lerp;
      out[i] = static_cast<float>(static_cast<int>(v)) * inv255;  // the reference's cast to uint8
    }
  } else {
    for (int i = 0; i < n; ++i) out[i] = (top[i] + (bottom[i] - top[i]) * y_lerp) * inv255;
  }
}

// Device mode in parity: the same horizontal lerp, kept interleaved (3 x out_w values, channel minor).
CVRL_HOT void lerp_row_interleaved(const float* src, const int* lo3, const int* hi3, const float* xl, int out_w,
                                   float* out) {
  for (int x = 0; x < out_w; ++x) {
    const float* a = src + lo3[x];
    const float* b = src + hi3[x];
    const float w = xl[x];
    out[3 * x] = a[0] + (b[0] - a[0]) * w;
    out[3 * x + 1] = a[1] + (b[1] - a[1]) * w;
    out[3 * x + 2] = a[2] + (b[2] - a[2]) * w;
  }
}

// ... and the vertical lerp truncated straight to uint8: the reference's cast of the resized crop. The same
// float operations as lerp_rows, so the bytes equal round(255 * (trunc(v) / 255)) of the planar path.
CVRL_HOT void lerp_rows_trunc_u8(const float* top, const float* bottom, float y_lerp, int n, uint8_t* out) {
  for (int i = 0; i < n; ++i) {
    const float v = top[i] + (bottom[i] - top[i]) * y_lerp;
    out[i] = static_cast<uint8_t>(static_cast<int>(v));  // v in [0, 255]: a convex mix of uint8 values
  }
}

CVRL_HOT void brightness(float* x, int64_t n, float f) {
  for (int64_t i = 0; i < n; ++i) x[i] = clamp01(x[i] * f);
}

CVRL_HOT void contrast_plane(float* x, int64_t n, float f, float m) {
  for (int64_t i = 0; i < n; ++i) x[i] = clamp01((x[i] - m) * f + m);
}

// Sum of a plane: eight float lanes over runs of 512 values, runs accumulated in double. A fixed
// order (independent of the CPU's vector width), so the result is reproducible.
CVRL_HOT double plane_sum(const float* x, int64_t n) {
  double total = 0;
  int64_t i = 0;
  for (; i + 512 <= n; i += 512) {
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < 512; k += 8)
      for (int l = 0; l < 8; ++l) lanes[l] += x[i + k + l];
    for (int l = 0; l < 8; ++l) total += lanes[l];
  }
  for (; i < n; ++i) total += x[i];
  return total;
}

// Hexcone saturation scaling without the HSV round trip: with v = max, range = max - min and
// s = range / v, TF's S <- min(S * f, 1) moves every channel toward v by the same ratio:
// c' = v - (v - c) * min(f, v / range). Same maths as rgb->hsv->rgb, fewer roundings.
CVRL_HOT void saturation(float* r, float* g, float* b, int64_t n, float f) {
  for (int64_t i = 0; i < n; ++i) {
    const float rr = r[i], gg = g[i], bb = b[i];
    const float v = std::max(rr, std::max(gg, bb));
    const float range = v - std::min(rr, std::min(gg, bb));
    // range == 0 means r == g == b == v: any finite ratio leaves the pixel unchanged, so no branch.
    const float ratio = std::min(f, v / std::max(range, 1e-30f));
    r[i] = clamp01(v - (v - rr) * ratio);
    g[i] = clamp01(v - (v - gg) * ratio);
    b[i] = clamp01(v - (v - bb) * ratio);
  }
}

// Hue rotation through hexcone HSV (TF's adjust_hue model), branch-free so it vectorises.
// Plain selects instead of std::min/max: functions with their own optimize attribute do not inline
// callees compiled with other options.
#define CLAMP01(x) ((x) < 0.f ? 0.f : ((x) > 1.f ? 1.f : (x)))
// no-trapping-math only lets the vectoriser if-convert; FP exceptions are never observed and no
// value changes (unlike -ffast-math).
CVRL_HOT __attribute__((optimize("no-trapping-math"))) void hue(float* r, float* g, float* b, int64_t n, float delta) {
  for (int64_t i = 0; i < n; ++i) {
    const float rr = r[i], gg = g[i], bb = b[i];
    const float max_rg = rr > gg ? rr : gg, min_rg = rr < gg ? rr : gg;  // one vmaxps/vminps each
    const float v = max_rg > bb ? max_rg : bb;
    const float range = v - (min_rg < bb ? min_rg : bb);
    // Divisions are unconditional (guarded denominators) so the loop has no control flow; the
    // results for grey pixels (range == 0) are discarded by the selects below.
    const float s = range / (v > 1e-30f ? v : 1e-30f);
    const float norm = 1.f / (6.f * (range > 1e-30f ? range : 1e-30f));
    const float h_r = norm * (gg - bb);
    const float h_g = norm * (bb - rr) + 2.f / 6.f;
    const float h_b = norm * (rr - gg) + 4.f / 6.f;
    const bool r_max = rr == v, g_max = gg == v;
    float h = g_max ? h_g : h_b;
    h = r_max ? h_r : h;
    h = range > 0.f ? h : 0.f;
    h = h < 0.f ? h + 1.f : h;
    h += delta;  // in (-1, 2): wrap to [0, 1) with a truncating conversion (vectorises, unlike floor)
    const float h_int = static_cast<float>(static_cast<int>(h));
    h -= h < h_int ? h_int - 1.f : h_int;
    h = h >= 1.f ? 0.f : h;
    const float c = s * v;
    const float m = v - c;
    const float dh = h * 6.f;  // < 6: h <= 1 - 2^-24, and 6 - 6 * 2^-24 rounds down to 6 - 2^-21
    const float sector = static_cast<float>(static_cast<int>(dh));                  // floor, dh >= 0: 0..5
    const float fm = dh - 2.f * static_cast<float>(static_cast<int>(dh * 0.5f));    // fmod(dh, 2)
    const float xx = c * (1.f - __builtin_fabsf(fm - 1.f));
    // Sector -> (r, g, b) = (c,x,0) (x,c,0) (0,c,x) (0,x,c) (x,0,c) (c,0,x): a channel gets c, x or 0
    // as the sector's distance round the ring of six from the channel's centre (r 5.5, g 1.5, b 3.5)
    // is 0.5, 1.5 or 2.5. Same selections as a table lookup, in a third of the vector instructions.
    float d_r = __builtin_fabsf(sector - 5.5f), d_g = __builtin_fabsf(sector - 1.5f), d_b = __builtin_fabsf(sector - 3.5f);
    d_r = d_r > 3.f ? 6.f - d_r : d_r;
    d_g = d_g > 3.f ? 6.f - d_g : d_g;
    d_b = d_b > 3.f ? 6.f - d_b : d_b;
    const bool c_r = d_r < 1.f, c_g = d_g < 1.f, c_b = d_b < 1.f, x_r = d_r < 2.f, x_g = d_g < 2.f, x_b = d_b < 2.f;
    const float out_r = c_r ? c : (x_r ? xx : 0.f);
    const float out_g = c_g ? c : (x_g ? xx : 0.f);
    const float out_b = c_b ? c : (x_b ? xx : 0.f);
    r[i] = CLAMP01(out_r + m);
    g[i] = CLAMP01(out_g + m);
    b[i] = CLAMP01(out_b + m);
  }
}

#undef CLAMP01

CVRL_HOT void grayscale(float* r, float* g, float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float y = 0.2989f * r[i] + 0.5870f * g[i] + 0.1140f * b[i];
    r[i] = g[i] = b[i] = y;
  }
}

CVRL_HOT void solarize(float* x, int64_t n) {
  // x < 0.5 ? x : 1 - x, written as min(x, 1 - x) (identical on [0, 1]) so it vectorises.
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(x[i], 1.f - x[i]);
}

// round(255 * clamp(x)) of a planar run into int32 (vectorised), for interleaving.
CVRL_HOT void quantize(const float* x, int64_t n, int32_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(x[i] * 255.f + 0.5f, 0.5f), 255.5f);
    out[i] = static_cast<int32_t>(v);
  }
}

void interleave_u8(const int32_t* q0, const int32_t* q1, const int32_t* q2, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    out[3 * i] = static_cast<uint8_t>(q0[i]);
    out[3 * i + 1] = static_cast<uint8_t>(q1[i]);
    out[3 * i + 2] = static_cast<uint8_t>(q2[i]);
  }
}

void interleave_f32(const float* p0, const float* p1, const float* p2, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    out[3 * i] = clamp01(p0[i]);
    out[3 * i + 1] = clamp01(p1[i]);
    out[3 * i + 2] = clamp01(p2[i]);
  }
}

CVRL_HOT void axpy(float w, const float* src, int n, float* acc) {
  for (int i = 0; i < n; ++i) acc[i] += w * src[i];
}

struct BlurKernel {
  std::vector<float> w;  // taps -radius..radius
  int radius = 0;
  int first = 0, last = 0;  // taps outside [first, last] are exactly zero (exp underflow): skipped
};

BlurKernel blur_kernel(float sigma, int radius) {
  if (!(sigma > 0.f)) throw std::invalid_argument("gaussian blur: sigma must be > 0, got " + std::to_string(sigma));
  BlurKernel k;
  k.radius = radius;
  k.w.resize(2 * radius + 1);
  float total = 0.f;
  for (int j = -radius; j <= radius; ++j) {
    k.w[j + radius] = std::exp(-static_cast<float>(j * j) / (2.f * sigma * sigma));
    total += k.w[j + radius];
  }
  for (float& v : k.w) v /= total;
  k.first = 0;
  k.last = 2 * radius;
  while (k.first < k.last && k.w[k.first] == 0.f) ++k.first;
  while (k.last > k.first && k.w[k.last] == 0.f) --k.last;
  return k;
}

typedef float v8sf __attribute__((vector_size(32)));

// v8sf never crosses a non-inlined call boundary (load8 is always inlined), so GCC's note that
// returning a 32-byte vector without AVX "changes the ABI" does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
__attribute__((always_inline)) inline v8sf load8(const float* p) {
  v8sf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Accumulates taps first..last for BLOCK consecutive outputs in BLOCK/8 independent registers (enough
// independent adds to hide the add latency).
template <int BLOCK>
inline void conv_block(const float* in, int64_t stride, const float* w, int first, int last, float* out) {
  constexpr int kVecs = BLOCK / 8;
  v8sf acc[kVecs];
  for (int v = 0; v < kVecs; ++v) acc[v] = v8sf{0, 0, 0, 0, 0, 0, 0, 0};
  for (int j = first; j <= last; ++j) {
    const float* src = in + j * stride;
    const float wj = w[j];
    for (int v = 0; v < kVecs; ++v) acc[v] += wj * load8(src + 8 * v);
  }
  std::memcpy(out, acc, sizeof(acc));
}

// out[i] = sum_j w[j] * in[i + j * stride] for i in [0, n), taps j = first..last accumulated in
// order (so results do not depend on the vector width or the blocking).
CVRL_HOT void conv_taps(const float* in, int64_t stride, const float* w, int first, int last, int n, float* out) {
  int i = 0;
  for (; i + 64 <= n; i += 64) conv_block<64>(in + i, stride, w, first, last, out + i);
  for (; i + 32 <= n; i += 32) conv_block<32>(in + i, stride, w, first, last, out + i);
  for (; i + 8 <= n; i += 8) conv_block<8>(in + i, stride, w, first, last, out + i);
  for (; i < n; ++i) {
    float acc = 0.f;
    for (int j = first; j <= last; ++j) acc += w[j] * in[j * stride + i];
    out[i] = acc;
  }
}

// Separable blur of one plane with zero padding (the reference's SAME depthwise convs): borders
// darken. tmp: height*width floats; padded: width + 2*radius floats.
void blur_plane(float* plane, int height, int width, const BlurKernel& k, float* tmp, float* padded) {
  const int r = k.radius;
  std::fill(padded, padded + r, 0.f);
  std::fill(padded + r + width, padded + width + 2 * r, 0.f);
  for (int y = 0; y < height; ++y) {
    std::copy(plane + y * width, plane + (y + 1) * width, padded + r);
    conv_taps(padded, 1, k.w.data(), k.first, k.last, width, tmp + y * width);
  }
  for (int y = 0; y < height; ++y) {
    // Rows outside the frame are zero: drop their taps.
    const int j_lo = std::max(k.first, r - y), j_hi = std::min(k.last, height - 1 - y + r);
    conv_taps(tmp + static_cast<int64_t>(y + j_lo - r) * width, width, k.w.data() + j_lo, 0, j_hi - j_lo, width,
              plane + y * width);
  }
}

// TensorFlow runs its kernels with denormals flushed to zero (FTZ and DAZ set by its thread pools,
// tsl::port::ScopedFlushDenormal), so the reference's ops never see a denormal; one clip's ops run the
// same way here, and the caller's floating-point mode is restored after. Denormals do arise: the blur's
// far taps for sigma below about 0.8 underflow into them (exp(-98) = 2.7e-43 at sigma 0.5), and on Intel
// cores every vector op that reads or writes one takes a microcode assist. The flush changes only values
// under 1.2e-38, far below what rounds to a different uint8.
class ScopedFlushDenormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  ScopedFlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~ScopedFlushDenormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;  // MXCSR bits 15 and 6
  unsigned saved_;
#else
  ScopedFlushDenormals() {}  // other CPUs: denormals stay (no measured cost there)
#endif
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;
};

std::vector<float>& scratch(int which, size_t n) {
  thread_local std::vector<float> buffers[3];
  auto& b = buffers[which];
  if (b.size() < n) b.resize(n);
  return b;
}

}  // namespace augment_detail

void augment_clip(const ClipWindow& clip, const ViewParams& params, const AugmentSettings& s, uint8_t* out_u8,
                  float* out_f32) {
  using namespace augment_detail;
  const ScopedFlushDenormals flush;
  if ((out_u8 == nullptr) == (out_f32 == nullptr))
    throw std::invalid_argument("augment_clip: exactly one output buffer must be given");
  const bool device = s.augment_on == AugmentOn::kDevice;
  if (device && out_u8 == nullptr)
    throw std::invalid_argument("augment_clip: augment_on=device gives uint8 views only (float32 needs augment_on=host)");
  // Device mode: geometry only. The uint8 output of x = v/255 with no colour op is round(255 x) = v
  // exactly (v an integer in parity mode), so device_augment's x/255 starts from the host's x.
  ViewParams geometry = params;
  if (device) geometry.jitter = geometry.grayscale = geometry.blur = geometry.solarize = false;
  const ViewParams& p = geometry;
  if (clip.height < 1 || clip.width < 1 || clip.num_frames() < 1) {
    throw std::invalid_argument("augment_clip: empty clip window " + std::to_string(clip.width) + "x" +
                                std::to_string(clip.height) + " x " + std::to_string(clip.num_frames()) + " frames");
  }
  for (int op : p.jitter_order) {
    if (op < 0 || op > 3)
      throw std::invalid_argument("augment_clip: jitter_order holds " + std::to_string(op) + "; valid ops are 0..3");
  }
  const int S = s.crop_size;
  const int T = clip.num_frames();
  const int64_t plane = static_cast<int64_t>(S) * S;  // values per channel plane
  const int64_t frame_values = plane * 3;

  // Resize tables; flip is folded in by reading the columns in reverse order.
  const std::vector<Interp> xs = interpolation(S, clip.width);
  const std::vector<Interp> ys = interpolation(S, clip.height);
  std::vector<int> lo3(S), hi3(S);
  std::vector<float> xl(S);
  for (int x = 0; x < S; ++x) {
    const Interp& it = xs[p.flip ? S - 1 - x : x];
    lo3[x] = it.lower * 3;
    hi3[x] = it.upper * 3;
    xl[x] = it.lerp;
  }
  const int radius = s.blur_radius();
  std::vector<float>& work = scratch(2, static_cast<size_t>(2 * S * 3 + plane + S + 2 * radius + frame_values +
                                                           static_cast<int64_t>(clip.width) * 3));
  float* row_buf[2] = {work.data(), work.data() + S * 3};  // planar horizontal rows (3 x S)
  float* blur_tmp = work.data() + 2 * S * 3;
  float* blur_pad = blur_tmp + plane;
  auto* quant = reinterpret_cast<int32_t*>(blur_pad + S + 2 * radius);  // frame_values int32 (same size)
  float* src_row = blur_pad + S + 2 * radius + frame_values;            // one source row as float
  auto lerp_source_row = [&](const uint8_t* row, float* out) {
    u8_to_f32(row, clip.width * 3, src_row);
    lerp_row(src_row, lo3.data(), hi3.data(), xl.data(), S, out);
  };

  auto resize_frame = [&](int t, float* out) {  // out: planar frame (3 planes of S*S)
    const uint8_t* src = clip.frames[t];
    int cached[2] = {-1, -1};  // source rows held by row_buf[0], row_buf[1]
    auto find = [&](int r) { return cached[0] == r ? 0 : (cached[1] == r ? 1 : -1); };
    for (int y = 0; y < S; ++y) {
      const int lo = ys[y].lower, hi = ys[y].upper;
      int s_lo = find(lo), s_hi = find(hi);
      if (s_lo < 0) {
        s_lo = s_hi == 0 ? 1 : 0;
        lerp_source_row(src + static_cast<int64_t>(lo) * clip.row_stride_bytes, row_buf[s_lo]);
        cached[s_lo] = lo;
      }
      if (s_hi < 0) {
        s_hi = lo == hi ? s_lo : 1 - s_lo;
        if (lo != hi) {
          lerp_source_row(src + static_cast<int64_t>(hi) * clip.row_stride_bytes, row_buf[s_hi]);
          cached[s_hi] = hi;
        }
      }
      for (int c = 0; c < 3; ++c) {
        lerp_rows(row_buf[s_lo] + c * S, row_buf[s_hi] + c * S, ys[y].lerp, S, s.truncate_after_resize,
                  out + c * plane + static_cast<int64_t>(y) * S);
      }
    }
  };

  if (device && s.truncate_after_resize) {
    // Geometry only, in parity: resize and truncate straight into the interleaved uint8 output (no planar
    // float frame, no x/255 and back). Bytes equal the planar path's (tested against host mode).
    for (int t = 0; t < T; ++t) {
      const uint8_t* src = clip.frames[t];
      uint8_t* out = out_u8 + t * frame_values;
      int cached[2] = {-1, -1};  // source rows held by row_buf[0], row_buf[1] (interleaved, 3 x S)
      auto find = [&](int r) { return cached[0] == r ? 0 : (cached[1] == r ? 1 : -1); };
      auto load = [&](int r, int into) {
        u8_to_f32(src + static_cast<int64_t>(r) * clip.row_stride_bytes, clip.width * 3, src_row);
        lerp_row_interleaved(src_row, lo3.data(), hi3.data(), xl.data(), S, row_buf[into]);
        cached[into] = r;
      };
      for (int y = 0; y < S; ++y) {
        const int lo = ys[y].lower, hi = ys[y].upper;
        int s_lo = find(lo), s_hi = find(hi);
        if (s_lo < 0) {
          s_lo = s_hi == 0 ? 1 : 0;
          load(lo, s_lo);
        }
        if (s_hi < 0) {
          s_hi = lo == hi ? s_lo : 1 - s_lo;
          if (lo != hi) load(hi, s_hi);
        }
        const int slot[2] = {s_lo, s_hi};
        lerp_rows_trunc_u8(row_buf[slot[0]], row_buf[slot[1]], ys[y].lerp, 3 * S, out + static_cast<int64_t>(y) * 3 * S);
      }
    }
    return;
  }

  // Op sequence after the resize; contrast needs the clip-wide mean of its input.
  int ops[4];
  int n_ops = 0, contrast_at = -1;
  if (p.jitter) {
    for (int op : p.jitter_order) {
      if (op == kContrast) contrast_at = n_ops;
      ops[n_ops++] = op;
    }
  }
  const BlurKernel kernel = p.blur ? blur_kernel(p.blur_sigma, radius) : BlurKernel{};
  float mean[3] = {0, 0, 0};
  auto run_ops = [&](float* f, int from, int to) {
    float *r = f, *g = f + plane, *b = f + 2 * plane;
    for (int i = from; i < to; ++i) {
      switch (ops[i]) {
        case kBrightness: brightness(f, frame_values, p.brightness); break;
        case kContrast:
          for (int c = 0; c < 3; ++c) contrast_plane(f + c * plane, plane, p.contrast, mean[c]);
          break;
        case kSaturation: saturation(r, g, b, plane, p.saturation); break;
        case kHue: hue(r, g, b, plane, p.hue); break;
      }
    }
  };
  auto finish_frame = [&](float* f, int t) {
    float *r = f, *g = f + plane, *b = f + 2 * plane;
    if (p.grayscale) grayscale(r, g, b, plane);
    if (p.blur && p.grayscale) {
      // r = g = b after grayscale: blur one plane and copy it (the same bits, a third of the work).
      blur_plane(r, S, S, kernel, blur_tmp, blur_pad);
      std::copy(r, r + plane, g);
      std::copy(r, r + plane, b);
    } else if (p.blur) {
      for (int c = 0; c < 3; ++c) blur_plane(f + c * plane, S, S, kernel, blur_tmp, blur_pad);
    }
    if (p.solarize) solarize(f, frame_values);
    if (out_u8 != nullptr) {
      quantize(f, frame_values, quant);
      interleave_u8(quant, quant + plane, quant + 2 * plane, plane, out_u8 + t * frame_values);
    } else {
      interleave_f32(r, g, b, plane, out_f32 + t * frame_values);
    }
  };

  if (contrast_at < 0) {
    // One pass: each frame goes through every op while it is in cache.
    float* f = scratch(0, static_cast<size_t>(frame_values)).data();
    for (int t = 0; t < T; ++t) {
      resize_frame(t, f);
      run_ops(f, 0, n_ops);
      finish_frame(f, t);
    }
    return;
  }
  // Two passes: ops before contrast and the channel sums, then contrast and the rest.
  float* clip_buf = scratch(0, static_cast<size_t>(frame_values * T)).data();
  double sums[3] = {0, 0, 0};
  for (int t = 0; t < T; ++t) {
    float* frame = clip_buf + t * frame_values;
    resize_frame(t, frame);
    run_ops(frame, 0, contrast_at);
    for (int c = 0; c < 3; ++c) sums[c] += plane_sum(frame + c * plane, plane);
  }
  for (int c = 0; c < 3; ++c) mean[c] = static_cast<float>(sums[c] / static_cast<double>(plane * T));
  for (int t = 0; t < T; ++t) {
    float* frame = clip_buf + t * frame_values;
    run_ops(frame, contrast_at, n_ops);
    finish_frame(frame, t);
  }
}

}  // namespace cvrl
