#include "augment.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace cvrl {

namespace {

inline float clamp01(float v) { return std::min(std::max(v, 0.f), 1.f); }

// Standard hexcone RGB <-> HSV on [0, 1] values with hue in [0, 1) units (the same model as TF's
// adjust_saturation / adjust_hue kernels).
inline void rgb_to_hsv(float r, float g, float b, float* h, float* s, float* v) {
  const float vmax = std::max(r, std::max(g, b));
  const float range = vmax - std::min(r, std::min(g, b));
  *v = vmax;
  *s = vmax > 0.f ? range / vmax : 0.f;
  if (!(range > 0.f)) {
    *h = 0.f;
    return;
  }
  const float norm = 1.f / (6.f * range);
  float hh;
  if (r == vmax) {
    hh = norm * (g - b);
  } else if (g == vmax) {
    hh = norm * (b - r) + 2.f / 6.f;
  } else {
    hh = norm * (r - g) + 4.f / 6.f;
  }
  if (hh < 0.f) hh += 1.f;
  *h = hh;
}

inline void hsv_to_rgb(float h, float s, float v, float* r, float* g, float* b) {
  const float c = s * v;
  const float m = v - c;
  const float dh = h * 6.f;
  int sector = static_cast<int>(dh);
  float fm = std::fmod(dh, 2.f);
  if (fm < 0.f) fm += 2.f;
  const float x = c * (1.f - std::fabs(fm - 1.f));
  sector = ((sector % 6) + 6) % 6;  // h == 1 after float rounding is the same colour as h == 0
  float rr, gg, bb;
  switch (sector) {
    case 0: rr = c; gg = x; bb = 0.f; break;
    case 1: rr = x; gg = c; bb = 0.f; break;
    case 2: rr = 0.f; gg = c; bb = x; break;
    case 3: rr = 0.f; gg = x; bb = c; break;
    case 4: rr = x; gg = 0.f; bb = c; break;
    default: rr = c; gg = 0.f; bb = x; break;
  }
  *r = rr + m;
  *g = gg + m;
  *b = bb + m;
}

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

std::vector<float>& scratch(int which, size_t n) {
  thread_local std::vector<float> buffers[2];
  auto& b = buffers[which];
  if (b.size() < n) b.resize(n);
  return b;
}

}  // namespace

void resize_bilinear_half_pixel(const ClipWindow& clip, int out_h, int out_w, bool truncate, bool flip,
                                float* out) {
  if (clip.height < 1 || clip.width < 1 || clip.num_frames() < 1 || out_h < 1 || out_w < 1) {
    throw std::invalid_argument("resize: empty clip window " + std::to_string(clip.width) + "x" +
                                std::to_string(clip.height) + " or output size");
  }
  const std::vector<Interp> xs = interpolation(out_w, clip.width);
  const std::vector<Interp> ys = interpolation(out_h, clip.height);
  const float inv255 = 1.f / 255.f;
  for (int t = 0; t < clip.num_frames(); ++t) {
    const uint8_t* frame = clip.frames[t];
    float* out_frame = out + static_cast<int64_t>(t) * out_h * out_w * 3;
    for (int y = 0; y < out_h; ++y) {
      const uint8_t* top = frame + ys[y].lower * clip.row_stride_bytes;
      const uint8_t* bottom = frame + ys[y].upper * clip.row_stride_bytes;
      const float y_lerp = ys[y].lerp;
      float* out_row = out_frame + static_cast<int64_t>(y) * out_w * 3;
      for (int x = 0; x < out_w; ++x) {
        const int l = xs[x].lower * 3, u = xs[x].upper * 3;
        const float x_lerp = xs[x].lerp;
        float* o = out_row + (flip ? (out_w - 1 - x) : x) * 3;
        for (int c = 0; c < 3; ++c) {
          const float tl = top[l + c], tr = top[u + c], bl = bottom[l + c], br = bottom[u + c];
          const float top_v = tl + (tr - tl) * x_lerp;
          const float bottom_v = bl + (br - bl) * x_lerp;
          float v = top_v + (bottom_v - top_v) * y_lerp;
          // The reference casts the float resize back to uint8 (truncation) before x/255.
          if (truncate) v = static_cast<float>(static_cast<int>(v));
          o[c] = v * inv255;
        }
      }
    }
  }
}

void adjust_brightness_mult(float* x, int64_t n_pixels, float factor) {
  for (int64_t i = 0; i < n_pixels * 3; ++i) x[i] = clamp01(x[i] * factor);
}

void adjust_contrast_clip(float* x, int64_t n_pixels, float factor) {
  // Per-channel mean over every pixel of the clip (the reference reshapes it to [T*H, W, 3]).
  double sum[3] = {0, 0, 0};
  for (int64_t i = 0; i < n_pixels; ++i) {
    sum[0] += x[3 * i];
    sum[1] += x[3 * i + 1];
    sum[2] += x[3 * i + 2];
  }
  float mean[3];
  for (int c = 0; c < 3; ++c) mean[c] = static_cast<float>(sum[c] / static_cast<double>(n_pixels));
  for (int64_t i = 0; i < n_pixels; ++i)
    for (int c = 0; c < 3; ++c) x[3 * i + c] = clamp01((x[3 * i + c] - mean[c]) * factor + mean[c]);
}

void adjust_saturation(float* x, int64_t n_pixels, float factor) {
  for (int64_t i = 0; i < n_pixels; ++i) {
    float* p = x + 3 * i;
    float h, s, v;
    rgb_to_hsv(p[0], p[1], p[2], &h, &s, &v);
    s = std::min(std::max(s * factor, 0.f), 1.f);
    hsv_to_rgb(h, s, v, &p[0], &p[1], &p[2]);
    p[0] = clamp01(p[0]);
    p[1] = clamp01(p[1]);
    p[2] = clamp01(p[2]);
  }
}

