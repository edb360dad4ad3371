#include "sampling.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <locale>
#include <map>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace cvrl {

namespace {

[[noreturn]] void bad_setting(const std::string& name, double value, const std::string& valid) {
  std::ostringstream msg;
  msg << "AugmentConfig." << name << " = " << value << " is invalid; valid range: " << valid;
  throw std::invalid_argument(msg.str());
}

void check_prob(const std::string& name, double p) {
  if (!(p >= 0.0 && p <= 1.0)) bad_setting(name, p, "[0, 1]");
}

}  // namespace

void AugmentSettings::validate() const {
  if (num_frames < 1 || num_frames > 4096) bad_setting("num_frames", num_frames, "[1, 4096]");
  if (frame_stride < 1 || frame_stride > 1024) bad_setting("frame_stride", frame_stride, "[1, 1024]");
  if (crop_size < 1 || crop_size > 8192) bad_setting("crop_size", crop_size, "[1, 8192]");
  if (!(std::isfinite(target_fps) && target_fps <= 1000.0))
    bad_setting("target_fps", target_fps, "(0, 1000] frames per second, or None for native frames");
  if (!(area_min > 0.0 && area_min <= 1.0)) bad_setting("area_range[0]", area_min, "(0, 1]");
  if (!(area_max >= area_min && area_max <= 1.0)) bad_setting("area_range[1]", area_max, "[area_range[0], 1]");
  if (!(aspect_min > 0.0 && std::isfinite(aspect_min))) bad_setting("aspect_ratio_range[0]", aspect_min, "(0, inf)");
  if (!(aspect_max >= aspect_min && std::isfinite(aspect_max)))
    bad_setting("aspect_ratio_range[1]", aspect_max, "[aspect_ratio_range[0], inf)");
  check_prob("min_object_covered", min_object_covered);
  if (max_attempts < 1 || max_attempts > 100000) bad_setting("max_attempts", max_attempts, "[1, 100000]");
  check_prob("flip_prob", flip_prob);
  check_prob("jitter_prob", jitter_prob);
  if (!(brightness >= 0.0 && brightness <= 10.0)) bad_setting("brightness", brightness, "[0, 10]");
  if (!(contrast >= 0.0 && contrast <= 10.0)) bad_setting("contrast", contrast, "[0, 10]");
  if (!(saturation >= 0.0 && saturation <= 10.0)) bad_setting("saturation", saturation, "[0, 10]");
  if (!(hue >= 0.0 && hue <= 0.5)) bad_setting("hue", hue, "[0, 0.5]");
  check_prob("grayscale_prob", grayscale_prob);
  check_prob("blur_prob[0]", blur_prob[0]);
  check_prob("blur_prob[1]", blur_prob[1]);
  if (!(blur_sigma_min > 0.0 && std::isfinite(blur_sigma_min)))
    bad_setting("blur_sigma_range[0]", blur_sigma_min, "(0, inf)");
  if (!(blur_sigma_max >= blur_sigma_min && std::isfinite(blur_sigma_max)))
    bad_setting("blur_sigma_range[1]", blur_sigma_max, "[blur_sigma_range[0], inf)");
  if (jpeg_dct_scaling && truncate_after_resize)
    throw std::invalid_argument("jpeg_dct_scaling=True changes pixels, so it needs parity=False (truncate_after_resize)");
  check_prob("solarize_prob[0]", solarize_prob[0]);
  check_prob("solarize_prob[1]", solarize_prob[1]);
  if (augment_on != AugmentOn::kHost && augment_on != AugmentOn::kDevice)
    bad_setting("augment_on", static_cast<int>(augment_on), "host (0) or device (1)");
}

