// The engine's one exception type for bad media.
//
// Every decoder (FFmpeg video, JPEG frames, TFRecord framing and SequenceExample parsing) throws
// DecodeError when the *data* cannot be decoded: a corrupt, truncated or unsupported file, a record whose
// frames disagree, timestamps that make no sense. The message names the file (or record) and the problem.
// Bad *arguments* (a crop outside the frame, an index out of range, a bad setting) stay
// std::invalid_argument / std::out_of_range, and anything else (std::bad_alloc, a logic error) is a bug.
// The pair loader skips and counts only DecodeError; any other exception from a worker stops the run.
// Python sees it as cvrl_fast.DecodeError, a RuntimeError subclass (bindings.cc).
#pragma once

#include <cstdint>
#include <stdexcept>

namespace cvrl {

// The largest JPEG frame the engine decodes, 2^28 pixels (16384 x 16384): about FFmpeg's own limit for
// video frames (av_image_check_size). A corrupt header can claim 65500 x 65500 in a few bytes, and the
// decoder would then allocate and write gigabytes before it notices the data is missing.
constexpr int64_t kMaxFramePixels = int64_t{1} << 28;

class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace cvrl
