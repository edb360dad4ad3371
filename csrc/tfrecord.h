// Reference-format input (cvrl.md §7.1): TFRecord files of tf.train.SequenceExample, one video per
// record, feature_lists['image/encoded'] = one JPEG per frame, context['clip/label/index'] = labels.
// A minimal protobuf wire-format reader: only the fields above are decoded, the rest is skipped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cvrl {

struct RecordRef {
  int64_t offset = 0;  // byte offset of the record's payload in the file
  int64_t length = 0;  // payload bytes
};

// Scans the record framing (length, masked CRC-32C of the length, payload, payload CRC) without
// reading payloads. Throws DecodeError (errors.h) naming the file and byte offset of a truncated or
// corrupt header, or when the file cannot be read.
std::vector<RecordRef> index_tfrecord(const std::string& path);

// Reads one payload (pread; safe from several threads). DecodeError when it cannot be read.
std::string read_tfrecord(const std::string& path, const RecordRef& ref);

struct VideoRecord {
  std::vector<std::string_view> frames;  // JPEG bytes of every frame, in order (views into the payload)
  std::vector<int64_t> labels;           // context 'clip/label/index'
  double fps = 0.0;                      // context 'video/fps' if present (written by our data prep)
};

// Presentation times of a record's stored frames: i / fps when the record carries its rate (records
// written by our data prep), else i (reference records are taken as stored, one frame per index).
std::vector<double> record_frame_times(const VideoRecord& record);

// Parses a SequenceExample payload. Throws DecodeError naming `what` on malformed data or when
// 'image/encoded' is missing or empty.
VideoRecord parse_video_record(std::string_view payload, const std::string& what);

// Masked CRC-32C as used by TFRecord framing (exposed for tests).
uint32_t tfrecord_masked_crc(const char* data, size_t n);

}  // namespace cvrl