namespace {

// One table for both directions, so a new field cannot be serialized without being parsed.
template <typename F>
void for_each_setting(AugmentSettings& s, F&& f) {
  f("num_frames", s.num_frames);
  f("frame_stride", s.frame_stride);
  f("crop_size", s.crop_size);
  f("target_fps", s.target_fps);
  f("area_min", s.area_min);
  f("area_max", s.area_max);
  f("aspect_min", s.aspect_min);
  f("aspect_max", s.aspect_max);
  f("min_object_covered", s.min_object_covered);
  f("max_attempts", s.max_attempts);
  f("flip_prob", s.flip_prob);
  f("jitter_prob", s.jitter_prob);
  f("brightness", s.brightness);
  f("contrast", s.contrast);
  f("saturation", s.saturation);
  f("hue", s.hue);
  f("grayscale_prob", s.grayscale_prob);
  f("blur_prob0", s.blur_prob[0]);
  f("blur_prob1", s.blur_prob[1]);
  f("blur_sigma_min", s.blur_sigma_min);
  f("blur_sigma_max", s.blur_sigma_max);
  f("solarize_prob0", s.solarize_prob[0]);
  f("solarize_prob1", s.solarize_prob[1]);
  f("truncate_after_resize", s.truncate_after_resize);
  f("jpeg_dct_scaling", s.jpeg_dct_scaling);
}

std::string setting_text(int v) { return std::to_string(v); }
std::string setting_text(bool v) { return v ? "1" : "0"; }
std::string setting_text(double v) {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out.precision(17);
  out << v;
  return out.str();
}

// Parses `text` into `v`; false when it is not a whole value of that type.
bool parse_setting(const std::string& text, double& v) {
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  in >> v;
  return !in.fail() && in.peek() == std::char_traits<char>::eof();
}
bool parse_setting(const std::string& text, int& v) {
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  long long x = 0;
  in >> x;
  if (in.fail() || in.peek() != std::char_traits<char>::eof() || x < INT32_MIN || x > INT32_MAX) return false;
  v = static_cast<int>(x);
  return true;
}
bool parse_setting(const std::string& text, bool& v) {
  if (text != "0" && text != "1") return false;
  v = text == "1";
  return true;
}

}  // namespace

std::string serialize_settings(const AugmentSettings& settings) {
  AugmentSettings s = settings;
  std::string out;
  for_each_setting(s, [&](const char* name, auto& value) { out += std::string(name) + "=" + setting_text(value) + "\n"; });
  return out;
}

AugmentSettings parse_settings(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("augmentation settings: line '" + line + "' is not name=value");
    if (!values.emplace(line.substr(0, eq), line.substr(eq + 1)).second) {
      throw std::invalid_argument("augmentation settings: '" + line.substr(0, eq) + "' is given twice");
    }
  }
  AugmentSettings s;
  for_each_setting(s, [&](const char* name, auto& value) {
    const auto it = values.find(name);
    if (it == values.end()) throw std::invalid_argument(std::string("augmentation settings: '") + name + "' is missing");
    if (!parse_setting(it->second, value)) {
      throw std::invalid_argument(std::string("augmentation settings: ") + name + " = '" + it->second +
                                  "' is not a valid value");
    }
    values.erase(it);
  });
  if (!values.empty()) {
    throw std::invalid_argument("augmentation settings: unknown field '" + values.begin()->first + "'");
  }
  s.validate();
  return s;
}

std::array<float, kNumColourParams> colour_row(const ViewParams& v) {
  auto coin = [](bool b) { return b ? 1.f : 0.f; };
  return {coin(v.jitter),
          v.brightness,
          v.contrast,
          v.saturation,
          v.hue,
          static_cast<float>(v.jitter_order[0]),
          static_cast<float>(v.jitter_order[1]),
          static_cast<float>(v.jitter_order[2]),
          static_cast<float>(v.jitter_order[3]),
          coin(v.grayscale),
          coin(v.blur),
          v.blur_sigma,
          coin(v.solarize)};
}

int64_t sample_interval(int64_t offset_range, CounterRng& rng) {
  if (offset_range < 1) throw std::invalid_argument("sample_interval: offset range M must be >= 1");
  const double u = rng.uniform();
  const double m = static_cast<double>(offset_range);
  const auto delta = static_cast<int64_t>(std::floor(m * (1.0 - std::sqrt(1.0 - u))));
  return std::clamp<int64_t>(delta, 0, offset_range - 1);
}

ClipPlan sample_clips(int64_t num_frames, int clip_frames, int frame_stride, CounterRng& rng) {
  if (num_frames < 1) {
    throw std::invalid_argument("sample_clips: the video has " + std::to_string(num_frames) +
                                " frames in the index space; need at least 1");
  }
  ClipPlan plan;
  plan.num_frames = num_frames;
  const int64_t reach = static_cast<int64_t>(clip_frames - 1) * frame_stride;
  const bool long_video = num_frames > reach;
  plan.offset_range = long_video ? num_frames - reach : num_frames;
  // Fixed number of draws in both branches keeps the stream layout independent of L.
  plan.interval = sample_interval(plan.offset_range, rng);
  const uint64_t u_a = rng.next_u64();
  const uint64_t u_b = rng.next_u64();
  auto scaled = [](uint64_t u, int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(u) * static_cast<uint64_t>(n)) >> 64);
  };
  if (long_video) {
    plan.start_a = scaled(u_a, plan.offset_range - plan.interval);  // UniformInt[0, M - Δ)
    plan.start_b = plan.start_a + plan.interval;
  } else {
    plan.start_a = scaled(u_a, num_frames);  // short video: independent UniformInt[0, L)
    plan.start_b = scaled(u_b, num_frames);
  }
  plan.swapped = rng.coin(0.5);
  const int64_t starts[2] = {plan.swapped ? plan.start_b : plan.start_a,
                             plan.swapped ? plan.start_a : plan.start_b};
  for (int v = 0; v < 2; ++v) {
    plan.indices[v].resize(clip_frames);
    for (int k = 0; k < clip_frames; ++k)
      plan.indices[v][k] = (starts[v] + static_cast<int64_t>(frame_stride) * k) % num_frames;  // loops
  }
  return plan;
}

