// JPEG frame decode with libjpeg-turbo (the reference's TFRecords store one JPEG per video frame).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace cvrl {

// Decodes each buffer to RGB24 HWC and returns them stacked, [N, H, W, 3]; *out_h and *out_w receive
// the output frame size. out_size {h, w} resizes each frame (bilinear) if given. Throws DecodeError
// (errors.h) naming the frame index on a bad JPEG, and if the frames differ in size; std::invalid_argument
// for a non-positive out_size.
std::vector<uint8_t> decode_jpeg_frames(const std::vector<std::string_view>& jpegs, int* out_h, int* out_w,
                                        std::optional<std::pair<int, int>> out_size = std::nullopt);

// Which inverse DCT libjpeg-turbo uses. kAccurate (ISLOW, the default above) equals TensorFlow's
// decode_jpeg(dct_method="INTEGER_ACCURATE"); kFast (IFAST) equals TensorFlow's default decode_jpeg.
enum class JpegDct { kAccurate, kFast };
std::vector<uint8_t> decode_jpeg_frames(const std::vector<std::string_view>& jpegs, int* out_h, int* out_w,
                                        std::optional<std::pair<int, int>> out_size, JpegDct dct);

// Same, decoding straight into caller memory: allocate(out_h, out_w) is called once, after frame 0's
// header is read and before anything is decoded, and must return jpegs.size() * out_h * out_w * 3 bytes.
// Not called for an empty list.
void decode_jpeg_frames_into(const std::vector<std::string_view>& jpegs,
                             const std::function<uint8_t*(int out_h, int out_w)>& allocate,
                             std::optional<std::pair<int, int>> out_size, JpegDct dct);

}  // namespace cvrl
