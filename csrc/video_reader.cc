// VideoReader implementation. See video_reader.h for the contract.
//
// Design:
//  * On open we demux every packet of the chosen video stream once (no decoding) into a packet index:
//    decode order, pts/dts, byte position, keyframe flag. Frames in presentation order are those packets
//    sorted by pts. For every frame we precompute the keyframe to start decoding from.
//  * A short decode from the start confirms the first frame the decoder really outputs (streams that start
//    mid-GOP or with undecodable leading pictures lose those frames, as the ffmpeg CLI does).
//  * get_frames decodes the sorted, de-duplicated targets in one forward sweep, seeking only when the next
//    target's start keyframe lies beyond what has already been fed to the decoder. Packets whose frame
//    nobody asked for are sent with skip_frame = AVDISCARD_NONREF, so the decoder drops non-reference
//    pictures (most B-frames) without decoding them. Only returned frames are colour-converted.
//  * Streams whose timestamps cannot identify frames (missing or duplicate pts) use a sequential mode:
//    frames are counted by a full decode on open and found again by decoding forward from the start.
#include "video_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "errors.h"
#include "ffmpeg_log.h"
#include "ffmpeg_raii.h"

extern "C" {
#include <libavutil/dict.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
}

namespace cvrl {
namespace {

constexpr int64_t kNoPts = AV_NOPTS_VALUE;

// FFmpeg 7 (libavutil 59) removed AVFrame::pkt_duration; AVFrame::duration replaces it from libavutil
// 57.30.100 (FFmpeg 5.1 has 57.28: only pkt_duration there).
int64_t frame_duration(const AVFrame* f) {
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(57, 30, 100)
  return f->duration;
#else
  return f->pkt_duration;
#endif
}

// The display matrix of a stream, or nullptr. FFmpeg 6.1 (libavformat 60.15, libavcodec 60.31) moved
// stream side data to AVCodecParameters::coded_side_data and deprecated av_stream_get_side_data, which
// FFmpeg 7 (libavformat 61) removed.
const uint8_t* display_matrix(const AVStream* st) {
#if LIBAVFORMAT_VERSION_INT >= AV_VERSION_INT(60, 15, 100) && LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 31, 100)
  const AVPacketSideData* sd = av_packet_side_data_get(st->codecpar->coded_side_data,
                                                       st->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
  return sd && sd->size >= 9 * sizeof(int32_t) ? sd->data : nullptr;
#else
  size_t size = 0;
  const uint8_t* data = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
  return data && size >= 9 * sizeof(int32_t) ? data : nullptr;
#endif
}

// Per-stream codec options for avformat_find_stream_info, which opens decoders of its own to probe: the
// same log offset as the engine's decoder (ffmpeg_log.h). Owns the dictionaries.
struct ProbeOptions {
  std::vector<AVDictionary*> dicts;
  explicit ProbeOptions(unsigned n) : dicts(n, nullptr) {
    const std::string offset = std::to_string(engine_log_offset());
    for (auto& d : dicts) av_dict_set(&d, "log_level_offset", offset.c_str(), 0);
  }
  ~ProbeOptions() {
    for (auto& d : dicts) av_dict_free(&d);
  }
  ProbeOptions(const ProbeOptions&) = delete;
  ProbeOptions& operator=(const ProbeOptions&) = delete;
};

// In-memory source for from_bytes: read/seek callbacks over an owned string.
struct MemorySource {
  std::string data;
  int64_t pos = 0;

  static int read(void* opaque, uint8_t* buf, int buf_size) {
    auto* self = static_cast<MemorySource*>(opaque);
    const int64_t left = static_cast<int64_t>(self->data.size()) - self->pos;
    if (left <= 0) return AVERROR_EOF;
    const int n = static_cast<int>(std::min<int64_t>(left, buf_size));
    std::memcpy(buf, self->data.data() + self->pos, n);
    self->pos += n;
    return n;
  }
  static int64_t seek(void* opaque, int64_t offset, int whence) {
    auto* self = static_cast<MemorySource*>(opaque);
    const int64_t size = static_cast<int64_t>(self->data.size());
    whence &= ~AVSEEK_FORCE;
    int64_t target;
    switch (whence) {
      case AVSEEK_SIZE: return size;
      case SEEK_SET: target = offset; break;
      case SEEK_CUR: target = self->pos + offset; break;
      case SEEK_END: target = size + offset; break;
      default: return AVERROR(EINVAL);
    }
    if (target < 0 || target > size) return AVERROR(EINVAL);
    self->pos = target;
    return target;
  }
};

struct PacketEntry {
  int64_t pts = kNoPts, dts = kNoPts, pos = -1, duration = 0;
  int size = 0;
  bool key = false;
  int64_t frame = -1;  // presentation index of the frame this packet yields, -1 if none
};

AVPixelFormat unjpeg(AVPixelFormat f, bool* full_range) {
  switch (f) {
    case AV_PIX_FMT_YUVJ420P: *full_range = true; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full_range = true; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full_range = true; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full_range = true; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full_range = true; return AV_PIX_FMT_YUV411P;
    default: return f;
  }
}

// A cached swscale context plus the colour details last applied to it.
struct ScaleCtx {
  ff::Sws sws;
  int cs = -1, full_range = -1;

  SwsContext* get(AVPixelFormat src_fmt, int sw, int sh, int dw, int dh, int flags, int colorspace,
                  bool full_range_in) {
    SwsContext* prev = sws.release();
    SwsContext* c = sws_getCachedContext(prev, sw, sh, src_fmt, dw, dh, AV_PIX_FMT_RGB24, flags, nullptr,
                                         nullptr, nullptr);
    if (!c) throw DecodeError("swscale: cannot convert pixel format " +
                                     std::string(av_get_pix_fmt_name(src_fmt) ? av_get_pix_fmt_name(src_fmt) : "?") +
                                     " to rgb24");
    if (c != prev) cs = full_range = -1;
    sws.reset(c);
    // Match the ffmpeg CLI's scale filter: the frame's colour matrix (BT.601 when unspecified or
    // unknown) and its range.
    if (colorspace < 1 || colorspace > 10 || colorspace == 8) colorspace = AVCOL_SPC_BT470BG;
    if (colorspace != cs || static_cast<int>(full_range_in) != full_range) {
      const int* table = sws_getCoefficients(colorspace);
      sws_setColorspaceDetails(c, table, full_range_in ? 1 : 0, table, 1, 0, 1 << 16, 1 << 16);
      cs = colorspace;
      full_range = full_range_in ? 1 : 0;
    }
    return c;
  }
};

}  // namespace

struct VideoReader::Impl {
  std::string name;  // path or "<bytes>", for messages
  std::unique_ptr<MemorySource> memory;
  ff::IOContext io;  // custom IO for in-memory sources; must outlive fmt (declared first, destroyed last)
  ff::FormatInput fmt;
  ff::CodecContext dec;
  const AVCodec* codec = nullptr;
  int stream_index = -1;
  AVRational time_base{1, 1};
  int num_threads = 1;

