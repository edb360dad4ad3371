#include "tfrecord.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "errors.h"

namespace cvrl {

namespace {

struct Fd {  // RAII file descriptor
  int fd = -1;
  explicit Fd(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd < 0) throw DecodeError("cannot open TFRecord file " + path + ": " + std::strerror(errno));
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool read_exact(int fd, char* out, size_t n, int64_t offset) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, out, n, offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    n -= static_cast<size_t>(got);
    offset += got;
  }
  return true;
}

uint32_t crc32c(const char* data, size_t n) {
  static const auto table = [] {
    struct T { uint32_t v[256]; } t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t.v[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) crc = table.v[(crc ^ static_cast<uint8_t>(data[i])) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

// ---- protobuf wire format ----
struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string* what;
  [[noreturn]] void fail(const char* why) const {
    throw DecodeError("malformed SequenceExample (" + *what + "): " + why);
  }
  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) fail("truncated varint");
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint too long");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end - p)) fail("length runs past the end");
    std::string_view out(reinterpret_cast<const char*>(p), n);
    p += n;
    return out;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: if (end - p < 8) fail("truncated fixed64"); p += 8; break;
      case 2: bytes(); break;
      case 5: if (end - p < 4) fail("truncated fixed32"); p += 4; break;
      default: fail("unsupported wire type");
    }
  }
  Reader sub(std::string_view s) const {
    return Reader{reinterpret_cast<const uint8_t*>(s.data()), reinterpret_cast<const uint8_t*>(s.data()) + s.size(),
                  what};
  }
};

// Calls fn(key, value) for each entry of a proto map<string, Message> field 1 of `msg`.
template <class Fn>
void for_each_map_entry(Reader msg, Fn fn) {
  while (!msg.done()) {
    const uint64_t tag = msg.varint();
    if (tag >> 3 == 1 && (tag & 7) == 2) {
      Reader entry = msg.sub(msg.bytes());
      std::string_view key, value;
      while (!entry.done()) {
        const uint64_t t = entry.varint();
        if (t >> 3 == 1 && (t & 7) == 2) key = entry.bytes();
        else if (t >> 3 == 2 && (t & 7) == 2) value = entry.bytes();
        else entry.skip(static_cast<int>(t & 7));
      }
      fn(key, msg.sub(value));
    } else {
      msg.skip(static_cast<int>(tag & 7));
    }
  }
}

// Feature: oneof {1: BytesList, 2: FloatList, 3: Int64List}; each list's values are field 1.
void feature_bytes(Reader feature, std::vector<std::string_view>* out) {
  while (!feature.done()) {
    const uint64_t tag = feature.varint();
    if (tag >> 3 == 1 && (tag & 7) == 2) {
      Reader list = feature.sub(feature.bytes());
      while (!list.done()) {
        const uint64_t t = list.varint();
        if (t >> 3 == 1 && (t & 7) == 2) out->push_back(list.bytes());
        else list.skip(static_cast<int>(t & 7));
      }
    } else {
      feature.skip(static_cast<int>(tag & 7));
    }
  }
}

void feature_int64(Reader feature, std::vector<int64_t>* out) {
  while (!feature.done()) {
    const uint64_t tag = feature.varint();
    if (tag >> 3 == 3 && (tag & 7) == 2) {
      Reader list = feature.sub(feature.bytes());
      while (!list.done()) {
        const uint64_t t = list.varint();
        if (t >> 3 == 1 && (t & 7) == 2) {  // packed
          Reader packed = list.sub(list.bytes());
          while (!packed.done()) out->push_back(static_cast<int64_t>(packed.varint()));
        } else if (t >> 3 == 1 && (t & 7) == 0) {
          out->push_back(static_cast<int64_t>(list.varint()));
        } else {
          list.skip(static_cast<int>(t & 7));
        }
      }
    } else {
      feature.skip(static_cast<int>(tag & 7));
    }
  }
}

void feature_float(Reader feature, std::vector<float>* out) {
  while (!feature.done()) {
    const uint64_t tag = feature.varint();
    if (tag >> 3 == 2 && (tag & 7) == 2) {
      Reader list = feature.sub(feature.bytes());
      while (!list.done()) {
        const uint64_t t = list.varint();
        if (t >> 3 == 1 && (t & 7) == 2) {  // packed
          std::string_view raw = list.bytes();
          for (size_t i = 0; i + 4 <= raw.size(); i += 4) {
            float f;
            std::memcpy(&f, raw.data() + i, 4);
            out->push_back(f);
          }
        } else if (t >> 3 == 1 && (t & 7) == 5) {
          if (list.end - list.p < 4) list.fail("truncated float");
          float f;
          std::memcpy(&f, list.p, 4);
          list.p += 4;
          out->push_back(f);
        } else {
          list.skip(static_cast<int>(t & 7));
        }
      }
    } else {
      feature.skip(static_cast<int>(tag & 7));
    }
  }
}

}  // namespace