void adjust_hue(float* x, int64_t n_pixels, float delta) {
  for (int64_t i = 0; i < n_pixels; ++i) {
    float* p = x + 3 * i;
    float h, s, v;
    rgb_to_hsv(p[0], p[1], p[2], &h, &s, &v);
    h += delta;
    h -= std::floor(h);  // wrap to [0, 1)
    if (h >= 1.f) h = 0.f;
    hsv_to_rgb(h, s, v, &p[0], &p[1], &p[2]);
    p[0] = clamp01(p[0]);
    p[1] = clamp01(p[1]);
    p[2] = clamp01(p[2]);
  }
}

void to_grayscale(float* x, int64_t n_pixels) {
  for (int64_t i = 0; i < n_pixels; ++i) {
    float* p = x + 3 * i;
    const float y = 0.2989f * p[0] + 0.5870f * p[1] + 0.1140f * p[2];
    p[0] = p[1] = p[2] = y;
  }
}

void gaussian_blur_zero_pad(float* x, int num_frames, int height, int width, float sigma, int radius) {
  if (!(sigma > 0.f)) throw std::invalid_argument("gaussian_blur: sigma must be > 0, got " + std::to_string(sigma));
  const int taps = 2 * radius + 1;
  std::vector<float> w(taps);
  float total = 0.f;
  for (int j = -radius; j <= radius; ++j) {
    w[j + radius] = std::exp(-static_cast<float>(j * j) / (2.f * sigma * sigma));
    total += w[j + radius];
  }
  for (float& v : w) v /= total;
  const int row_len = width * 3;
  std::vector<float>& tmp = scratch(1, static_cast<size_t>(height) * row_len + static_cast<size_t>(width + 2 * radius) * 3);
  float* pass1 = tmp.data();
  float* padded = tmp.data() + static_cast<size_t>(height) * row_len;
  // Zero padding outside the frame: borders darken, as in the reference's SAME depthwise conv.
  std::fill(padded, padded + radius * 3, 0.f);
  std::fill(padded + (radius + width) * 3, padded + (width + 2 * radius) * 3, 0.f);
  for (int t = 0; t < num_frames; ++t) {
    float* frame = x + static_cast<int64_t>(t) * height * row_len;
    // Horizontal pass; loops ordered so the inner loop is contiguous and vectorises.
    for (int y = 0; y < height; ++y) {
      std::copy(frame + y * row_len, frame + (y + 1) * row_len, padded + radius * 3);
      float* o = pass1 + y * row_len;
      std::fill(o, o + row_len, 0.f);
      for (int j = 0; j < taps; ++j) {
        const float wj = w[j];
        const float* src = padded + j * 3;
        for (int i = 0; i < row_len; ++i) o[i] += wj * src[i];
      }
    }
    // Vertical pass back into the frame; rows outside contribute zero.
    for (int y = 0; y < height; ++y) {
      float* o = frame + y * row_len;
      std::fill(o, o + row_len, 0.f);
      const int j_lo = std::max(0, radius - y), j_hi = std::min(taps, height - y + radius);
      for (int j = j_lo; j < j_hi; ++j) {
        const float wj = w[j];
        const float* src = pass1 + (y + j - radius) * row_len;
        for (int i = 0; i < row_len; ++i) o[i] += wj * src[i];
      }
    }
  }
}

void solarize(float* x, int64_t n_values) {
  for (int64_t i = 0; i < n_values; ++i) x[i] = x[i] < 0.5f ? x[i] : 1.f - x[i];
}

void augment_clip(const ClipWindow& clip, const ViewParams& p, const AugmentSettings& s, uint8_t* out_u8,
                  float* out_f32) {
  if ((out_u8 == nullptr) == (out_f32 == nullptr))
    throw std::invalid_argument("augment_clip: exactly one output buffer must be given");
  const int S = s.crop_size;
  const int T = clip.num_frames();
  const int64_t n_pixels = static_cast<int64_t>(T) * S * S;
  float* x = out_f32 != nullptr ? out_f32 : scratch(0, static_cast<size_t>(n_pixels) * 3).data();
  resize_bilinear_half_pixel(clip, S, S, s.truncate_after_resize, p.flip, x);
  if (p.jitter) {
    for (int op : p.jitter_order) {
      switch (op) {
        case kBrightness: adjust_brightness_mult(x, n_pixels, p.brightness); break;
        case kContrast: adjust_contrast_clip(x, n_pixels, p.contrast); break;
        case kSaturation: adjust_saturation(x, n_pixels, p.saturation); break;
        case kHue: adjust_hue(x, n_pixels, p.hue); break;
        default: throw std::invalid_argument("augment_clip: jitter_order holds " + std::to_string(op) +
                                             "; valid ops are 0..3");
      }
    }
  }
  if (p.grayscale) to_grayscale(x, n_pixels);
  if (p.blur) gaussian_blur_zero_pad(x, T, S, S, p.blur_sigma, s.blur_radius());
  if (p.solarize) solarize(x, n_pixels * 3);
  if (out_u8 != nullptr) {
    for (int64_t i = 0; i < n_pixels * 3; ++i)
      out_u8[i] = static_cast<uint8_t>(clamp01(x[i]) * 255.f + 0.5f);
  } else {
    for (int64_t i = 0; i < n_pixels * 3; ++i) x[i] = clamp01(x[i]);
  }
}

}  // namespace cvrl
