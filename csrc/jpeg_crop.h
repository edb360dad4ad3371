// Decode only a window of a JPEG frame (libjpeg-turbo's jpeg_crop_scanline / jpeg_skip_scanlines).
// The reference decodes every sampled JPEG at full size before cropping (cvrl.md §10 pitfall 8);
// the crop box depends only on the frame size, so we read the header, draw the box, and decode
// just the rows and iMCU columns that cover it. The window's pixels are identical to a full decode
// with TF's decode_jpeg defaults (fast integer IDCT, fancy upsampling), as the reference decodes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "sampling.h"

namespace cvrl {

// Width and height from the JPEG header (no pixel decode). Throws DecodeError (errors.h) naming
// `what` (e.g. "frame 3 of foo.tfrecord") on a corrupt or unsupported stream.
void jpeg_frame_size(std::string_view jpeg, const std::string& what, int* height, int* width);

// Decodes `window` of the frame to RGB24 rows at out + r * out_row_stride_bytes. The window must lie
// inside the frame (std::invalid_argument otherwise); bad data throws DecodeError. scale_denom 2, 4 or 8 decodes the frame at that
// reduction inside the IDCT (libjpeg's scale_denom): `window` is then in the reduced frame's pixels,
// which is ceil(width / scale_denom) x ceil(height / scale_denom).
void jpeg_decode_window(std::string_view jpeg, const Box& window, uint8_t* out, int64_t out_row_stride_bytes,
                        const std::string& what, int scale_denom = 1);

}  // namespace cvrl