std::vector<double> record_frame_times(const VideoRecord& record) {
  std::vector<double> times(record.frames.size());
  for (size_t i = 0; i < times.size(); ++i)
    times[i] = record.fps > 0.0 ? static_cast<double>(i) / record.fps : static_cast<double>(i);
  return times;
}

uint32_t tfrecord_masked_crc(const char* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

std::vector<RecordRef> index_tfrecord(const std::string& path) {
  Fd file(path);
  const off_t size = ::lseek(file.fd, 0, SEEK_END);
  if (size < 0) throw DecodeError("cannot seek TFRecord file " + path + ": " + std::strerror(errno));
  std::vector<RecordRef> refs;
  int64_t offset = 0;
  while (offset < size) {
    char header[12];
    if (size - offset < 12 || !read_exact(file.fd, header, 12, offset)) {
      throw DecodeError("truncated TFRecord header in " + path + " at byte " + std::to_string(offset));
    }
    uint64_t length;
    uint32_t length_crc;
    std::memcpy(&length, header, 8);
    std::memcpy(&length_crc, header + 8, 4);
    if (tfrecord_masked_crc(header, 8) != length_crc) {
      throw DecodeError("corrupt TFRecord length CRC in " + path + " at byte " + std::to_string(offset));
    }
    // size - offset >= 12 here; with fewer than 16 bytes left the difference below is negative, and
    // as uint64 it was huge: a payload cut inside its last 4 bytes passed the check.
    if (size - offset < 16 || length > static_cast<uint64_t>(size - offset - 16)) {
      throw DecodeError("truncated TFRecord payload in " + path + " at byte " + std::to_string(offset));
    }
    refs.push_back({offset + 12, static_cast<int64_t>(length)});
    offset += 12 + static_cast<int64_t>(length) + 4;
  }
  return refs;
}

std::string read_tfrecord(const std::string& path, const RecordRef& ref) {
  // The reference comes from the caller (index_tfrecord's output, normally): a negative field is a bad
  // argument, not bad data.
  if (ref.offset < 0 || ref.length < 0) {
    throw std::invalid_argument("read_tfrecord: record offset " + std::to_string(ref.offset) + " and length " +
                                std::to_string(ref.length) + " of " + path + " must be >= 0");
  }
  Fd file(path);
  std::string data(static_cast<size_t>(ref.length), '\0');
  if (!read_exact(file.fd, data.data(), data.size(), ref.offset)) {
    throw DecodeError("cannot read TFRecord payload of " + std::to_string(ref.length) + " bytes at byte " +
                                std::to_string(ref.offset) + " of " + path);
  }
  return data;
}

VideoRecord parse_video_record(std::string_view payload, const std::string& what) {
  VideoRecord out;
  Reader top{reinterpret_cast<const uint8_t*>(payload.data()),
             reinterpret_cast<const uint8_t*>(payload.data()) + payload.size(), &what};
  while (!top.done()) {
    const uint64_t tag = top.varint();
    const int field = static_cast<int>(tag >> 3);
    if (field == 1 && (tag & 7) == 2) {  // context: Features
      for_each_map_entry(top.sub(top.bytes()), [&](std::string_view key, Reader feature) {
        if (key == "clip/label/index") feature_int64(feature, &out.labels);
        if (key == "video/fps") {
          std::vector<float> f;
          feature_float(feature, &f);
          if (!f.empty()) out.fps = f[0];
        }
      });
    } else if (field == 2 && (tag & 7) == 2) {  // feature_lists: FeatureLists
      for_each_map_entry(top.sub(top.bytes()), [&](std::string_view key, Reader list) {
        if (key != "image/encoded") return;
        while (!list.done()) {  // FeatureList: repeated Feature feature = 1
          const uint64_t t = list.varint();
          if (t >> 3 == 1 && (t & 7) == 2) {
            std::vector<std::string_view> one;
            feature_bytes(list.sub(list.bytes()), &one);
            if (one.size() != 1) list.fail("each image/encoded step must hold exactly one JPEG");
            out.frames.push_back(one[0]);
          } else {
            list.skip(static_cast<int>(t & 7));
          }
        }
      });
    } else {
      top.skip(static_cast<int>(tag & 7));
    }
  }
  if (out.frames.empty()) {
    throw DecodeError("SequenceExample (" + what + ") has no frames in feature_lists['image/encoded']");
  }
  return out;
}

}  // namespace cvrl