Box sample_crop_box(int height, int width, const AugmentSettings& s, CounterRng& rng) {
  if (height < 1 || width < 1) {
    throw std::invalid_argument("sample_crop_box: frame size " + std::to_string(width) + "x" +
                                std::to_string(height) + " must be at least 1x1");
  }
  // Single precision and lrintf (round half to even) as in TF's kernel, so boxes match its
  // arithmetic for the same aspect draw.
  const float frame_area = static_cast<float>(height) * static_cast<float>(width);
  const float min_area = static_cast<float>(s.area_min) * frame_area;
  const float max_area = static_cast<float>(s.area_max) * frame_area;
  for (int attempt = 0; attempt < s.max_attempts; ++attempt) {
    const float aspect =
        static_cast<float>(rng.uniform()) * static_cast<float>(s.aspect_max - s.aspect_min) +
        static_cast<float>(s.aspect_min);
    int h = static_cast<int>(std::lrintf(std::sqrt(min_area / aspect)));
    int max_h = static_cast<int>(std::lrintf(std::sqrt(max_area / aspect)));
    if (std::lrintf(static_cast<float>(max_h) * aspect) > width) {
      // Largest max_h whose rounded width still fits.
      constexpr float kEps = 1e-7f;
      max_h = static_cast<int>((static_cast<float>(width) + 0.5f - kEps) / aspect);
      if (std::lrintf(static_cast<float>(max_h) * aspect) > width) max_h -= 1;
    }
    if (max_h > height) max_h = height;
    if (h >= max_h) h = max_h;
    if (h < max_h) h += static_cast<int>(rng.uniform_int(static_cast<uint64_t>(max_h - h + 1)));  // inclusive
    int w = static_cast<int>(std::lrintf(static_cast<float>(h) * aspect));
    float area = static_cast<float>(w) * static_cast<float>(h);
    if (area < min_area) {  // rounding repair
      h += 1;
      w = static_cast<int>(std::lrintf(static_cast<float>(h) * aspect));
      area = static_cast<float>(w) * static_cast<float>(h);
    }
    if (area > max_area) {
      h -= 1;
      w = static_cast<int>(std::lrintf(static_cast<float>(h) * aspect));
      area = static_cast<float>(w) * static_cast<float>(h);
    }
    if (area < min_area || area > max_area || w > width || h > height || w <= 0 || h <= 0) continue;
    // Coverage of the only object box, the whole frame.
    if (area / frame_area < static_cast<float>(s.min_object_covered)) continue;
    Box box;
    box.width = w;
    box.height = h;
    // Exclusive upper bounds: the last offset is never chosen (reference behaviour).
    box.y = h < height ? static_cast<int>(rng.uniform_int(static_cast<uint64_t>(height - h))) : 0;
    box.x = w < width ? static_cast<int>(rng.uniform_int(static_cast<uint64_t>(width - w))) : 0;
    return box;
  }
  return Box{0, 0, width, height};
}

ViewParams sample_view_params(int view, const AugmentSettings& s, CounterRng& rng) {
  if (view != 0 && view != 1) throw std::invalid_argument("sample_view_params: view must be 0 or 1");
  ViewParams p;
  // Every draw is made whether or not its coin fires, so the stream layout never changes.
  p.flip = rng.coin(s.flip_prob);
  p.jitter = rng.coin(s.jitter_prob);
  p.brightness = static_cast<float>(rng.uniform(std::max(1.0 - s.brightness, 0.0), 1.0 + s.brightness));
  p.contrast = static_cast<float>(rng.uniform(std::max(1.0 - s.contrast, 0.0), 1.0 + s.contrast));
  p.saturation = static_cast<float>(rng.uniform(std::max(1.0 - s.saturation, 0.0), 1.0 + s.saturation));
  p.hue = static_cast<float>(rng.uniform(-s.hue, s.hue));
  p.jitter_order = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(p.jitter_order[i], p.jitter_order[rng.uniform_int(i + 1)]);
  p.grayscale = rng.coin(s.grayscale_prob);
  p.blur = rng.coin(s.blur_prob[view]);
  p.blur_sigma = static_cast<float>(rng.uniform(s.blur_sigma_min, s.blur_sigma_max));
  p.solarize = rng.coin(s.solarize_prob[view]);
  return p;
}

