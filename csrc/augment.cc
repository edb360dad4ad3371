#include "augment.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

// Hot loops get an AVX2 clone picked at load time (ifunc); no FMA, so results match the plain build
// and TF's float arithmetic (no contraction of a*b+c).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
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

// Horizontal half of the bilinear kernel for one source row: top = tl + (tr - tl) * x_lerp, as TF.
CVRL_HOT void lerp_row(const uint8_t* src, const int* lo3, const int* hi3, const float* xl, int out_w, float* out) {
  for (int x = 0; x < out_w; ++x) {
    const uint8_t* a = src + lo3[x];
    const uint8_t* b = src + hi3[x];
    const float w = xl[x];
    for (int c = 0; c < 3; ++c) {
      const float l = a[c], r = b[c];
      out[3 * x + c] = l + (r - l) * w;
    }
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

CVRL_HOT void brightness(float* x, int64_t n, float f) {
  for (int64_t i = 0; i < n; ++i) x[i] = clamp01(x[i] * f);
}

CVRL_HOT void contrast(float* x, int64_t n_pixels, float f, const float* mean) {
  const float m0 = mean[0], m1 = mean[1], m2 = mean[2];
  for (int64_t i = 0; i < n_pixels; ++i) {
    x[3 * i] = clamp01((x[3 * i] - m0) * f + m0);
    x[3 * i + 1] = clamp01((x[3 * i + 1] - m1) * f + m1);
    x[3 * i + 2] = clamp01((x[3 * i + 2] - m2) * f + m2);
  }
}

void channel_sums(const float* x, int64_t n_pixels, double* sums) {
  // Per-row float partial sums keep the double accumulation cheap and accurate.
  double s0 = 0, s1 = 0, s2 = 0;
  for (int64_t i = 0; i < n_pixels;) {
    const int64_t end = std::min(n_pixels, i + 256);
    float a0 = 0, a1 = 0, a2 = 0;
    for (; i < end; ++i) {
      a0 += x[3 * i];
      a1 += x[3 * i + 1];
      a2 += x[3 * i + 2];
    }
    s0 += a0;
    s1 += a1;
    s2 += a2;
  }
  sums[0] += s0;
  sums[1] += s1;
  sums[2] += s2;
}

// Hexcone saturation scaling without the HSV round trip: with v = max, range = max - min and
// s = range / v, TF's S <- min(S * f, 1) moves every channel toward v by the same ratio:
// c' = v - (v - c) * min(f, v / range). Same maths as rgb->hsv->rgb, fewer roundings.
CVRL_HOT void saturation(float* x, int64_t n_pixels, float f) {
  for (int64_t i = 0; i < n_pixels; ++i) {
    float* p = x + 3 * i;
    const float r = p[0], g = p[1], b = p[2];
    const float v = std::max(r, std::max(g, b));
    const float range = v - std::min(r, std::min(g, b));
    const float ratio = range > 0.f ? std::min(f, v / range) : 1.f;
    p[0] = clamp01(v - (v - r) * ratio);
    p[1] = clamp01(v - (v - g) * ratio);
    p[2] = clamp01(v - (v - b) * ratio);
  }
}

// Hue rotation through hexcone HSV (TF's adjust_hue model), written with selects instead of
// branches so it vectorises.
CVRL_HOT void hue(float* x, int64_t n_pixels, float delta) {
  for (int64_t i = 0; i < n_pixels; ++i) {
    float* p = x + 3 * i;
    const float r = p[0], g = p[1], b = p[2];
    const float v = std::max(r, std::max(g, b));
    const float range = v - std::min(r, std::min(g, b));
    const float s = v > 0.f ? range / v : 0.f;
    const float norm = 1.f / (6.f * (range > 0.f ? range : 1.f));
    float h = r == v ? norm * (g - b) : (g == v ? norm * (b - r) + 2.f / 6.f : norm * (r - g) + 4.f / 6.f);
    h = range > 0.f ? h : 0.f;
    h = h < 0.f ? h + 1.f : h;
    h += delta;
    h -= std::floor(h);  // wrap to [0, 1)
    h = h >= 1.f ? 0.f : h;
    const float c = s * v;
    const float m = v - c;
    const float dh = h * 6.f;
    const float sector_f = std::floor(dh);
    const int sector = static_cast<int>(sector_f) % 6;
    const float fm = dh - 2.f * std::floor(dh * 0.5f);  // fmod(dh, 2) for dh >= 0
    const float xx = c * (1.f - std::fabs(fm - 1.f));
    const float rr = (sector == 0 || sector == 5) ? c : ((sector == 1 || sector == 4) ? xx : 0.f);
    const float gg = (sector == 1 || sector == 2) ? c : ((sector == 0 || sector == 3) ? xx : 0.f);
    const float bb = (sector == 3 || sector == 4) ? c : ((sector == 2 || sector == 5) ? xx : 0.f);
    p[0] = clamp01(rr + m);
    p[1] = clamp01(gg + m);
    p[2] = clamp01(bb + m);
  }
}

CVRL_HOT void grayscale(float* x, int64_t n_pixels) {
  for (int64_t i = 0; i < n_pixels; ++i) {
    float* p = x + 3 * i;
    const float y = 0.2989f * p[0] + 0.5870f * p[1] + 0.1140f * p[2];
    p[0] = p[1] = p[2] = y;
  }
}

CVRL_HOT void solarize(float* x, int64_t n) {
  // x < 0.5 ? x : 1 - x, written as min(x, 1 - x) (identical on [0, 1]) so it vectorises.
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(x[i], 1.f - x[i]);
}

CVRL_HOT void to_u8(const float* x, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(static_cast<int>(clamp01(x[i]) * 255.f + 0.5f));
}

CVRL_HOT void clamp_to(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = clamp01(x[i]);
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

// Separable blur of one frame with zero padding (the reference's SAME depthwise convs): borders
// darken. tmp: height*width*3 floats; padded: (width + 2*radius)*3 floats.
void blur_frame(float* frame, int height, int width, const BlurKernel& k, float* tmp, float* padded) {
  const int row_len = width * 3, r = k.radius;
  std::fill(padded, padded + r * 3, 0.f);
  std::fill(padded + (r + width) * 3, padded + (width + 2 * r) * 3, 0.f);
  for (int y = 0; y < height; ++y) {
    std::copy(frame + y * row_len, frame + (y + 1) * row_len, padded + r * 3);
    float* o = tmp + y * row_len;
    std::fill(o, o + row_len, 0.f);
    for (int j = k.first; j <= k.last; ++j) axpy(k.w[j], padded + j * 3, row_len, o);
  }
  for (int y = 0; y < height; ++y) {
    float* o = frame + y * row_len;
    std::fill(o, o + row_len, 0.f);
    const int j_lo = std::max(k.first, r - y), j_hi = std::min(k.last, height - 1 - y + r);
    for (int j = j_lo; j <= j_hi; ++j) axpy(k.w[j], tmp + (y + j - r) * row_len, row_len, o);
  }
}

std::vector<float>& scratch(int which, size_t n) {
  thread_local std::vector<float> buffers[3];
  auto& b = buffers[which];
  if (b.size() < n) b.resize(n);
  return b;
}

}  // namespace augment_detail

void augment_clip(const ClipWindow& clip, const ViewParams& p, const AugmentSettings& s, uint8_t* out_u8,
                  float* out_f32) {
  using namespace augment_detail;
  if ((out_u8 == nullptr) == (out_f32 == nullptr))
    throw std::invalid_argument("augment_clip: exactly one output buffer must be given");
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
  const int64_t frame_pixels = static_cast<int64_t>(S) * S;
  const int64_t frame_values = frame_pixels * 3;

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
  std::vector<float>& rows = scratch(2, static_cast<size_t>(2 * S * 3 + frame_values + (S + 2 * s.blur_radius()) * 3));
  float* row_buf[2] = {rows.data(), rows.data() + S * 3};
  float* blur_tmp = rows.data() + 2 * S * 3;
  float* blur_pad = blur_tmp + frame_values;

  auto resize_frame = [&](int t, float* out) {
    const uint8_t* src = clip.frames[t];
    int cached[2] = {-1, -1};  // source rows held by row_buf[0], row_buf[1]
    auto find = [&](int r) { return cached[0] == r ? 0 : (cached[1] == r ? 1 : -1); };
    for (int y = 0; y < S; ++y) {
      const int lo = ys[y].lower, hi = ys[y].upper;
      int s_lo = find(lo), s_hi = find(hi);
      if (s_lo < 0) {
        s_lo = s_hi == 0 ? 1 : 0;
        lerp_row(src + static_cast<int64_t>(lo) * clip.row_stride_bytes, lo3.data(), hi3.data(), xl.data(), S,
                 row_buf[s_lo]);
        cached[s_lo] = lo;
      }
      if (s_hi < 0) {
        s_hi = lo == hi ? s_lo : 1 - s_lo;
        if (lo != hi) {
          lerp_row(src + static_cast<int64_t>(hi) * clip.row_stride_bytes, lo3.data(), hi3.data(), xl.data(), S,
                   row_buf[s_hi]);
          cached[s_hi] = hi;
        }
      }
      const float* rp[2] = {row_buf[s_lo], row_buf[s_hi]};
      lerp_rows(rp[0], rp[1], ys[y].lerp, S * 3, s.truncate_after_resize, out + y * S * 3);
    }
  };

  // Op sequence after the resize; contrast needs the clip-wide mean of its input.
  int ops[4];
  int n_ops = 0, contrast_at = -1;
  if (p.jitter) {
    for (int op : p.jitter_order) {
      if (op == kContrast) contrast_at = n_ops;
      ops[n_ops++] = op;
    }
  }
  const BlurKernel kernel = p.blur ? blur_kernel(p.blur_sigma, s.blur_radius()) : BlurKernel{};
  float mean[3] = {0, 0, 0};
  auto run_ops = [&](float* f, int from, int to) {
    for (int i = from; i < to; ++i) {
      switch (ops[i]) {
        case kBrightness: brightness(f, frame_values, p.brightness); break;
        case kContrast: contrast(f, frame_pixels, p.contrast, mean); break;
        case kSaturation: saturation(f, frame_pixels, p.saturation); break;
        case kHue: hue(f, frame_pixels, p.hue); break;
      }
    }
  };
  auto finish_frame = [&](float* f, int t) {
    if (p.grayscale) grayscale(f, frame_pixels);
    if (p.blur) blur_frame(f, S, S, kernel, blur_tmp, blur_pad);
    if (p.solarize) solarize(f, frame_values);
    if (out_u8 != nullptr) to_u8(f, frame_values, out_u8 + t * frame_values);
    else clamp_to(f, frame_values, out_f32 + t * frame_values);
  };

  if (contrast_at < 0) {
    // One pass: each frame goes through every op while it is in cache.
    float* f = out_f32 != nullptr ? nullptr : scratch(0, static_cast<size_t>(frame_values)).data();
    for (int t = 0; t < T; ++t) {
      float* frame = out_f32 != nullptr ? out_f32 + t * frame_values : f;
      resize_frame(t, frame);
      run_ops(frame, 0, n_ops);
      finish_frame(frame, t);
    }
    return;
  }
  // Two passes: ops before contrast and the channel sums, then contrast and the rest.
  float* clip_buf = out_f32 != nullptr ? out_f32 : scratch(0, static_cast<size_t>(frame_values * T)).data();
  double sums[3] = {0, 0, 0};
  for (int t = 0; t < T; ++t) {
    float* frame = clip_buf + t * frame_values;
    resize_frame(t, frame);
    run_ops(frame, 0, contrast_at);
    channel_sums(frame, frame_pixels, sums);
  }
  for (int c = 0; c < 3; ++c) mean[c] = static_cast<float>(sums[c] / static_cast<double>(frame_pixels * T));
  for (int t = 0; t < T; ++t) {
    float* frame = clip_buf + t * frame_values;
    run_ops(frame, contrast_at, n_ops);
    finish_frame(frame, t);
  }
}

}  // namespace cvrl