  VideoInfo info;
  Stats stats;

  // Packet index (decode order) and frames (presentation order).
  std::vector<PacketEntry> packets;
  std::vector<int64_t> frame_pts;        // stream time base, ascending
  std::vector<double> frame_pts_seconds;
  std::vector<int64_t> frame_packet;     // decode index of the packet yielding frame i
  std::vector<int64_t> frame_start;      // decode index of the packet to start decoding from for frame i
  std::vector<int64_t> keyframes;        // decode indices of keyframe packets
  std::unordered_map<int64_t, int64_t> packet_by_key;
  enum class Key { kPos, kDts, kPts } key_kind = Key::kPos;
  bool sequential = false;  // timestamps cannot identify frames: count output frames from the start

  // Decoder state.
  ff::Packet pkt = ff::make_packet();
  ff::Frame frame = ff::make_frame();
  bool pending = false;      // `pkt` holds the packet at decode index next_packet, read but not sent
  bool state_valid = false;  // decoder fed contiguously from a start point up to next_packet
  bool drained = false;      // decoder was sent EOF; needs a flush (and a seek) before reuse
  bool demux_eof = false;
  int64_t next_packet = 0;   // decode index of the next packet to feed
  int64_t last_output = -1;  // presentation index of the last frame the decoder output (this sweep)
  int64_t seq_count = 0;     // sequential mode: frames output since the start
  // skipped_run[d] == run: packet d was sent with AVDISCARD_NONREF since the last flush (its frame may
  // have been dropped). `run` increments on every flush, so the vector never needs clearing.
  std::vector<int64_t> skipped_run;
  std::vector<int64_t> fed_run;  // fed_run[d] == run: packet d was fed normally (its frame must come out)
  // Palettes (PAL8 video) arrive as packet side data, typically once on the first packet; the demuxer
  // does not repeat them after a seek, so every run re-sends the one in force. (decode index, bytes)
  std::vector<std::pair<int64_t, std::string>> palettes;
  int64_t palette_run = 0;  // run in which a palette was last sent
  int64_t run = 1;

  // Conversion.
  ScaleCtx exact_ctx, resize_ctx;
  std::vector<uint8_t> scratch;

  std::string where() const { return "'" + name + "'"; }

  // ---------------------------------------------------------------- open
  void open(const std::string& path) {
    AVFormatContext* raw = nullptr;
    if (memory) {
      raw = avformat_alloc_context();
      if (!raw) throw std::bad_alloc();
      raw->pb = io.get();
      raw->flags |= AVFMT_FLAG_CUSTOM_IO;
    }
    int ret = avformat_open_input(&raw, memory ? nullptr : path.c_str(), nullptr, nullptr);
    if (ret < 0) {
      // avformat_open_input frees the context on failure.
      throw DecodeError("cannot open video " + where() + ": " + ff::error_string(ret));
    }
    fmt.reset(raw);
    // MP4/MOV and Matroska/WebM headers describe the video stream completely (size, codec, extradata,
    // frame rate); probing by decoding (avformat_find_stream_info) would only repeat work the index
    // build does anyway. Other containers (MPEG-PS/TS, AVI, raw streams) need the probe.
    if (!header_is_complete()) {
      // The options array must have one entry per stream; the probe may add streams, which then get none.
      ProbeOptions options(fmt->nb_streams);
      ret = avformat_find_stream_info(fmt.get(), options.dicts.empty() ? nullptr : options.dicts.data());
      if (ret < 0) throw DecodeError("cannot read stream info of " + where() + ": " + ff::error_string(ret));
    }

    ret = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (ret == AVERROR_STREAM_NOT_FOUND) throw DecodeError("no video stream in " + where());
    if (ret == AVERROR_DECODER_NOT_FOUND || !codec) throw DecodeError("no decoder for the video stream of " + where());
    if (ret < 0) throw DecodeError("cannot select a video stream in " + where() + ": " + ff::error_string(ret));
    stream_index = ret;
    AVStream* st = fmt->streams[stream_index];
    for (unsigned i = 0; i < fmt->nb_streams; ++i)
      if (static_cast<int>(i) != stream_index) fmt->streams[i]->discard = AVDISCARD_ALL;
    time_base = st->time_base;

    info.codec = avcodec_get_name(st->codecpar->codec_id);  // the codec, not the decoder ("av1", not "libdav1d")
    info.width = st->codecpar->width;
    info.height = st->codecpar->height;
    if (info.width <= 0 || info.height <= 0)
      throw DecodeError("video stream of " + where() + " has no frame size (" + info.codec + ")");
    const uint8_t* matrix = display_matrix(st);
    if (matrix) {
      // Counter-clockwise degrees to turn the coded frame for display (what ffprobe prints as
      // `rotation`; the ffmpeg CLI's autorotate applies it).
      const double ccw = av_display_rotation_get(reinterpret_cast<const int32_t*>(matrix));
      if (ccw == ccw) {  // not NaN
        int deg = static_cast<int>(std::lround(ccw)) % 360;
        if (deg < 0) deg += 360;
        info.rotation = ((deg + 45) / 90 % 4) * 90;
      }
    }

    open_decoder();
    build_index();
  }

  bool header_is_complete() const {
    const std::string format = fmt->iformat->name;
    if (format.find("mov") == std::string::npos && format.find("matroska") == std::string::npos) return false;
    int videos = 0;
    for (unsigned i = 0; i < fmt->nb_streams; ++i) {
      const AVCodecParameters* par = fmt->streams[i]->codecpar;
      if (par->codec_type != AVMEDIA_TYPE_VIDEO) continue;
      if (fmt->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC) continue;
      ++videos;
      if (par->codec_id == AV_CODEC_ID_NONE || par->width <= 0 || par->height <= 0) return false;
      // Codecs whose decoder needs out-of-band headers must have them in the container.
      if ((par->codec_id == AV_CODEC_ID_H264 || par->codec_id == AV_CODEC_ID_HEVC) && par->extradata_size <= 0)
        return false;
    }
    return videos == 1;
  }

