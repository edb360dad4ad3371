#include "jpeg_crop.h"

// clang-format off
#include <cstdio>   // jpeglib.h needs FILE and size_t first
#include <csetjmp>
#include <jpeglib.h>
#include <jerror.h>  // message codes (JWRN_JPEG_EOF)
// clang-format on

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "errors.h"

namespace cvrl {

namespace {

// libjpeg reports fatal errors through error_exit, which by default calls exit(). We jump back to
// the frame that called setjmp and turn the message into an exception there.
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;  // libjpeg only warns on premature end of data and pads with grey
};

void on_fatal(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (msg_level -1) about corrupt data are tolerated like TF does; premature end of data is
// remembered and reported as an error, since the rest of the frame would be invented grey.
void on_warning(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) reinterpret_cast<JpegError*>(cinfo->err)->truncated = true;
}

// Owns the decompressor (RAII); the error manager lives next to it.
struct Decompressor {
  jpeg_decompress_struct cinfo;
  JpegError err;
  bool created = false;
  Decompressor() {
    std::memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_fatal;
    err.mgr.emit_message = on_warning;
    err.message[0] = '\0';
    err.truncated = false;
  }
  ~Decompressor() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

// The functions below are the only ones that call setjmp. They own no C++ objects and touch no
// local variable after setjmp, so the longjmp from on_fatal is well defined; they return false on a
// libjpeg error and leave the message in d->err.message.

bool open_header(Decompressor* d, const unsigned char* data, unsigned long size) {
  if (setjmp(d->err.jump)) return false;
  jpeg_create_decompress(&d->cinfo);
  d->created = true;
  jpeg_mem_src(&d->cinfo, data, size);
  jpeg_read_header(&d->cinfo, TRUE);
  return true;
}

bool start_window(Decompressor* d, JDIMENSION* x0, JDIMENSION* crop_w, JDIMENSION skip_rows, int scale_denom) {
  if (setjmp(d->err.jump)) return false;
  d->cinfo.scale_num = 1;
  d->cinfo.scale_denom = static_cast<unsigned int>(scale_denom);
  d->cinfo.out_color_space = JCS_RGB;  // grayscale JPEGs are expanded to RGB like TF's channels=3
  // TF's decode_jpeg default (dct_method "") is the fast integer IDCT; the reference decodes with it.
  d->cinfo.dct_method = JDCT_IFAST;
  d->cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&d->cinfo);
  // Column crop snaps to iMCU boundaries: x0 moves left and the width grows to cover the window.
  // The upsampler treats the crop's edges like image edges (replicates the edge chroma sample), so
  // decode one extra iMCU column on each side of the window; the window's pixels are then exact.
  const JDIMENSION imcu_w = static_cast<JDIMENSION>(d->cinfo.max_h_samp_factor * d->cinfo.min_DCT_scaled_size);
  const JDIMENSION left = *x0 > imcu_w ? *x0 - imcu_w : 0;
  *crop_w = std::min<JDIMENSION>(d->cinfo.output_width - left, *crop_w + (*x0 - left) + imcu_w);
  *x0 = left;
  if (*crop_w < d->cinfo.output_width) jpeg_crop_scanline(&d->cinfo, x0, crop_w);
  else *x0 = 0;
  if (skip_rows > 0) jpeg_skip_scanlines(&d->cinfo, skip_rows);
  return true;
}

bool read_row(Decompressor* d, unsigned char* row, bool* got) {
  if (setjmp(d->err.jump)) return false;
  JSAMPROW rows[1] = {row};
  *got = jpeg_read_scanlines(&d->cinfo, rows, 1) == 1;
  return true;
}

bool finish(Decompressor* d) {
  if (setjmp(d->err.jump)) return false;
  jpeg_abort_decompress(&d->cinfo);  // remaining rows are not needed
  return true;
}

[[noreturn]] void fail(const std::string& what, const char* message) {
  throw DecodeError("bad JPEG (" + what + "): " + message);
}

void open_or_throw(Decompressor* d, std::string_view jpeg, const std::string& what) {
  if (jpeg.empty()) fail(what, "empty buffer");
  if (!open_header(d, reinterpret_cast<const unsigned char*>(jpeg.data()), static_cast<unsigned long>(jpeg.size())))
    fail(what, d->err.message);
  const int64_t pixels = int64_t{d->cinfo.image_width} * d->cinfo.image_height;
  if (pixels > kMaxFramePixels) {
    throw DecodeError("bad JPEG (" + what + "): " + std::to_string(d->cinfo.image_width) + "x" +
                      std::to_string(d->cinfo.image_height) + " is more than " + std::to_string(kMaxFramePixels) +
                      " pixels (corrupt header?)");
  }
}

}  // namespace

void jpeg_frame_size(std::string_view jpeg, const std::string& what, int* height, int* width) {
  Decompressor d;
  open_or_throw(&d, jpeg, what);
  *height = static_cast<int>(d.cinfo.image_height);
  *width = static_cast<int>(d.cinfo.image_width);
}

void jpeg_decode_window(std::string_view jpeg, const Box& window, uint8_t* out, int64_t out_row_stride_bytes,
                        const std::string& what, int scale_denom) {
  if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8) {
    throw std::invalid_argument("scale_denom=" + std::to_string(scale_denom) + " must be 1, 2, 4 or 8 (" + what + ")");
  }
  Decompressor d;
  open_or_throw(&d, jpeg, what);
  // Output size at 1/scale_denom, as libjpeg computes it (jdiv_round_up).
  const int h = (static_cast<int>(d.cinfo.image_height) + scale_denom - 1) / scale_denom;
  const int w = (static_cast<int>(d.cinfo.image_width) + scale_denom - 1) / scale_denom;
  // In 64 bits: x + width of two ints can overflow (and then pass the check).
  if (window.x < 0 || window.y < 0 || window.width < 1 || window.height < 1 || int64_t{window.x} + window.width > w ||
      int64_t{window.y} + window.height > h) {
    throw std::invalid_argument("JPEG crop window (x=" + std::to_string(window.x) + ", y=" + std::to_string(window.y) +
                                ", " + std::to_string(window.width) + "x" + std::to_string(window.height) +
                                ") lies outside the " + std::to_string(w) + "x" + std::to_string(h) + " frame (" +
                                what + ")");
  }
  JDIMENSION x0 = static_cast<JDIMENSION>(window.x), crop_w = static_cast<JDIMENSION>(window.width);
  if (window.width == w) x0 = 0;
  if (!start_window(&d, &x0, &crop_w, static_cast<JDIMENSION>(window.y), scale_denom)) fail(what, d.err.message);
  if (d.cinfo.output_components != 3) fail(what, "cannot convert to RGB");
  std::vector<unsigned char> row(static_cast<size_t>(d.cinfo.output_width) * 3);
  const size_t skip_bytes = static_cast<size_t>(window.x - static_cast<int>(x0)) * 3;
  for (int r = 0; r < window.height; ++r) {
    bool got = false;
    if (!read_row(&d, row.data(), &got)) fail(what, d.err.message);
    if (!got) fail(what, "truncated image data");
    std::memcpy(out + r * out_row_stride_bytes, row.data() + skip_bytes, static_cast<size_t>(window.width) * 3);
  }
  if (d.err.truncated) fail(what, "premature end of JPEG data (truncated frame)");
  if (!finish(&d)) fail(what, d.err.message);
}

}  // namespace cvrl
