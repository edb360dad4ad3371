// How the C++ pair loader scales with threads, without Python: a driver over the engine (csrc/) that
// times the PairLoader (decode + full CVRL augmentation of both views) and decode alone at several
// thread counts, on any machine the engine builds on. Built by benchmarks/scaling/build.sh (a static
// binary that needs no FFmpeg or libjpeg-turbo installed), so it can run on a lent GPU server whose
// image has neither; see benchmarks/README.md, "Scaling with threads".
//
//   loader_scaling --label g16 --threads 1,2,4,8,16 [--mode both|pairs|decode|augment] [--batch 32]
//                  [--pairs-per-thread 32] [--min-pairs 64] [--seed 0] [--augment-on both|host|device] FILE...
//
// FILE: video files, or TFRecord files of the reference format (every record is one source).
// Prints one tab-separated line per (mode, threads): pairs/s wall, pairs per CPU-second (process CPU
// time of all threads, getrusage), and for `pairs` the share of worker time in decode vs augment.
//   pairs:  PairLoader, batch --batch, prefetch max(2, ceil(3 x threads / batch)) batches; the first
//           ceil(threads / batch) + 1 batches are a warm-up and are not timed. Mode "pairs" runs the
//           colour stage on the host (augment_on=host), "pairs_device" leaves it to the accelerator
//           (augment_on=device: decode, crop, resize, flip only); --augment-on picks one or both.
//   decode: `threads` workers decode the frames each pair needs (union of both clips, full frame, RGB24),
//           taking samples one at a time: VideoReader::get_frames, or decode_jpeg_frames.
//   augment: one thread, no files: the cost of each augmentation op on a synthetic clip.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "augment.h"
#include "build_info.h"
#include "jpeg_crop.h"
#include "jpeg_decode.h"
#include "pair_loader.h"
#include "sampling.h"
#include "tfrecord.h"
#include "video_reader.h"

namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Meter {  // wall and process CPU seconds since construction
  Clock::time_point wall0 = Clock::now();
  double cpu0 = cpu_seconds();
  double wall() const { return std::chrono::duration<double>(Clock::now() - wall0).count(); }
  double cpu() const { return cpu_seconds() - cpu0; }
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<cvrl::SourceRef> resolve(const std::vector<std::string>& files) {
  std::vector<cvrl::SourceRef> out;
  for (const std::string& f : files) {
    if (ends_with(f, ".tfrecord")) {
      for (const cvrl::RecordRef& r : cvrl::index_tfrecord(f)) {
        cvrl::SourceRef s;
        s.path = f;
        s.record_offset = r.offset;
        s.record_length = r.length;
        out.push_back(s);
      }
    } else {
      cvrl::SourceRef s;
      s.path = f;
      out.push_back(s);
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].id = static_cast<int64_t>(i);
  return out;
}

// Full-frame decode of one sample's frames; returns the bytes produced (kept so nothing is optimised away).
size_t decode_sample(const cvrl::SourceRef& src, const cvrl::AugmentSettings& s, uint64_t seed, uint64_t key,
                     std::vector<uint8_t>& buf) {
  if (src.record_offset >= 0) {
    const std::string payload = cvrl::read_tfrecord(src.path, cvrl::RecordRef{src.record_offset, src.record_length});
    const cvrl::VideoRecord rec = cvrl::parse_video_record(payload, src.name());
    int h = 0, w = 0;
    cvrl::jpeg_frame_size(rec.frames[0], src.name(), &h, &w);
    const cvrl::PairPlan plan = cvrl::plan_pair(cvrl::record_frame_times(rec), rec.fps > 0.0, h, w, s, seed, 0, key);
    std::vector<std::string_view> jpegs;
    for (int64_t f : plan.unique_frames) jpegs.push_back(rec.frames[static_cast<size_t>(f)]);
    buf = cvrl::decode_jpeg_frames(jpegs, &h, &w);
    return buf.size();
  }
  cvrl::VideoReader reader(src.path, 1);
  const cvrl::VideoInfo& info = reader.info();
  const std::vector<int64_t> frames =
      cvrl::plan_pair(reader.frame_pts_seconds(), true, info.height, info.width, s, seed, 0, key).unique_frames;
  buf.resize(frames.size() * static_cast<size_t>(info.height) * info.width * 3);
  reader.get_frames(frames, buf.data());
  return buf.size();
}

void run_decode(const std::vector<cvrl::SourceRef>& sources, const cvrl::AugmentSettings& s, int threads,
                int64_t num_pairs, uint64_t seed, const std::string& label) {
  // Samples [first, first + count) are handed out one at a time, so no worker idles while others still
  // have a fixed share to finish (samples differ in cost: keyframe distance, frame size).
  auto pass = [&](int64_t first, int64_t count) {
    std::atomic<int64_t> next{first};
    std::atomic<size_t> bytes{0};
    std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
    auto work = [&](std::exception_ptr& error) {
      try {
        std::vector<uint8_t> buf;
        for (int64_t k = next++; k < first + count; k = next++) {
          const cvrl::SourceRef& src = sources[static_cast<size_t>(k) % sources.size()];
          bytes += decode_sample(src, s, seed, static_cast<uint64_t>(k), buf);
        }
      } catch (...) {
        error = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work, std::ref(errors[static_cast<size_t>(t)]));
    for (auto& th : pool) th.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    return bytes.load();
  };
  pass(1000000, threads);  // warm-up: one sample per thread (page cache, allocator)
  Meter m;
  const size_t bytes = pass(0, num_pairs);
  const double wall = m.wall(), cpu = m.cpu();
  std::printf("%s\tdecode\t%d\t%lld\t%.1f\t%.1f\t%.2f\t-\t-\t%.0f\n", label.c_str(), threads,
              static_cast<long long>(num_pairs), num_pairs / wall, num_pairs / cpu, cpu / wall,
              static_cast<double>(bytes) / num_pairs / 1e6);
  std::fflush(stdout);
}

void run_pairs(const std::vector<cvrl::SourceRef>& sources, const cvrl::AugmentSettings& s, int threads,
               int64_t num_pairs, int batch, uint64_t seed, const std::string& label) {
  const char* mode_name = s.augment_on == cvrl::AugmentOn::kDevice ? "pairs_device" : "pairs";
  cvrl::LoaderOptions o;
  o.batch_size = batch;
  o.seed = seed;
  o.num_threads = threads;
  o.prefetch_batches = std::max(2, (3 * threads + batch - 1) / batch);
  cvrl::PairLoader loader(sources, s, o);
  auto take = [&](int64_t batches) {
    for (int64_t b = 0; b < batches; ++b) {
      auto got = loader.next(600.0);
      if (!got.first) throw std::runtime_error("loader ended or timed out");
    }
  };
  take((threads + batch - 1) / batch + 1);  // warm-up: every worker has finished a sample
  const cvrl::LoaderStats before = loader.stats();
  Meter m;
  const int64_t batches = (num_pairs + batch - 1) / batch;
  take(batches);
  const double wall = m.wall(), cpu = m.cpu();
  const cvrl::LoaderStats after = loader.stats();
  loader.close();
  const double dec = after.decode_seconds - before.decode_seconds, aug = after.augment_seconds - before.augment_seconds;
  const int64_t pairs = batches * batch;
  if (!after.skipped.empty()) std::fprintf(stderr, "%zu sources skipped\n", after.skipped.size());
  std::printf("%s\t%s\t%d\t%lld\t%.1f\t%.1f\t%.2f\t%.1f\t%.1f\t-\n", label.c_str(), mode_name, threads,
              static_cast<long long>(pairs), pairs / wall, pairs / cpu, cpu / wall, 1e3 * dec / pairs,
              1e3 * aug / pairs);
  std::fflush(stdout);
}

// Per-op cost of augment_clip on one thread: a synthetic 16-frame clip (a 320x240 window of random
// pixels, about the mean crop of a 456x256 frame) through the resize alone, then each op added on its
// own, best of `repeats`. Says where an augmentation's time goes on this CPU.
void run_augment_ops(int repeats) {
  const cvrl::AugmentSettings s;
  const int T = s.num_frames, width = 320, height = 240;
  std::vector<uint8_t> pixels(static_cast<size_t>(T) * width * height * 3);
  uint64_t state = 12345;
  for (uint8_t& v : pixels) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<uint8_t>(state >> 56);
  }
  cvrl::ClipWindow clip;
  clip.width = width;
  clip.height = height;
  clip.row_stride_bytes = static_cast<int64_t>(width) * 3;
  for (int t = 0; t < T; ++t) clip.frames.push_back(pixels.data() + static_cast<size_t>(t) * width * height * 3);
  std::vector<uint8_t> out(static_cast<size_t>(T) * s.crop_size * s.crop_size * 3);
  struct Case {
    const char* name;
    cvrl::ViewParams p;
  };
  std::vector<Case> cases;
  cvrl::ViewParams base;
  base.crop = cvrl::Box{0, 0, width, height};
  auto add = [&](const char* name, auto edit) {
    cvrl::ViewParams p = base;
    edit(p);
    cases.push_back({name, p});
  };
  add("resize", [](cvrl::ViewParams&) {});
  add("resize+flip", [](cvrl::ViewParams& p) { p.flip = true; });
  auto jitter_only = [](cvrl::ViewParams& p, int op) {
    p.jitter = true;
    p.brightness = op == cvrl::kBrightness ? 1.3f : 1.f;
    p.contrast = op == cvrl::kContrast ? 1.3f : 1.f;
    p.saturation = op == cvrl::kSaturation ? 1.3f : 1.f;
    p.hue = op == cvrl::kHue ? 0.1f : 0.f;
    p.jitter_order = {op, op, op, op};  // the op once per listed slot: four times
  };
  add("+brightness x4", [&](cvrl::ViewParams& p) { jitter_only(p, cvrl::kBrightness); });
  add("+contrast x4", [&](cvrl::ViewParams& p) { jitter_only(p, cvrl::kContrast); });
  add("+saturation x4", [&](cvrl::ViewParams& p) { jitter_only(p, cvrl::kSaturation); });
  add("+hue x4", [&](cvrl::ViewParams& p) { jitter_only(p, cvrl::kHue); });
  add("+jitter (all 4)", [](cvrl::ViewParams& p) {
    p.jitter = true;
    p.brightness = 1.2f, p.contrast = 0.8f, p.saturation = 1.3f, p.hue = 0.1f;
    p.jitter_order = {0, 1, 2, 3};
  });
  add("+grayscale", [](cvrl::ViewParams& p) { p.grayscale = true; });
  add("+blur sigma 2", [](cvrl::ViewParams& p) { p.blur = true, p.blur_sigma = 2.f; });
  add("+blur sigma 1", [](cvrl::ViewParams& p) { p.blur = true, p.blur_sigma = 1.f; });
  add("+blur sigma 0.5", [](cvrl::ViewParams& p) { p.blur = true, p.blur_sigma = 0.5f; });
  add("+blur sigma 0.1", [](cvrl::ViewParams& p) { p.blur = true, p.blur_sigma = 0.1f; });
  add("+grayscale+blur sigma 2", [](cvrl::ViewParams& p) { p.grayscale = true, p.blur = true, p.blur_sigma = 2.f; });
  add("+solarize", [](cvrl::ViewParams& p) { p.solarize = true; });
  std::printf("# op\tms_per_clip (best of %d; 16 frames, 320x240 window -> 224x224)\n", repeats);
  for (const Case& c : cases) cvrl::augment_clip(clip, c.p, s, out.data(), nullptr);  // warm caches and clocks
  for (const Case& c : cases) {
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      Meter m;
      cvrl::augment_clip(clip, c.p, s, out.data(), nullptr);
      best = std::min(best, m.wall());
    }
    std::printf("augment\t%s\t%.2f\n", c.name, 1e3 * best);
  }
  std::fflush(stdout);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "loader_scaling: %s\nusage: loader_scaling --label NAME --threads 1,2,4 [--mode both|pairs|decode] "
               "[--batch 32] [--pairs-per-thread 32] [--min-pairs 64] [--seed 0] [--augment-on both|host|device] FILE...\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string label = "data", mode = "both", augment_on = "both";
  std::vector<int> thread_counts = {1, 2};
  int batch = 32;
  int64_t per_thread = 32, min_pairs = 64;
  uint64_t seed = 0;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--label") label = value();
    else if (a == "--mode") mode = value();
    else if (a == "--batch") batch = std::atoi(value().c_str());
    else if (a == "--pairs-per-thread") per_thread = std::atoll(value().c_str());
    else if (a == "--min-pairs") min_pairs = std::atoll(value().c_str());
    else if (a == "--augment-on") augment_on = value();
    else if (a == "--seed") seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--threads") {
      thread_counts.clear();
      std::string v = value();
      for (size_t p = 0; p < v.size();) {
        const size_t q = v.find(',', p);
        thread_counts.push_back(std::atoi(v.substr(p, q - p).c_str()));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else if (a.rfind("--", 0) == 0) usage(("unknown option " + a).c_str());
    else files.push_back(a);
  }
  if (mode == "augment") {
    run_augment_ops(20);
    return 0;
  }
  if (files.empty()) usage("no input files");
  if (mode != "both" && mode != "pairs" && mode != "decode") usage("--mode must be both, pairs or decode");
  if (augment_on != "both" && augment_on != "host" && augment_on != "device")
    usage("--augment-on must be both, host or device");
  if (batch < 1 || per_thread < 1) usage("--batch and --pairs-per-thread must be >= 1");
  for (int t : thread_counts)
    if (t < 1 || t > 256) usage("--threads values must be in [1, 256]");
  try {
    const std::vector<cvrl::SourceRef> sources = resolve(files);
    const cvrl::AugmentSettings settings;  // the reference defaults: 16 frames at stride 2, 224 px, full recipe
    cvrl::AugmentSettings device_settings = settings;
    device_settings.augment_on = cvrl::AugmentOn::kDevice;
    std::printf("# %s; hardware threads %u; %zu sources\n", cvrl::build_info().c_str(),
                std::thread::hardware_concurrency(), sources.size());
    std::printf("# label\tmode\tthreads\tpairs\tpairs_per_s\tpairs_per_cpu_s\tcpu_busy\tdecode_ms_per_pair"
                "\taugment_ms_per_pair\tdecoded_MB_per_pair\n");
    for (int t : thread_counts) {
      const int64_t n = std::max<int64_t>(min_pairs, per_thread * t);
      if (mode != "decode") {
        if (augment_on != "device") run_pairs(sources, settings, t, n, batch, seed, label);
        if (augment_on != "host") run_pairs(sources, device_settings, t, n, batch, seed, label);
      }
      if (mode != "pairs") run_decode(sources, settings, t, n, seed, label);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loader_scaling: %s\n", e.what());
    return 1;
  }
  return 0;
}