  void open_decoder() {
    AVStream* st = fmt->streams[stream_index];
    dec.reset(avcodec_alloc_context3(codec));
    if (!dec) throw std::bad_alloc();
    int ret = avcodec_parameters_to_context(dec.get(), st->codecpar);
    if (ret < 0) throw DecodeError("cannot configure decoder for " + where() + ": " + ff::error_string(ret));
    dec->pkt_timebase = st->time_base;
    dec->thread_count = std::max(1, num_threads);
    dec->log_level_offset = engine_log_offset();  // corrupt data is reported as exceptions (ffmpeg_log.h)
    ret = avcodec_open2(dec.get(), codec, nullptr);
    if (ret < 0) throw DecodeError("cannot open " + info.codec + " decoder for " + where() + ": " + ff::error_string(ret));
  }

  void build_index() {
    // Demux every packet once: the index is what the file really holds, not what its header claims.
    for (;;) {
      int ret = av_read_frame(fmt.get(), pkt.get());
      if (ret == AVERROR(EAGAIN)) continue;
      if (ret < 0) break;  // EOF or a read error: the index ends at the last packet that could be read
      ff::PacketUnref unref{pkt.get()};
      if (pkt->stream_index != stream_index) continue;
      if (pkt->size <= 0) continue;  // empty packets carry no frame (and would signal EOF to the decoder)
      PacketEntry e;
      e.pts = pkt->pts;
      e.dts = pkt->dts;
      e.pos = pkt->pos;
      e.duration = pkt->duration;
      e.size = pkt->size;
      e.key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
      e.frame = (pkt->flags & AV_PKT_FLAG_DISCARD) ? -2 : -1;  // -2: decoded but never output
      size_t palette_size = 0;
      const uint8_t* palette = av_packet_get_side_data(pkt.get(), AV_PKT_DATA_PALETTE, &palette_size);
      if (palette && palette_size > 0)
        palettes.emplace_back(static_cast<int64_t>(packets.size()),
                              std::string(reinterpret_cast<const char*>(palette), palette_size));
      packets.push_back(e);
    }
    if (packets.empty()) throw DecodeError("no video packets in " + where());

    // Can timestamps identify frames? Every output-able packet needs a distinct pts.
    std::vector<std::pair<int64_t, int64_t>> by_pts;  // (pts, decode index)
    bool pts_ok = true;
    for (size_t i = 0; i < packets.size(); ++i) {
      if (packets[i].frame == -2) continue;
      if (packets[i].pts == kNoPts) { pts_ok = false; break; }
      by_pts.emplace_back(packets[i].pts, static_cast<int64_t>(i));
    }
    std::sort(by_pts.begin(), by_pts.end());
    for (size_t i = 1; pts_ok && i < by_pts.size(); ++i)
      if (by_pts[i].first == by_pts[i - 1].first) pts_ok = false;
    if (by_pts.empty()) pts_ok = false;
    if (pts_ok) pts_ok = choose_packet_key();

    if (pts_ok) {
      for (size_t i = 0; i < packets.size(); ++i)
        if (packets[i].key) keyframes.push_back(static_cast<int64_t>(i));
      set_frames(by_pts);
      // A stream that starts with a keyframe presented first outputs it first: nothing to confirm.
      // Otherwise (starts mid-GOP, open-GOP leading pictures) decode from the start to find out.
      const bool clean_start = packets.front().key && packets.front().frame == 0;
      if (!clean_start) pts_ok = confirm_first_frame();
    }
    if (!pts_ok) {
      sequential = true;
      count_frames_sequentially();
    }
    if (frame_pts.empty()) throw DecodeError("no decodable video frame in " + where());

    const int64_t n = static_cast<int64_t>(frame_pts.size());
    info.num_frames = n;
    frame_pts_seconds.resize(n);
    for (int64_t i = 0; i < n; ++i) frame_pts_seconds[i] = frame_pts[i] * av_q2d(time_base);
    AVStream* st = fmt->streams[stream_index];
    double last_duration = 0.0;
    if (!sequential && packets[frame_packet[n - 1]].duration > 0)
      last_duration = packets[frame_packet[n - 1]].duration * av_q2d(time_base);
    else if (n > 1)
      last_duration = (frame_pts_seconds[n - 1] - frame_pts_seconds[0]) / (n - 1);
    else if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
      last_duration = 1.0 / av_q2d(st->avg_frame_rate);
    info.duration_seconds = frame_pts_seconds[n - 1] - frame_pts_seconds[0] + last_duration;
    if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
      info.fps = av_q2d(st->avg_frame_rate);
    else if (info.duration_seconds > 0)
      info.fps = n / info.duration_seconds;
    else
      info.fps = 0.0;
  }

  // Packets are recognised after a seek by byte position (else dts, else pts), whichever is unique.
  bool choose_packet_key() {
    auto try_key = [&](Key k) {
      packet_by_key.clear();
      packet_by_key.reserve(packets.size() * 2);
      for (size_t i = 0; i < packets.size(); ++i) {
        const int64_t v = key_of(packets[i], k);
        if (v == kNoPts || (k == Key::kPos && v < 0)) return false;
        if (!packet_by_key.emplace(v, static_cast<int64_t>(i)).second) return false;
      }
      key_kind = k;
      return true;
    };
    return try_key(Key::kPos) || try_key(Key::kDts) || try_key(Key::kPts);
  }
  static int64_t key_of(const PacketEntry& e, Key k) {
    return k == Key::kPos ? e.pos : k == Key::kDts ? e.dts : e.pts;
  }
  int64_t key_of_packet(const AVPacket* p) const {
    switch (key_kind) {
      case Key::kPos: return p->pos < 0 ? kNoPts : p->pos;
      case Key::kDts: return p->dts;
      default: return p->pts;
    }
  }
  int64_t identify(const AVPacket* p) const {
    const int64_t k = key_of_packet(p);
    if (k == kNoPts) return -1;
    auto it = packet_by_key.find(k);
    if (it == packet_by_key.end()) return -1;
    // After a seek, parsers (MPEG-PS/TS) may emit a partial first packet with the right position and
    // timestamp: only a packet with the same size and timestamps is the indexed one.
    const PacketEntry& e = packets[it->second];
    if (p->size != e.size) return -1;
    if (p->pts != kNoPts && e.pts != kNoPts && p->pts != e.pts) return -1;
    return it->second;
  }

