// JPEG frame decode: libjpeg-turbo's TurboJPEG API straight to RGB24, optional bilinear resize with
// swscale. Every handle is owned by RAII.
#include "jpeg_decode.h"

#include <turbojpeg.h>

#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "errors.h"
#include "ffmpeg_raii.h"

namespace cvrl {
namespace {

struct TjDeleter {
  void operator()(void* h) const { tjDestroy(static_cast<tjhandle>(h)); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

std::string tj_error(tjhandle h) {
  const char* msg = tjGetErrorStr2(h);
  return msg ? std::string(msg) : std::string("unknown libjpeg-turbo error");
}

// A failed call is fatal unless libjpeg-turbo only warned; a truncated stream ("Premature end of JPEG
// file") is only a warning to libjpeg, but its missing rows are invented, so it counts as an error.
void check(tjhandle h, int ret, size_t index) {
  if (ret == 0) return;
  const std::string msg = tj_error(h);
  if (tjGetErrorCode(h) == TJERR_WARNING && msg.find("Premature end") == std::string::npos) return;
  throw DecodeError("frame " + std::to_string(index) + " is not a valid JPEG: " + msg);
}

}  // namespace

std::vector<uint8_t> decode_jpeg_frames(const std::vector<std::string_view>& jpegs, int* out_h, int* out_w,
                                        std::optional<std::pair<int, int>> out_size) {
  return decode_jpeg_frames(jpegs, out_h, out_w, out_size, JpegDct::kAccurate);
}

std::vector<uint8_t> decode_jpeg_frames(const std::vector<std::string_view>& jpegs, int* out_h, int* out_w,
                                        std::optional<std::pair<int, int>> out_size, JpegDct dct) {
  std::vector<uint8_t> out;
  *out_h = *out_w = 0;
  decode_jpeg_frames_into(
      jpegs,
      [&](int h, int w) {
        *out_h = h;
        *out_w = w;
        out.resize(jpegs.size() * static_cast<size_t>(h) * w * 3);
        return out.data();
      },
      out_size, dct);
  return out;
}

void decode_jpeg_frames_into(const std::vector<std::string_view>& jpegs,
                             const std::function<uint8_t*(int out_h, int out_w)>& allocate,
                             std::optional<std::pair<int, int>> out_size, JpegDct dct) {
  const int flags = dct == JpegDct::kFast ? TJFLAG_FASTDCT : TJFLAG_ACCURATEDCT;
  if (out_size && (out_size->first <= 0 || out_size->second <= 0))
    throw std::invalid_argument("output size must be positive, got (" + std::to_string(out_size->first) + ", " +
                                std::to_string(out_size->second) + ")");
  TjHandle handle(tjInitDecompress());
  if (!handle) throw std::runtime_error("libjpeg-turbo: cannot create a decompressor");
  tjhandle h = handle.get();

  int src_h = 0, src_w = 0;
  int dst_h = 0, dst_w = 0;
  uint8_t* out = nullptr;
  std::vector<uint8_t> full;     // one decoded frame at source size (only when resizing)
  std::vector<uint8_t> scratch;  // padded resize output
  ff::Sws sws;

  for (size_t i = 0; i < jpegs.size(); ++i) {
    const std::string_view& buf = jpegs[i];
    const auto* data = reinterpret_cast<const unsigned char*>(buf.data());
    const auto size = static_cast<unsigned long>(buf.size());
    int w = 0, h_px = 0, subsamp = 0, colorspace = 0;
    if (buf.empty() || tjDecompressHeader3(h, data, size, &w, &h_px, &subsamp, &colorspace) != 0)
      throw DecodeError("frame " + std::to_string(i) + " is not a valid JPEG: " +
                        (buf.empty() ? std::string("empty buffer") : tj_error(h)));
    // libjpeg-turbo 2.1 "succeeds" on a stream that ends before its frame header (SOI, then junk), with a
    // 0x0 size and nothing decoded.
    if (w < 1 || h_px < 1)
      throw DecodeError("frame " + std::to_string(i) + " is not a valid JPEG: no frame header (size " +
                        std::to_string(w) + "x" + std::to_string(h_px) + ")");
    if (int64_t{w} * h_px > kMaxFramePixels)
      throw DecodeError("frame " + std::to_string(i) + " is " + std::to_string(w) + "x" + std::to_string(h_px) +
                        ": more than " + std::to_string(kMaxFramePixels) + " pixels (corrupt header?)");
    if (i == 0) {
      src_w = w;
      src_h = h_px;
      dst_h = out_size ? out_size->first : src_h;
      dst_w = out_size ? out_size->second : src_w;
      out = allocate(dst_h, dst_w);
    } else if (w != src_w || h_px != src_h) {
      throw DecodeError("frame " + std::to_string(i) + " is " + std::to_string(w) + "x" + std::to_string(h_px) +
                        " but frame 0 is " + std::to_string(src_w) + "x" + std::to_string(src_h) +
                        ": all frames must have the same size");
    }
    const bool resize = dst_w != src_w || dst_h != src_h;
    uint8_t* target = out + i * static_cast<size_t>(dst_h) * dst_w * 3;
    if (!resize) {
      check(h, tjDecompress2(h, data, size, target, src_w, src_w * 3, src_h, TJPF_RGB, flags), i);
      continue;
    }
    // Resize: decode to the JPEG's own YCbCr planes and let swscale convert and scale in one bilinear
    // pass (as the video path does), instead of scaling an already converted RGB image.
    AVPixelFormat yuv_fmt = AV_PIX_FMT_NONE;
    if (colorspace == TJCS_YCbCr || colorspace == TJCS_GRAY) {
      switch (subsamp) {
        case TJSAMP_444: yuv_fmt = AV_PIX_FMT_YUV444P; break;
        case TJSAMP_422: yuv_fmt = AV_PIX_FMT_YUV422P; break;
        case TJSAMP_420: yuv_fmt = AV_PIX_FMT_YUV420P; break;
        case TJSAMP_440: yuv_fmt = AV_PIX_FMT_YUV440P; break;
        case TJSAMP_411: yuv_fmt = AV_PIX_FMT_YUV411P; break;
        case TJSAMP_GRAY: yuv_fmt = AV_PIX_FMT_GRAY8; break;
        default: break;
      }
    }
    const uint8_t* src[4] = {nullptr, nullptr, nullptr, nullptr};
    int src_stride[4] = {0, 0, 0, 0};
    AVPixelFormat src_fmt;
    if (yuv_fmt != AV_PIX_FMT_NONE) {
      const int planes = subsamp == TJSAMP_GRAY ? 1 : 3;
      size_t offsets[3] = {0, 0, 0};
      size_t total = 0;
      for (int p = 0; p < planes; ++p) {
        src_stride[p] = tjPlaneWidth(p, src_w, subsamp);
        offsets[p] = total;
        total += static_cast<size_t>(tjPlaneSizeYUV(p, src_w, src_stride[p], src_h, subsamp));
      }
      full.resize(total);
      unsigned char* dst_planes[3] = {nullptr, nullptr, nullptr};
      for (int p = 0; p < planes; ++p) dst_planes[p] = full.data() + offsets[p];
      check(h, tjDecompressToYUVPlanes(h, data, size, dst_planes, src_w, src_stride, src_h, flags), i);
      for (int p = 0; p < planes; ++p) src[p] = dst_planes[p];
      src_fmt = yuv_fmt;
    } else {
      full.resize(static_cast<size_t>(src_h) * src_w * 3);
      check(h, tjDecompress2(h, data, size, full.data(), src_w, src_w * 3, src_h, TJPF_RGB, flags), i);
      src[0] = full.data();
      src_stride[0] = src_w * 3;
      src_fmt = AV_PIX_FMT_RGB24;
    }
    SwsContext* c = sws_getCachedContext(sws.release(), src_w, src_h, src_fmt, dst_w, dst_h, AV_PIX_FMT_RGB24,
                                         SWS_BILINEAR, nullptr, nullptr, nullptr);
    if (!c) throw DecodeError("swscale: cannot resize frame " + std::to_string(i) + " (" + std::to_string(src_w) + "x" +
                              std::to_string(src_h) + " JPEG)");
    sws.reset(c);
    if (src_fmt != AV_PIX_FMT_RGB24) {  // JFIF: full-range BT.601
      const int* table = sws_getCoefficients(SWS_CS_ITU601);
      sws_setColorspaceDetails(c, table, 1, table, 1, 0, 1 << 16, 1 << 16);
    }
    // Padded destination rows: swscale may write a little past a row's end.
    const int stride = FFALIGN(dst_w * 3, 64) + 64;
    scratch.resize(static_cast<size_t>(stride) * (dst_h + 1));
    uint8_t* dst[4] = {scratch.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {stride, 0, 0, 0};
    sws_scale(c, src, src_stride, 0, src_h, dst, dst_stride);
    for (int r = 0; r < dst_h; ++r)
      std::memcpy(target + static_cast<size_t>(r) * dst_w * 3, scratch.data() + static_cast<size_t>(r) * stride,
                  static_cast<size_t>(dst_w) * 3);
  }
}

}  // namespace cvrl
