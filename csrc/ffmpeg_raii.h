// RAII owners for every FFmpeg object the engine creates. Each owner is a std::unique_ptr with a deleter
// that calls the matching FFmpeg free function, so no early return or exception can leak one.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>
}

namespace cvrl {
namespace ff {

struct FormatInputDeleter {
  // avformat_close_input also frees streams and, unless AVFMT_FLAG_CUSTOM_IO, the AVIOContext.
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct CodecContextDeleter {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct FrameDeleter {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
struct IOContextDeleter {
  // A custom AVIOContext owns an av_malloc'ed buffer that FFmpeg may have reallocated: free the
  // current one, then the context.
  void operator()(AVIOContext* p) const {
    av_freep(&p->buffer);
    avio_context_free(&p);
  }
};
struct AvFreeDeleter {
  void operator()(void* p) const { av_free(p); }
};

using FormatInput = std::unique_ptr<AVFormatContext, FormatInputDeleter>;
using CodecContext = std::unique_ptr<AVCodecContext, CodecContextDeleter>;
using Frame = std::unique_ptr<AVFrame, FrameDeleter>;
using Packet = std::unique_ptr<AVPacket, PacketDeleter>;
using Sws = std::unique_ptr<SwsContext, SwsDeleter>;
using IOContext = std::unique_ptr<AVIOContext, IOContextDeleter>;

inline Frame make_frame() {
  Frame f(av_frame_alloc());
  if (!f) throw std::bad_alloc();
  return f;
}
inline Packet make_packet() {
  Packet p(av_packet_alloc());
  if (!p) throw std::bad_alloc();
  return p;
}

// Unreferences a packet/frame on scope exit (the object itself is reused).
struct PacketUnref {
  AVPacket* p;
  ~PacketUnref() { av_packet_unref(p); }
};
struct FrameUnref {
  AVFrame* f;
  ~FrameUnref() { av_frame_unref(f); }
};

inline std::string error_string(int errnum) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(errnum, buf, sizeof(buf));
  return std::string(buf);
}

}  // namespace ff
}  // namespace cvrl
