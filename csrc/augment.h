// Applies one clip's augmentation parameters (sampling.h) to its frames: the reference's ops
// (cvrl.md §2.2) in the reference's order, with TF's arithmetic, one draw for all frames.
#pragma once

#include <cstdint>
#include <vector>

#include "sampling.h"

namespace cvrl {

// T frames of a crop window, RGB24 interleaved: frame t, row r starts at
// frames[t] + r * row_stride_bytes; the window is width x height pixels. Frames are separate
// pointers so a clip can reference decoded frames shared with the other view (and repeated ones
// after wrap-around) without copies.
struct ClipWindow {
  std::vector<const uint8_t*> frames;
  int height = 0, width = 0;
  int64_t row_stride_bytes = 0;
  int num_frames() const { return static_cast<int>(frames.size()); }
};

// Resize (bilinear, half-pixel centres, no antialias) -> [parity: truncate to uint8] -> flip ->
// x/255 -> colour jitter (random order, clip after each op) -> grayscale -> blur -> solarize ->
// clip to [0, 1]. Writes [T, S, S, 3] to exactly one of out_u8 (round(255 x)) or out_f32 (x).
// With settings.augment_on == kDevice the colour stage is left to the accelerator: the output is
// uint8 only, the resized (truncated in parity mode), flipped crop, and params' colour fields are
// ignored here.
// Thread-safe; scratch memory is per thread. Works frame by frame so the data stays in cache; the
// only clip-wide statistic (the contrast mean) takes a second pass when contrast is drawn.
void augment_clip(const ClipWindow& clip, const ViewParams& params, const AugmentSettings& settings,
                  uint8_t* out_u8, float* out_f32);

}  // namespace cvrl