PairParams sample_pair_params(int64_t num_frames, int height, int width, const AugmentSettings& s,
                              uint64_t seed, uint64_t epoch, uint64_t sample) {
  PairParams out;
  CounterRng temporal(seed, epoch, sample, kStreamTemporal);
  out.clips = sample_clips(num_frames, s.num_frames, s.frame_stride, temporal);
  for (int v = 0; v < 2; ++v) {
    CounterRng crop_rng(seed, epoch, sample, v == 0 ? kStreamCropView1 : kStreamCropView2);
    CounterRng param_rng(seed, epoch, sample, v == 0 ? kStreamParamsView1 : kStreamParamsView2);
    out.views[v] = sample_view_params(v, s, param_rng);
    out.views[v].crop = sample_crop_box(height, width, s, crop_rng);
  }
  return out;
}

namespace {
constexpr double kTimeEps = 1e-6;  // timestamps are rationals rounded to double

// Index of the first timestamp that is not finite or not ascending, or -1.
int64_t first_bad_timestamp(const std::vector<double>& pts_seconds) {
  for (size_t i = 0; i < pts_seconds.size(); ++i)
    if (!std::isfinite(pts_seconds[i]) || (i > 0 && pts_seconds[i] < pts_seconds[i - 1])) return static_cast<int64_t>(i);
  return -1;
}
}  // namespace

double fixed_rate_length(const std::vector<double>& pts_seconds, double target_fps) {
  const size_t n = pts_seconds.size();
  if (n == 0 || first_bad_timestamp(pts_seconds) >= 0) return std::numeric_limits<double>::quiet_NaN();
  if (!(target_fps > 0.0)) return static_cast<double>(n);
  // The last frame is shown for one typical frame duration (median gap), so a 10 s clip at any
  // native rate spans 10 s and gives 10 * target_fps index-space frames.
  double frame_seconds = 1.0 / target_fps;
  if (n > 1) {
    std::vector<double> gaps;
    gaps.reserve(n - 1);
    for (size_t i = 1; i < n; ++i)
      if (pts_seconds[i] > pts_seconds[i - 1]) gaps.push_back(pts_seconds[i] - pts_seconds[i - 1]);
    if (!gaps.empty()) {
      std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
      frame_seconds = gaps[gaps.size() / 2];
    }
  }
  const double duration = pts_seconds.back() + frame_seconds - pts_seconds.front();
  return std::max(1.0, std::floor(duration * target_fps + kTimeEps));
}

std::vector<int64_t> fixed_rate_frame_map(const std::vector<double>& pts_seconds, double target_fps) {
  const size_t n = pts_seconds.size();
  if (n == 0) throw std::invalid_argument("fixed_rate_frame_map: the video has no decodable frames");
  const int64_t bad = first_bad_timestamp(pts_seconds);
  if (bad >= 0) {
    throw std::invalid_argument("fixed_rate_frame_map: frame timestamps must be finite and ascending (frame " +
                                std::to_string(bad) + ")");
  }
  std::vector<int64_t> map;
  if (!(target_fps > 0.0)) {
    map.resize(n);
    for (size_t i = 0; i < n; ++i) map[i] = static_cast<int64_t>(i);
    return map;
  }
  // Checked as a double: the cast of a longer (or infinite) span to int64 would be undefined.
  const double span = fixed_rate_length(pts_seconds, target_fps);
  if (!(span <= static_cast<double>(kMaxIndexFrames))) {
    throw std::invalid_argument("fixed_rate_frame_map: " + std::to_string(pts_seconds.back() - pts_seconds.front()) +
                                " s of timestamps give " + std::to_string(span) + " frames at " +
                                std::to_string(target_fps) + " fps, more than " + std::to_string(kMaxIndexFrames));
  }
  const double t0 = pts_seconds.front();
  const auto length = static_cast<int64_t>(span);
  constexpr double kEps = kTimeEps;
  map.resize(length);
  size_t j = 0;
  for (int64_t i = 0; i < length; ++i) {
    const double t = t0 + static_cast<double>(i) / target_fps + kEps;
    while (j + 1 < n && pts_seconds[j + 1] <= t) ++j;
    map[i] = static_cast<int64_t>(j);
  }
  return map;
}

}  // namespace cvrl