  // Frames in presentation order from (pts, decode index) pairs sorted by pts, dropping frames before
  // `first_pts` (pictures the decoder cannot output, e.g. leading pictures of an open GOP at the start).
  void set_frames(const std::vector<std::pair<int64_t, int64_t>>& by_pts, int64_t first_pts = kNoPts) {
    frame_pts.clear();
    frame_packet.clear();
    frame_start.clear();
    for (auto& e : packets)
      if (e.frame >= 0) e.frame = -1;
    for (const auto& [pts, d] : by_pts) {
      if (first_pts != kNoPts && pts < first_pts) continue;
      packets[d].frame = static_cast<int64_t>(frame_pts.size());
      frame_pts.push_back(pts);
      frame_packet.push_back(d);
    }
    // Start point of frame i: the last keyframe at or before its packet (decode order) that is not
    // presented after it (a frame presented before its GOP's keyframe is a leading picture that needs
    // the previous GOP). Decode index 0, the stream start, is always a valid start point.
    frame_start.resize(frame_pts.size());
    for (size_t i = 0; i < frame_pts.size(); ++i) {
      const int64_t d = frame_packet[i];
      auto it = std::upper_bound(keyframes.begin(), keyframes.end(), d);
      int64_t start = 0;
      while (it != keyframes.begin()) {
        --it;
        const int64_t kp = packets[*it].pts;
        if (kp == kNoPts || kp <= frame_pts[i]) { start = *it; break; }
      }
      frame_start[i] = start;
    }
  }

  // Decodes from the start until the first frame comes out. Its pts must be a known frame; frames
  // presented before it never decode and are dropped from the index.
  bool confirm_first_frame() {
    if (!seek_to_start()) return false;
    int64_t first = kNoPts;
    const int64_t max_packets = static_cast<int64_t>(packets.size());
    int64_t sent = 0;
    auto on_frame = [&](AVFrame* f) {
      if (first == kNoPts) first = frame_timestamp(f);
      return first != kNoPts;
    };
    while (first == kNoPts && sent <= max_packets) {
      int ret = read_video_packet();
      if (ret < 0) {
        drain(on_frame);
        break;
      }
      ff::PacketUnref unref{pkt.get()};
      attach_palette(pkt.get(), -1);
      send_and_receive(pkt.get(), on_frame);
      ++sent;
    }
    invalidate();
    if (first == kNoPts) return false;
    auto it = std::lower_bound(frame_pts.begin(), frame_pts.end(), first);
    if (it == frame_pts.end() || *it != first) return false;
    if (it != frame_pts.begin()) {
      std::vector<std::pair<int64_t, int64_t>> by_pts;
      for (size_t i = 0; i < frame_pts.size(); ++i) by_pts.emplace_back(frame_pts[i], frame_packet[i]);
      set_frames(by_pts, first);
    }
    return true;
  }

  // Sequential mode: the frames are whatever a full decode from the start outputs.
  void count_frames_sequentially() {
    frame_pts.clear();
    frame_packet.clear();
    frame_start.clear();
    keyframes.clear();
    if (!seek_to_start()) throw DecodeError("cannot rewind " + where() + " to decode it");
    int64_t guess_pts = 0;
    auto on_frame = [&](AVFrame* f) {
      int64_t ts = f->best_effort_timestamp;
      if (ts == kNoPts || (!frame_pts.empty() && ts <= frame_pts.back()))
        ts = frame_pts.empty() ? guess_pts : frame_pts.back() + std::max<int64_t>(1, frame_duration(f));
      frame_pts.push_back(ts);
      return true;
    };
    for (;;) {
      int ret = read_video_packet();
      if (ret < 0) {
        drain(on_frame);
        break;
      }
      ff::PacketUnref unref{pkt.get()};
      attach_palette(pkt.get(), -1);
      send_and_receive(pkt.get(), on_frame);
    }
    invalidate();
  }

  // ---------------------------------------------------------------- demux/decode primitives
  // Reads the next packet of the video stream into `pkt`. Returns <0 at EOF or on a read error.
  int read_video_packet() {
    for (;;) {
      int ret = av_read_frame(fmt.get(), pkt.get());
      if (ret == AVERROR(EAGAIN)) continue;
      if (ret < 0) return ret;
      if (pkt->stream_index == stream_index && pkt->size > 0) return 0;
      av_packet_unref(pkt.get());
    }
  }

  // Before the first packet of a run reaches the decoder: attach the palette in force at decode index d
  // (-1: unknown, use the first) unless the packet carries one.
  void attach_palette(AVPacket* p, int64_t d) {
    if (palettes.empty() || palette_run == run) return;
    palette_run = run;
    if (av_packet_get_side_data(p, AV_PKT_DATA_PALETTE, nullptr)) return;
    const std::string* chosen = &palettes.front().second;
    for (const auto& [at, bytes] : palettes)
      if (d >= 0 && at <= d) chosen = &bytes;
    uint8_t* side = av_packet_new_side_data(p, AV_PKT_DATA_PALETTE, chosen->size());
    if (side) std::memcpy(side, chosen->data(), chosen->size());
  }

  static int64_t frame_timestamp(const AVFrame* f) {
    return f->pts != kNoPts ? f->pts : f->best_effort_timestamp;
  }

  // Sends one packet and hands every frame the decoder outputs to on_frame (which returns false to
  // stop asking). Decoder errors on corrupt data are counted, never fatal.
  template <class OnFrame>
  void send_and_receive(AVPacket* p, OnFrame&& on_frame) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      int ret = avcodec_send_packet(dec.get(), p);
      if (ret == AVERROR(EAGAIN)) {  // output queue full: take frames out, then resend
        receive_all(on_frame);
        continue;
      }
      if (ret < 0 && ret != AVERROR_EOF) ++stats.decode_errors;
      break;
    }
    receive_all(on_frame);
  }
  template <class OnFrame>
  void receive_all(OnFrame&& on_frame) {
    for (;;) {
      int ret = avcodec_receive_frame(dec.get(), frame.get());
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return;
      if (ret < 0) {
        ++stats.decode_errors;
        return;
      }
      ff::FrameUnref unref{frame.get()};
      on_frame(frame.get());
    }
  }
  template <class OnFrame>
  void drain(OnFrame&& on_frame) {
    if (drained) return;
    avcodec_send_packet(dec.get(), nullptr);
    receive_all(on_frame);
    drained = true;
  }

