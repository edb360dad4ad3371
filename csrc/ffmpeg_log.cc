#include "ffmpeg_log.h"

#include <atomic>
#include <stdexcept>
#include <string>

extern "C" {
#include <libavutil/log.h>
}

namespace cvrl {
namespace {
std::atomic<bool> caller_set_level{false};
}  // namespace

int set_ffmpeg_log_level(int level) {
  if (level < AV_LOG_QUIET || level > AV_LOG_TRACE) {
    throw std::invalid_argument("FFmpeg log level " + std::to_string(level) + " must be in [" +
                                std::to_string(AV_LOG_QUIET) + ", " + std::to_string(AV_LOG_TRACE) + "]");
  }
  const int previous = av_log_get_level();
  av_log_set_level(level);
  caller_set_level.store(true, std::memory_order_relaxed);
  return previous;
}

int ffmpeg_log_level() { return av_log_get_level(); }

void restore_ffmpeg_log_level(int level) {
  set_ffmpeg_log_level(level);  // validates
  caller_set_level.store(false, std::memory_order_relaxed);
}

int engine_log_offset() { return caller_set_level.load(std::memory_order_relaxed) ? 0 : kQuietLogOffset; }

}  // namespace cvrl
