// FFmpeg's logging, without taking it over for the whole process.
//
// av_log_set_level is process-wide: setting it silences (or floods) every other FFmpeg user in the
// process (PyAV, OpenCV, torchvision, ...). So the engine never calls it unless asked: by default it
// only demotes the messages of its *own* decoder contexts (AVCodecContext::log_level_offset, which FFmpeg
// adds to the level of every message logged on that context) below FFmpeg's default level, so a corrupt
// file's per-macroblock complaints do not reach stderr. set_ffmpeg_log_level is the explicit opt-in: it
// sets FFmpeg's process-wide level, and from then on the engine's contexts log at their real level, so
// the caller sees exactly what FFmpeg says at the level they chose.
#pragma once

namespace cvrl {

// Sets av_log_set_level (AV_LOG_QUIET -8 ... AV_LOG_TRACE 56) and returns the previous level.
// std::invalid_argument for a level outside that range.
int set_ffmpeg_log_level(int level);
int ffmpeg_log_level();
// Undoes set_ffmpeg_log_level: sets the level (the one it returned) and gives the engine's contexts their
// default offset again. For a caller that sets the level for a while (the CLI's main, tests).
void restore_ffmpeg_log_level(int level);

// log_level_offset for the engine's codec contexts: kQuietLogOffset until set_ffmpeg_log_level was
// called, then 0. +32 moves AV_LOG_FATAL (8) to 40 (verbose) and AV_LOG_ERROR (16) to 48 (debug): hidden
// at FFmpeg's default level (info, 32).
constexpr int kQuietLogOffset = 32;
int engine_log_offset();

}  // namespace cvrl