  void invalidate() {
    if (pending) {
      av_packet_unref(pkt.get());
      pending = false;
    }
    state_valid = false;
  }

  void flush_decoder() {
    avcodec_flush_buffers(dec.get());
    drained = false;
    last_output = -1;
    seq_count = 0;
    ++run;
  }

  bool seek_to_start() {
    flush_decoder();
    invalidate();
    demux_eof = false;
    const PacketEntry& first = packets.front();
    int64_t ts = first.dts != kNoPts ? first.dts : first.pts;
    int ret = -1;
    if (ts != kNoPts) ret = av_seek_frame(fmt.get(), stream_index, ts, AVSEEK_FLAG_BACKWARD);
    if (ret < 0) ret = av_seek_frame(fmt.get(), -1, 0, AVSEEK_FLAG_BYTE);
    if (ret < 0) ret = avformat_seek_file(fmt.get(), stream_index, INT64_MIN, INT64_MIN, INT64_MAX, 0);
    return ret >= 0;
  }

  // Positions the demuxer so that the next packet fed is decode index `target` (a keyframe or 0),
  // with a flushed decoder. Seeks, then reads forward and drops packets until it recognises `target`;
  // if the seek landed beyond it, retries from earlier keyframes and finally from the stream start.
  void start_at(int64_t target) {
    flush_decoder();
    invalidate();
    ++stats.seeks;
    std::vector<int64_t> attempts;
    {
      auto it = std::upper_bound(keyframes.begin(), keyframes.end(), target);
      int tries = 0;
      while (it != keyframes.begin() && tries < 3) {
        --it;
        attempts.push_back(*it);
        ++tries;
      }
    }
    attempts.push_back(-1);  // the stream start
    for (int64_t from : attempts) {
      demux_eof = false;
      if (from < 0) {
        if (!seek_to_start()) continue;
      } else {
        const PacketEntry& e = packets[from];
        const int64_t ts = e.dts != kNoPts ? e.dts : e.pts;
        if (ts == kNoPts) continue;
        if (av_seek_frame(fmt.get(), stream_index, ts, AVSEEK_FLAG_BACKWARD) < 0) continue;
        avcodec_flush_buffers(dec.get());
      }
      // Read forward to `target`. Bounded: every read consumes input.
      for (;;) {
        if (read_video_packet() < 0) {
          demux_eof = true;
          break;
        }
        const int64_t d = identify(pkt.get());
        if (d == target) {
          pending = true;
          next_packet = target;
          state_valid = true;
          return;
        }
        av_packet_unref(pkt.get());
        if (d > target) break;  // landed beyond the target: try an earlier start
      }
    }
    // Every decode-time failure reads "could not decode ...", whatever stage gave up.
    throw DecodeError("could not decode " + where() + ": cannot seek to packet " + std::to_string(target) +
                             " (corrupt data?)");
  }

  // ---------------------------------------------------------------- conversion
  // Converts `f` (or the crop window of it) to RGB24 into dst (out_h x out_w x 3, tightly packed).
  void convert(const AVFrame* f, uint8_t* dst, const std::optional<CropBox>& crop, int out_h, int out_w) {
    bool full_range = f->color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat src_fmt = unjpeg(static_cast<AVPixelFormat>(f->format), &full_range);
    const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(src_fmt);
    if (!desc) throw DecodeError("unknown pixel format in " + where());
    const int fw = f->width, fh = f->height;
    CropBox box = crop ? *crop : CropBox{0, 0, fw, fh};
    if (crop && (fw != info.width || fh != info.height)) {
      // The stream changed size mid-way: scale the window to this frame's geometry.
      box.x = static_cast<int>(static_cast<int64_t>(box.x) * fw / info.width);
      box.y = static_cast<int>(static_cast<int64_t>(box.y) * fh / info.height);
      box.width = std::max(1, static_cast<int>(static_cast<int64_t>(box.width) * fw / info.width));
      box.height = std::max(1, static_cast<int>(static_cast<int64_t>(box.height) * fh / info.height));
      box.x = std::min(box.x, fw - 1);
      box.y = std::min(box.y, fh - 1);
      box.width = std::min(box.width, fw - box.x);
      box.height = std::min(box.height, fh - box.y);
    }
    const bool resize = out_w != box.width || out_h != box.height;
    const bool whole = box.x == 0 && box.y == 0 && box.width == fw && box.height == fh;
    const int colorspace = f->colorspace;

    if (resize) {
      // One bilinear swscale pass from the window to the output size. Chroma planes start at the
      // chroma sample covering the window's first pixel.
      const uint8_t* src[4] = {nullptr, nullptr, nullptr, nullptr};
      if (!whole && !window_pointers(f, desc, box.x, box.y, src)) {
        // Rare (formats without plain plane offsets, e.g. odd x in packed 4:2:2): convert the whole
        // frame, cut the window out, and scale that RGB window.
        convert_exact_full(f, src_fmt, full_range, colorspace);
        window_rgb_.resize(static_cast<size_t>(box.width) * box.height * 3);
        copy_rows(scratch.data(), scratch_stride_, box.x, box.y, box.width, box.height, window_rgb_.data());
        ff::Sws rgb_ctx(sws_getContext(box.width, box.height, AV_PIX_FMT_RGB24, out_w, out_h, AV_PIX_FMT_RGB24,
                                       SWS_BILINEAR, nullptr, nullptr, nullptr));
        if (!rgb_ctx) throw DecodeError("swscale: cannot resize the rgb24 window of " + where());
        const uint8_t* rgb_src[4] = {window_rgb_.data(), nullptr, nullptr, nullptr};
        const int rgb_stride[4] = {box.width * 3, 0, 0, 0};
        scale_to_dst(rgb_ctx.get(), rgb_src, rgb_stride, box.height, dst, out_w, out_h);
        ++stats.frames_converted;
        return;
      }
      if (whole) for (int i = 0; i < 4; ++i) src[i] = f->data[i];
      SwsContext* c = resize_ctx.get(src_fmt, box.width, box.height, out_w, out_h, SWS_BILINEAR, colorspace, full_range);
      scale_to_dst(c, src, f->linesize, box.height, dst, out_w, out_h);
      ++stats.frames_converted;
      return;
    }

    if (whole) {
      convert_exact_full(f, src_fmt, full_range, colorspace);
      copy_rows(scratch.data(), scratch_stride_, 0, 0, fw, fh, dst);
      ++stats.frames_converted;
      return;
    }

    // Exact crop: the result must equal the same window of a whole-frame conversion. swscale's
    // unscaled planar-YUV fast path converts each pixel from its own luma and its chroma pair only, so
    // a chroma-aligned window gives identical pixels; every other path filters across neighbours (or
    // depends on the whole frame's size), so it converts the whole frame and copies the window out.
    // (Verified for limited range only: full-range input takes a different converter for some widths.)
    const bool pointwise =
        (src_fmt == AV_PIX_FMT_YUV420P || src_fmt == AV_PIX_FMT_YUV422P) && (fh % 2 == 0) && !full_range;
    if (pointwise) {
      const int ax = box.x & ~1;
      const int ay = box.y & ~1;
      int aw = box.x + box.width - ax;
      int ah = box.y + box.height - ay;
      aw = std::min(aw + (aw & 1), fw - ax);
      ah = std::min(ah + (ah & 1), fh - ay);
      const uint8_t* src[4] = {nullptr, nullptr, nullptr, nullptr};
      window_pointers(f, desc, ax, ay, src);
      SwsContext* c = exact_ctx.get(src_fmt, aw, ah, aw, ah, SWS_BICUBIC, colorspace, full_range);
      ensure_scratch(aw, ah);
      uint8_t* sdst[4] = {scratch.data(), nullptr, nullptr, nullptr};
      int sstride[4] = {scratch_stride_, 0, 0, 0};
      sws_scale(c, src, f->linesize, 0, ah, sdst, sstride);
      copy_rows(scratch.data(), scratch_stride_, box.x - ax, box.y - ay, box.width, box.height, dst);
    } else {
      convert_exact_full(f, src_fmt, full_range, colorspace);
      copy_rows(scratch.data(), scratch_stride_, box.x, box.y, box.width, box.height, dst);
    }
    ++stats.frames_converted;
  }

