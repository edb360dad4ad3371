// CVRL two-clip temporal sampling (cvrl.md §1), crop-box sampling with
// tf.image.sample_distorted_bounding_box semantics (cvrl.md §2.3), and the per-clip augmentation
// parameter draw (cvrl.md §2.2). Parameters are sampled separately from pixels so they are cheap to
// inspect and reusable by other backends; augment.h applies them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "rng.h"

namespace cvrl {

// Where the colour stage (jitter, grayscale, blur, solarize) runs. kHost: augment_clip applies it and
// the views are final. kDevice: augment_clip stops after resize (and the parity truncation) and flip,
// the views are uint8, and each clip's colour parameters go out as a colour row (colour_row) for the
// accelerator's cvrl_fast.device_augment. The random draws are the same in both modes.
enum class AugmentOn : int { kHost = 0, kDevice = 1 };

// Every probability and range of the pipeline; defaults are the reference values (docs/cvrl.md §1-§2).
struct AugmentSettings {
  int num_frames = 16;          // T
  int frame_stride = 2;         // s, in index-space frames
  int crop_size = 224;          // S, output side
  double target_fps = 25.0;     // fixed-rate index space; <= 0 means native decoded frames
  double area_min = 0.3, area_max = 1.0;      // fraction of the frame area
  double aspect_min = 0.5, aspect_max = 2.0;  // width / height, drawn uniformly in [min, max)
  double min_object_covered = 0.1;
  int max_attempts = 100;
  double flip_prob = 0.5;
  double jitter_prob = 0.8;
  double brightness = 0.8;  // factor ~ U[max(1 - b, 0), 1 + b], multiplicative
  double contrast = 0.8;    // factor ~ U[max(1 - c, 0), 1 + c]
  double saturation = 0.8;  // factor ~ U[max(1 - s, 0), 1 + s]
  double hue = 0.2;         // delta ~ U[-h, h]
  double grayscale_prob = 0.2;
  std::array<double, 2> blur_prob = {1.0, 0.1};      // view 1, view 2
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  std::array<double, 2> solarize_prob = {0.0, 0.2};  // view 1, view 2
  // Parity mode truncates the resized crop to uint8 like the reference (cvrl.md §2.3).
  bool truncate_after_resize = true;
  // JPEG frames only, needs truncate_after_resize off (it changes pixels): decode the crop window at
  // 1/2, 1/4 or 1/8 scale in the IDCT when both views' boxes stay at least crop_size pixels on each side.
  bool jpeg_dct_scaling = false;
  AugmentOn augment_on = AugmentOn::kHost;

  // Throws std::invalid_argument naming the field, its value and the valid range.
  void validate() const;
  // Blur taps from the output size, like the reference: radius = (S div 10) div 2.
  int blur_radius() const { return (crop_size / 10) / 2; }
};

// Every field but augment_on as "name=value" lines (doubles with 17 significant digits, so parsing
// gives the same bits): how the settings cross into a TensorFlow graph as one string attr
// (csrc/tf_ops.cc; TF's float attrs are 32-bit and would change the draws). augment_on is the op's
// own attr: it says what the outputs are, not how they are drawn.
std::string serialize_settings(const AugmentSettings& settings);
// The inverse (augment_on left at kHost); every field must be present once. Throws
// std::invalid_argument naming the line or the field (and validate()'s errors).
AugmentSettings parse_settings(const std::string& text);

// A crop window in source pixels: columns [x, x + width), rows [y, y + height).
struct Box {
  int x = 0, y = 0, width = 0, height = 0;
};

enum JitterOp : int { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };

// One parameter draw for one clip; applied identically to every frame (cvrl.md §2.1).
struct ViewParams {
  Box crop;
  bool flip = false;
  bool jitter = false;
  float brightness = 1.f, contrast = 1.f, saturation = 1.f, hue = 0.f;
  std::array<int, 4> jitter_order = {0, 1, 2, 3};
  bool grayscale = false;
  bool blur = false;
  float blur_sigma = 1.f;
  bool solarize = false;
};

// One clip's colour parameters as float32, the `colour` row of device mode. The layout is
// cvrl_fast.COLOUR_FIELDS: jitter coin, brightness, contrast, saturation, hue, the four jitter op
// ids in application order, grayscale coin, blur coin, blur sigma, solarize coin (coins are 0 or 1).
constexpr int kNumColourParams = 13;
std::array<float, kNumColourParams> colour_row(const ViewParams& view);

// The temporal part of a pair, in index-space frames (see fixed_rate_frame_map).
struct ClipPlan {
  int64_t num_frames = 0;    // L
  int64_t offset_range = 0;  // M
  int64_t interval = 0;      // Δ (meaningful only when L > (T-1)s)
  int64_t start_a = 0, start_b = 0;
  bool swapped = false;      // true: view 1 is clip b
  std::array<std::vector<int64_t>, 2> indices;  // view 1, view 2; wrapped modulo L
};

struct PairParams {
  ClipPlan clips;
  std::array<ViewParams, 2> views;
};

// Δ = floor(M (1 - sqrt(1 - u))) in {0..M-1}: the closed-form inverse CDF of p(x) ∝ 1 - x/M.
int64_t sample_interval(int64_t offset_range, CounterRng& rng);

// Two clip starts, wrap-around indices and view-order shuffle (cvrl.md §1 steps 1-5).
ClipPlan sample_clips(int64_t num_frames, int clip_frames, int frame_stride, CounterRng& rng);

// sample_distorted_bounding_box with the whole frame as the only object (cvrl.md §2.3); returns
// the full frame when every attempt fails.
Box sample_crop_box(int height, int width, const AugmentSettings& s, CounterRng& rng);

// Everything but the crop box, for view 0 (view 1) or 1 (view 2).
ViewParams sample_view_params(int view, const AugmentSettings& s, CounterRng& rng);

// Full draw for one sample: temporal plan from the Temporal stream, crop and colour parameters
// from per-view streams. Pure function of its arguments.
PairParams sample_pair_params(int64_t num_frames, int height, int width, const AugmentSettings& s,
                              uint64_t seed, uint64_t epoch, uint64_t sample);

// Maps the fixed-rate index space onto decoded frames by timestamp: element i is the decoded
// frame shown at time pts[0] + i / target_fps (the last frame whose pts <= that time). The
// length is the number of index-space frames, L. target_fps <= 0 gives the identity (native).
// Throws std::invalid_argument for no timestamps, timestamps that are not finite and ascending, or an
// index space longer than kMaxIndexFrames.
std::vector<int64_t> fixed_rate_frame_map(const std::vector<double>& pts_seconds, double target_fps);

// The length L fixed_rate_frame_map would give, as a double and before any cap (NaN for bad timestamps):
// lets a caller refuse a timeline (e.g. a corrupt file whose timestamps jump by days) before allocating it.
double fixed_rate_length(const std::vector<double>& pts_seconds, double target_fps);

// 2^22 index-space frames: 46 hours at 25 fps, a 32 MiB map. Longer timelines are broken files.
constexpr int64_t kMaxIndexFrames = int64_t{1} << 22;

}  // namespace cvrl
