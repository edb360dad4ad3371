// VideoReader: frame-exact random access to the frames of one video, by presentation index.
//
// Frame i is the i-th frame in presentation order, exactly what
// `ffmpeg -i X -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -` yields. The reader builds a packet
// index on open (demux only, no decode) and then counts the decodable frames once, so `num_frames` is
// reality rather than a header guess, and every loop is bounded by the index.
//
// Threading contract: one reader per thread. A reader is not safe to use from two threads at once;
// separate readers share nothing and may run concurrently (the bindings release the GIL).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cvrl {

struct VideoInfo {
  int64_t num_frames = 0;         // frames that actually decode (presentation order), never a header guess:
                                  // the packets the demuxer really delivers (minus those the decoder is told
                                  // to discard and leading pictures that cannot decode); a packet whose data is
                                  // corrupt still counts, and get_frames reports it as an error
  double fps = 0.0;               // average rate (stream avg_frame_rate, else num_frames / duration)
  double duration_seconds = 0.0;  // span of the decodable frames' timestamps plus one frame duration
  int width = 0, height = 0;      // coded display size, before rotation
  std::string codec;              // FFmpeg codec name, e.g. "h264"
  int rotation = 0;               // degrees from the display matrix (0, 90, 180, 270), counter-clockwise:
                                  // np.rot90(frame, rotation // 90) is the frame as displayed
};

// A window of source pixels: rows [y, y + height), cols [x, x + width).
struct CropBox {
  int x, y, width, height;
};

class VideoReader {
 public:
  // Opens `path` and indexes it. Throws DecodeError (errors.h: cannot open, no video stream, unsupported
  // codec, no decodable frame), naming the file and FFmpeg's reason.
  explicit VideoReader(const std::string& path, int num_threads = 1);
  // Same, reading from an in-memory copy of a whole file (custom AVIOContext).
  static VideoReader from_bytes(std::string data, int num_threads = 1);

  VideoReader(VideoReader&&) noexcept;
  VideoReader& operator=(VideoReader&&) noexcept;
  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;
  ~VideoReader();

  const VideoInfo& info() const;
  // Presentation timestamp (seconds) of every decodable frame i in [0, num_frames), ascending.
  const std::vector<double>& frame_pts_seconds() const;
  // Name of the source for error messages (the path, or "<bytes>").
  const std::string& source_name() const;

  // Decodes frames by presentation index (any order, duplicates allowed) into `out`, a caller-owned
  // buffer of indices.size() * out_h * out_w * 3 bytes (RGB24, HWC), in the requested order.
  // crop: only this window of each frame is colour-converted (default: whole frame); it must lie inside
  //   the frame (std::invalid_argument otherwise).
  // out_size {h, w}: resize during conversion (one swscale bilinear pass); default: crop (or frame) size.
  // Throws std::out_of_range naming the index and the valid range [0, num_frames), DecodeError naming the
  // frames that could not be decoded (corrupt data).
  // Each needed frame is decoded at most once per call; frames that are not returned are never
  // colour-converted.
  void get_frames(const std::vector<int64_t>& indices, uint8_t* out,
                  std::optional<CropBox> crop = std::nullopt,
                  std::optional<std::pair<int, int>> out_size = std::nullopt);
  // The {height, width} of each frame get_frames writes for these arguments, after the same checks
  // (std::invalid_argument for a crop outside the frame or a non-positive size): a caller sizes `out`
  // from this, never by repeating the rule.
  std::pair<int, int> output_size(const std::optional<CropBox>& crop,
                                  const std::optional<std::pair<int, int>>& out_size) const;

  // Decode statistics of the reader's lifetime (for tests and benchmarks).
  struct Stats {
    int64_t seeks = 0;             // av_seek_frame calls made by get_frames
    int64_t packets_sent = 0;      // packets handed to the decoder by get_frames
    int64_t packets_skipped = 0;   // packets flagged disposable by the container, never sent to the decoder
    int64_t nonref_skip_sent = 0;  // packets sent with skip_frame = AVDISCARD_NONREF (frame not requested)
    int64_t frames_decoded = 0;    // frames received from the decoder by get_frames
    int64_t frames_converted = 0;  // frames colour-converted (= frames returned, before duplication)
    int64_t decode_errors = 0;     // packets the decoder rejected (corrupt data)
  };
  const Stats& stats() const;

 private:
  struct Impl;
  explicit VideoReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cvrl