  int scratch_stride_ = 0;
  std::vector<uint8_t> window_rgb_;

  void ensure_scratch(int w, int h) {
    // Padded rows: swscale's SIMD converters may write a few pixels past the row end.
    scratch_stride_ = FFALIGN(w * 3, 64) + 64;
    const size_t need = static_cast<size_t>(scratch_stride_) * (h + 2);
    if (scratch.size() < need) scratch.resize(need);
  }

  // Whole frame at its own size with the CLI's flags, into the padded scratch buffer.
  void convert_exact_full(const AVFrame* f, AVPixelFormat src_fmt, bool full_range, int colorspace) {
    SwsContext* c = exact_ctx.get(src_fmt, f->width, f->height, f->width, f->height, SWS_BICUBIC, colorspace, full_range);
    ensure_scratch(f->width, f->height);
    uint8_t* sdst[4] = {scratch.data(), nullptr, nullptr, nullptr};
    int sstride[4] = {scratch_stride_, 0, 0, 0};
    sws_scale(c, f->data, f->linesize, 0, f->height, sdst, sstride);
  }

  static void copy_rows(const uint8_t* src, int src_stride, int x, int y, int w, int h, uint8_t* dst) {
    const size_t row = static_cast<size_t>(w) * 3;
    for (int r = 0; r < h; ++r)
      std::memcpy(dst + r * row, src + static_cast<size_t>(y + r) * src_stride + static_cast<size_t>(x) * 3, row);
  }

  void scale_to_dst(SwsContext* c, const uint8_t* const src[4], const int src_stride[4], int src_h, uint8_t* dst,
                    int out_w, int out_h) {
    ensure_scratch(out_w, out_h);
    uint8_t* sdst[4] = {scratch.data(), nullptr, nullptr, nullptr};
    int sstride[4] = {scratch_stride_, 0, 0, 0};
    sws_scale(c, src, src_stride, 0, src_h, sdst, sstride);
    copy_rows(scratch.data(), scratch_stride_, 0, 0, out_w, out_h, dst);
  }

  // Plane pointers of `f` offset to pixel (x, y). Returns false for formats without simple plane
  // offsets (bitstream or hardware formats).
  static bool window_pointers(const AVFrame* f, const AVPixFmtDescriptor* desc, int x, int y, const uint8_t* src[4]) {
    if (desc->flags & (AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_HWACCEL)) return false;
    const bool pal = desc->flags & AV_PIX_FMT_FLAG_PAL;
    const bool rgb = desc->flags & AV_PIX_FMT_FLAG_RGB;
    int step[4] = {0, 0, 0, 0};
    for (int c = 0; c < desc->nb_components; ++c) {
      const AVComponentDescriptor& comp = desc->comp[c];
      if (step[comp.plane] == 0) step[comp.plane] = comp.step;
    }
    for (int p = 0; p < 4; ++p) {
      if (!f->data[p]) continue;
      if (pal && p == 1) {
        src[p] = f->data[p];
        continue;
      }
      const bool chroma = !rgb && (p == 1 || p == 2);
      const int px = chroma ? (x >> desc->log2_chroma_w) : x;
      const int py = chroma ? (y >> desc->log2_chroma_h) : y;
      src[p] = f->data[p] + static_cast<ptrdiff_t>(py) * f->linesize[p] + static_cast<ptrdiff_t>(px) * step[p];
    }
    // Packed formats with horizontally subsampled chroma (e.g. yuyv422) need even x.
    if (!(desc->flags & AV_PIX_FMT_FLAG_PLANAR) && desc->log2_chroma_w && (x & 1)) return false;
    return true;
  }

  // ---------------------------------------------------------------- get_frames
  std::pair<int, int> output_size(const std::optional<CropBox>& crop,
                                  const std::optional<std::pair<int, int>>& out_size) const {
    if (crop) {
      const CropBox& b = *crop;
      // In 64 bits: x + width of two ints can overflow (and then pass the check).
      if (b.width <= 0 || b.height <= 0 || b.x < 0 || b.y < 0 || int64_t{b.x} + b.width > info.width ||
          int64_t{b.y} + b.height > info.height)
        throw std::invalid_argument("crop (x=" + std::to_string(b.x) + ", y=" + std::to_string(b.y) + ", width=" +
                                    std::to_string(b.width) + ", height=" + std::to_string(b.height) +
                                    ") is not inside the " + std::to_string(info.width) + "x" +
                                    std::to_string(info.height) + " frame of " + where());
    }
    int out_h = crop ? crop->height : info.height;
    int out_w = crop ? crop->width : info.width;
    if (out_size) {
      if (out_size->first <= 0 || out_size->second <= 0)
        throw std::invalid_argument("output size must be positive, got (" + std::to_string(out_size->first) + ", " +
                                    std::to_string(out_size->second) + ")");
      out_h = out_size->first;
      out_w = out_size->second;
    }
    return {out_h, out_w};
  }

  void get_frames(const std::vector<int64_t>& indices, uint8_t* out, const std::optional<CropBox>& crop,
                  const std::optional<std::pair<int, int>>& out_size) {
    const int64_t n = info.num_frames;
    for (int64_t i : indices)
      if (i < 0 || i >= n)
        throw std::out_of_range("frame index " + std::to_string(i) + " out of range [0, " + std::to_string(n) +
                                ") of " + where());
    const std::pair<int, int> dims = output_size(crop, out_size);
    const int out_h = dims.first, out_w = dims.second;
    if (indices.empty()) return;
    const size_t frame_bytes = static_cast<size_t>(out_h) * out_w * 3;

    // Targets: sorted unique presentation indices; slot_of[k] = first output position of targets[k].
    std::vector<int64_t> targets(indices.begin(), indices.end());
    std::sort(targets.begin(), targets.end());
    targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
    std::vector<int64_t> first_slot(targets.size(), -1);
    for (size_t s = 0; s < indices.size(); ++s) {
      const size_t k = std::lower_bound(targets.begin(), targets.end(), indices[s]) - targets.begin();
      if (first_slot[k] < 0) first_slot[k] = static_cast<int64_t>(s);
    }
    std::vector<char> done(targets.size(), 0);
    std::vector<int64_t> failed;

    auto emit = [&](int64_t t, const AVFrame* f) {
      const size_t k = std::lower_bound(targets.begin(), targets.end(), t) - targets.begin();
      convert(f, out + first_slot[k] * frame_bytes, crop, out_h, out_w);
    };
    if (sequential) {
      sweep_sequential(targets, done, failed, emit);
    } else {
      sweep(targets, done, failed, emit, 0);
      // A frame can be missing from a run that starts at a keyframe yet decode from an earlier one: an
      // H.264 open-GOP recovery point counts as recovered for the frames after it only once a frame
      // has left the decoder the regular way, which a run's final drain bypasses. Retry such frames
      // from the previous keyframe, then from the stream start (what the ffmpeg CLI does); only then
      // are they reported lost (corrupt data).
      for (int64_t step_back : {int64_t{1}, std::numeric_limits<int64_t>::max()}) {
        if (failed.empty()) break;
        std::vector<int64_t> retry;
        retry.swap(failed);
        std::sort(retry.begin(), retry.end());
        std::vector<char> retry_done(retry.size(), 0);
        invalidate();
        sweep(retry, retry_done, failed, emit, step_back);
      }
    }

    if (!failed.empty()) {
      std::sort(failed.begin(), failed.end());
      std::ostringstream msg;
      msg << "could not decode frame";
      if (failed.size() > 1) msg << "s";
      for (size_t i = 0; i < failed.size() && i < 10; ++i) msg << (i ? ", " : " ") << failed[i];
      if (failed.size() > 10) msg << ", ...";
      msg << " of " << where() << " (" << stats.decode_errors << " decoder errors so far: corrupt data?)";
      throw DecodeError(msg.str());
    }
    // Duplicates: copy from the first slot that received the frame.
    for (size_t s = 0; s < indices.size(); ++s) {
      const size_t k = std::lower_bound(targets.begin(), targets.end(), indices[s]) - targets.begin();
      if (static_cast<size_t>(first_slot[k]) != s)
        std::memcpy(out + s * frame_bytes, out + first_slot[k] * frame_bytes, frame_bytes);
    }
  }

  // Timestamp mode: one forward sweep over the sorted targets.
  //
  // A "run" is the decoder's life between two flushes: it starts at a keyframe (start_at) and feeds
  // packets in decode order. Per packet we remember, for the current run, whether it was fed normally
  // (fed_run) or with the non-reference skip (skipped_run), so a target is declared lost only when its
  // packet was fed normally in this run and a later frame (or the end of the run) came out first.
  //
  // step_back > 0 starts every run that many keyframes earlier than needed (retries; see get_frames).
  template <class Emit>
  void sweep(const std::vector<int64_t>& targets, std::vector<char>& done, std::vector<int64_t>& failed, Emit&& emit,
             int64_t step_back) {
    auto start_of = [&](int64_t t) -> int64_t {
      const int64_t start = frame_start[t];
      if (step_back == 0 || start == 0) return start;
      const int64_t k = std::lower_bound(keyframes.begin(), keyframes.end(), start) - keyframes.begin();
      if (step_back >= k) return 0;
      return keyframes[k - step_back];
    };
    // need[d] = 1 if the packet at decode index d yields a target frame.
    std::vector<char> need(packets.size(), 0);
    for (int64_t t : targets) need[frame_packet[t]] = 1;
    if (skipped_run.size() != packets.size()) {
      skipped_run.assign(packets.size(), 0);
      fed_run.assign(packets.size(), 0);
    }
    size_t next = 0;  // first target not yet done (or failed)
    auto advance = [&] {
      while (next < targets.size() && done[next]) ++next;
    };
    auto fed_normally = [&](int64_t t) { return fed_run[frame_packet[t]] == run; };
    auto fail = [&](size_t k) {
      done[k] = 1;
      failed.push_back(targets[k]);
    };
    auto on_frame = [&](AVFrame* f) {
      ++stats.frames_decoded;
      const int64_t ts = frame_timestamp(f);
      auto it = std::lower_bound(frame_pts.begin(), frame_pts.end(), ts);
      if (it == frame_pts.end() || *it != ts) return true;  // not a frame of the index (e.g. a leading picture)
      const int64_t q = it - frame_pts.begin();
      last_output = q;
      // Frames come out in presentation order: a target before q fed normally in this run is lost.
      while (next < targets.size() && targets[next] < q && !done[next] && fed_normally(targets[next])) {
        fail(next);
        advance();
      }
      auto tk = std::lower_bound(targets.begin() + next, targets.end(), q);
      if (tk != targets.end() && *tk == q) {
        const size_t k = tk - targets.begin();
        if (!done[k]) {
          emit(q, f);
          done[k] = 1;
        }
      }
      advance();
      return true;
    };
    // Ends the run: drain the decoder so every frame it holds comes out now, without feeding it more
    // packets. Targets fed normally in this run that did not come out are lost.
    auto end_run = [&] {
      drain(on_frame);
      state_valid = false;
      for (size_t k = next; k < targets.size(); ++k)
        if (!done[k] && fed_normally(targets[k])) fail(k);
      advance();
    };
    // True while some pending target is reachable in this run (its keyframe was fed) but its packet is
    // still ahead; once none is, the run has nothing left to give.
    auto run_needs_more = [&] {
      for (size_t k = next; k < targets.size(); ++k) {
        if (done[k]) continue;
        const int64_t t = targets[k];
        if (start_of(t) < next_packet && frame_packet[t] >= next_packet) return true;
      }
      return false;
    };

    advance();
    while (next < targets.size()) {
      const int64_t p = targets[next];
      const int64_t pk = frame_packet[p];
      // Decode forward (no seek) when the decoder already holds p's start keyframe, p has not been
      // output yet, and p's packet is either still ahead or was fed normally.
      const bool can_continue = state_valid && !drained && start_of(p) < next_packet && p > last_output &&
                                (pk >= next_packet || skipped_run[pk] != run);
      if (!can_continue) start_at(start_of(p));
      // Bounds the packets fed in one run (each packet is read at most once before EOF).
      int64_t budget = static_cast<int64_t>(packets.size()) + 64;
      while (next < targets.size() && targets[next] == p && !done[next]) {
        if (--budget < 0) throw DecodeError("could not decode " + where() + ": the decoder made no progress");
        if (!pending) {
          if (!run_needs_more()) {
            end_run();
          } else if (demux_eof || read_video_packet() < 0) {
            demux_eof = true;
            end_run();
          } else {
            const int64_t d = identify(pkt.get());
            if (d >= 0 && d != next_packet) state_valid = false;  // demuxer skipped or repeated: resync later
            if (d >= 0) next_packet = d;
            pending = true;
          }
          if (!pending) {
            // The run ended without p: this run started at or before p's keyframe, so p was fed (and
            // not output) or the stream ended first. Either way it is lost; never retry endlessly.
            if (next < targets.size() && targets[next] == p && !done[next]) {
              fail(next);
              advance();
            }
            break;
          }
        }
        pending = false;
        ff::PacketUnref unref{pkt.get()};
        const int64_t d = next_packet;
        const bool known = d < static_cast<int64_t>(need.size());
        const bool useful = known && need[d];
        ++next_packet;
        if (!useful && known) skipped_run[d] = run;
        if (!useful && (pkt->flags & AV_PKT_FLAG_DISPOSABLE)) {
          ++stats.packets_skipped;  // the container says nothing references it: never decode it
          continue;
        }
        if (useful) fed_run[d] = run;
        dec->skip_frame = useful ? AVDISCARD_DEFAULT : AVDISCARD_NONREF;
        ++stats.packets_sent;
        if (!useful) ++stats.nonref_skip_sent;
        attach_palette(pkt.get(), d);
        send_and_receive(pkt.get(), on_frame);
      }
    }
    dec->skip_frame = AVDISCARD_DEFAULT;
  }

  // Sequential mode: frames are numbered by output order from the stream start.
  template <class Emit>
  void sweep_sequential(const std::vector<int64_t>& targets, std::vector<char>& done, std::vector<int64_t>& failed,
                        Emit&& emit) {
    size_t next = 0;
    auto on_frame = [&](AVFrame* f) {
      ++stats.frames_decoded;
      const int64_t q = seq_count++;
      last_output = q;
      if (next < targets.size() && targets[next] == q) {
        emit(q, f);
        done[next] = 1;
        ++next;
      }
      return true;
    };
    if (!state_valid || drained || targets.front() <= last_output) {
      if (!seek_to_start()) throw DecodeError("cannot rewind " + where() + " to decode it");
      state_valid = true;
    }
    while (next < targets.size()) {
      if (read_video_packet() < 0) {
        drain(on_frame);
        state_valid = false;
        break;
      }
      ff::PacketUnref unref{pkt.get()};
      ++stats.packets_sent;
      attach_palette(pkt.get(), -1);
      send_and_receive(pkt.get(), on_frame);
    }
    for (size_t k = next; k < targets.size(); ++k) failed.push_back(targets[k]);
  }
};

// ------------------------------------------------------------------ public API
VideoReader::VideoReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

VideoReader::VideoReader(const std::string& path, int num_threads) : impl_(std::make_unique<Impl>()) {
  impl_->name = path;
  impl_->num_threads = num_threads;
  impl_->open(path);
}

VideoReader VideoReader::from_bytes(std::string data, int num_threads) {
  auto impl = std::make_unique<Impl>();
  impl->name = "<bytes>";
  impl->num_threads = num_threads;
  if (data.empty()) throw DecodeError("cannot open video <bytes>: the buffer is empty");
  impl->memory = std::make_unique<MemorySource>();
  impl->memory->data = std::move(data);
  constexpr int kBufferSize = 1 << 16;
  auto* buffer = static_cast<uint8_t*>(av_malloc(kBufferSize));
  if (!buffer) throw std::bad_alloc();
  AVIOContext* io = avio_alloc_context(buffer, kBufferSize, 0, impl->memory.get(), &MemorySource::read, nullptr,
                                       &MemorySource::seek);
  if (!io) {
    av_free(buffer);
    throw std::bad_alloc();
  }
  impl->io.reset(io);
  impl->open(std::string());
  return VideoReader(std::move(impl));
}

VideoReader::VideoReader(VideoReader&&) noexcept = default;
VideoReader& VideoReader::operator=(VideoReader&&) noexcept = default;
VideoReader::~VideoReader() = default;

const VideoInfo& VideoReader::info() const { return impl_->info; }
const std::vector<double>& VideoReader::frame_pts_seconds() const { return impl_->frame_pts_seconds; }
const std::string& VideoReader::source_name() const { return impl_->name; }
const VideoReader::Stats& VideoReader::stats() const { return impl_->stats; }

void VideoReader::get_frames(const std::vector<int64_t>& indices, uint8_t* out, std::optional<CropBox> crop,
                             std::optional<std::pair<int, int>> out_size) {
  impl_->get_frames(indices, out, crop, out_size);
}

std::pair<int, int> VideoReader::output_size(const std::optional<CropBox>& crop,
                                             const std::optional<std::pair<int, int>>& out_size) const {
  return impl_->output_size(crop, out_size);
}

}  // namespace cvrl
