#include "pair_loader.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "augment.h"
#include "errors.h"
#include "jpeg_crop.h"
#include "nvtx.h"
#include "rng.h"
#include "tfrecord.h"
#include "video_reader.h"

namespace cvrl {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Box union_box(const Box& a, const Box& b) {
  const int x0 = std::min(a.x, b.x), y0 = std::min(a.y, b.y);
  const int x1 = std::max(a.x + a.width, b.x + b.width), y1 = std::max(a.y + a.height, b.y + b.height);
  return Box{x0, y0, x1 - x0, y1 - y0};
}

// `box` in the pixels of a frame decoded at 1/denom (ceil(height/denom) x ceil(width/denom)): the
// smallest box of whole reduced pixels that covers it.
Box scale_box(const Box& box, int denom, int height, int width) {
  const int x0 = box.x / denom, y0 = box.y / denom;
  const int x1 = std::min((box.x + box.width + denom - 1) / denom, (width + denom - 1) / denom);
  const int y1 = std::min((box.y + box.height + denom - 1) / denom, (height + denom - 1) / denom);
  return Box{x0, y0, x1 - x0, y1 - y0};
}

// The largest IDCT reduction (1, 2, 4 or 8) that keeps every side of both boxes >= crop_size.
int dct_scale_denom(const PairParams& params, int crop_size) {
  int smallest = params.views[0].crop.width;
  for (const ViewParams& v : params.views) smallest = std::min({smallest, v.crop.width, v.crop.height});
  int denom = 1;
  while (denom < 8 && smallest / (denom * 2) >= crop_size) denom *= 2;
  return denom;
}

// The decoded union windows of one pair live in one buffer; a header that claims an absurd frame size
// (a corrupt JPEG or video header) would otherwise ask for tens of GiB and end the run with bad_alloc.
// 4 GiB holds the worst case of 8K video (32 full 7680x4320 frames).
constexpr double kMaxWindowBytes = 4.0 * (1ull << 30);

// A source's timeline must give a usable index space: finite, ascending timestamps and at most
// kMaxIndexFrames index frames (a corrupt file's timestamps can jump by years).
void check_timeline(const std::vector<double>& pts, double target_fps, const std::string& name) {
  const double length = fixed_rate_length(pts, target_fps);
  if (std::isnan(length)) throw DecodeError("frame timestamps of " + name + " are not finite and ascending");
  if (length > static_cast<double>(kMaxIndexFrames)) {
    throw DecodeError("the timestamps of " + name + " span " + std::to_string(pts.back() - pts.front()) + " s (" +
                      std::to_string(pts.size()) + " frames): " + std::to_string(length) + " frames at " +
                      std::to_string(target_fps) + " fps, more than " + std::to_string(kMaxIndexFrames) +
                      " (corrupt timestamps?)");
  }
}

}  // namespace

std::string SourceRef::name() const {
  if (record_offset >= 0) return path + "[record@" + std::to_string(record_offset) + "]";
  return path;
}

PairPlan plan_pair(const std::vector<double>& pts, bool fixed_rate, int height, int width,
                   const AugmentSettings& settings, uint64_t seed, uint64_t epoch, uint64_t sample_key) {
  PairPlan plan;
  plan.frame_of_index = fixed_rate_frame_map(pts, fixed_rate ? settings.target_fps : 0.0);  // <= 0: identity
  plan.params = sample_pair_params(static_cast<int64_t>(plan.frame_of_index.size()), height, width, settings, seed,
                                   epoch, sample_key);
  std::vector<int64_t>& unique = plan.unique_frames;
  for (const auto& clip : plan.params.clips.indices)
    for (int64_t index : clip) unique.push_back(plan.frame_of_index[static_cast<size_t>(index)]);
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  return plan;
}

// ---------------------------------------------------------------------------------------------
// PairMaker

PairMaker::PairMaker(const AugmentSettings& settings) : settings_(settings) { settings_.validate(); }

void PairMaker::augment_views(const PairParams& params, const Box (&boxes)[2], const std::vector<int64_t>& frame_of_index,
                              const std::vector<int64_t>& unique_frames, const Box& window, const PairOutput& out) {
  const int64_t row_bytes = static_cast<int64_t>(window.width) * 3;
  const int64_t frame_bytes = row_bytes * window.height;
  for (int v = 0; v < 2; ++v) {
    const Box& box = boxes[v];
    ClipWindow clip;
    clip.height = box.height;
    clip.width = box.width;
    clip.row_stride_bytes = row_bytes;
    for (int64_t index : params.clips.indices[v]) {
      const int64_t frame = frame_of_index[static_cast<size_t>(index)];
      const auto pos = std::lower_bound(unique_frames.begin(), unique_frames.end(), frame) - unique_frames.begin();
      clip.frames.push_back(frames_.data() + pos * frame_bytes + (box.y - window.y) * row_bytes +
                            (box.x - window.x) * 3);
    }
    augment_clip(clip, params.views[v], settings_, out.u8[v], out.f32[v]);
  }
}

PairParams PairMaker::make(const SourceRef& source, uint64_t seed, uint64_t epoch, uint64_t sample_key,
                           const PairOutput& out) {
  const auto t0 = Clock::now();
  std::optional<NvtxRange> decode_range(std::in_place, "decode");
  PairPlan plan;
  Box window;    // union of `boxes`, in decoded pixels
  Box boxes[2];  // the views' crop boxes, in decoded pixels
  // Draws the pair, then the decoded-pixel boxes: scaled down by the returned IDCT factor (1, 2, 4, 8)
  // when `may_scale` (JPEG frames with jpeg_dct_scaling). Sizes frames_ for the union window.
  auto draw = [&](const std::vector<double>& pts, bool fixed_rate, int height, int width, bool may_scale) {
    check_timeline(pts, fixed_rate ? settings_.target_fps : 0.0, source.name());
    plan = plan_pair(pts, fixed_rate, height, width, settings_, seed, epoch, sample_key);
    const int denom = may_scale ? dct_scale_denom(plan.params, settings_.crop_size) : 1;
    for (int v = 0; v < 2; ++v) {
      const Box& crop = plan.params.views[v].crop;
      boxes[v] = denom > 1 ? scale_box(crop, denom, height, width) : crop;
    }
    window = union_box(boxes[0], boxes[1]);
    const double bytes = static_cast<double>(plan.unique_frames.size()) * window.width * window.height * 3;
    if (bytes > kMaxWindowBytes) {
      throw DecodeError("the " + std::to_string(width) + "x" + std::to_string(height) + " frames of " + source.name() +
                        " need " + std::to_string(static_cast<int64_t>(bytes / (1 << 20))) + " MiB for " +
                        std::to_string(plan.unique_frames.size()) + " crop windows (limit " +
                        std::to_string(static_cast<int64_t>(kMaxWindowBytes / (1 << 20))) + " MiB; corrupt header?)");
    }
    frames_.resize(plan.unique_frames.size() * static_cast<size_t>(window.width) * window.height * 3);
    return denom;
  };

  if (source.record_offset >= 0) {
    // Reference TFRecord: one JPEG per stored frame; decode only the union window of needed frames.
    const std::string payload = read_tfrecord(source.path, RecordRef{source.record_offset, source.record_length});
    const VideoRecord record = parse_video_record(payload, source.name());
    int height = 0, width = 0;
    jpeg_frame_size(record.frames[0], "frame 0 of " + source.name(), &height, &width);
    // Only records that carry their rate are mapped onto the fixed-rate index space.
    const int denom = draw(record_frame_times(record), record.fps > 0.0, height, width, settings_.jpeg_dct_scaling);
    const int64_t row_bytes = static_cast<int64_t>(window.width) * 3;
    const int64_t frame_bytes = row_bytes * window.height;
    for (size_t k = 0; k < plan.unique_frames.size(); ++k) {
      const auto f = static_cast<size_t>(plan.unique_frames[k]);
      int fh = 0, fw = 0;
      const std::string what = "frame " + std::to_string(f) + " of " + source.name();
      jpeg_frame_size(record.frames[f], what, &fh, &fw);
      if (fh != height || fw != width) {
        throw DecodeError("frame size " + std::to_string(fw) + "x" + std::to_string(fh) + " differs from frame 0 (" +
                                    std::to_string(width) + "x" + std::to_string(height) + ") in " + what);
      }
      jpeg_decode_window(record.frames[f], window, frames_.data() + k * frame_bytes, row_bytes, what, denom);
    }
  } else {
    VideoReader reader = source.bytes.empty() ? VideoReader(source.path, 1) : VideoReader::from_bytes(source.bytes, 1);
    const VideoInfo& info = reader.info();
    draw(reader.frame_pts_seconds(), true, info.height, info.width, false);
    // Only the union window of the two crop boxes is colour-converted, at native resolution.
    reader.get_frames(plan.unique_frames, frames_.data(), CropBox{window.x, window.y, window.width, window.height});
  }
  decode_range.reset();
  const auto t1 = Clock::now();
  decode_seconds += std::chrono::duration<double>(t1 - t0).count();
  {
    NvtxRange range("augment");
    augment_views(plan.params, boxes, plan.frame_of_index, plan.unique_frames, window, out);
  }
  augment_seconds += seconds_since(t1);
  return plan.params;
}

// ---------------------------------------------------------------------------------------------
// Slot rules (shared with csrc/tf_ops.cc)

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t num_sources, bool shuffle) {
  if (num_sources < 1) {
    throw std::invalid_argument("epoch_permutation: num_sources = " + std::to_string(num_sources) + " must be >= 1");
  }
  if (epoch < 0) throw std::invalid_argument("epoch_permutation: epoch = " + std::to_string(epoch) + " must be >= 0");
  std::vector<int64_t> perm(static_cast<size_t>(num_sources));
  for (int64_t i = 0; i < num_sources; ++i) perm[static_cast<size_t>(i)] = i;
  if (shuffle) {  // Fisher-Yates keyed by (seed, epoch): independent of threads and batch size
    CounterRng rng(seed, static_cast<uint64_t>(epoch), 0, kStreamEpochShuffle);
    for (int64_t i = num_sources - 1; i > 0; --i) std::swap(perm[static_cast<size_t>(i)], perm[rng.uniform_int(i + 1)]);
  }
  return perm;
}

int64_t replacement_position(uint64_t seed, int64_t epoch, int64_t slot, int attempt, int64_t num_sources) {
  if (attempt < 1) throw std::invalid_argument("replacement_position: attempt = " + std::to_string(attempt) + " must be >= 1");
  if (num_sources < 1) throw std::invalid_argument("replacement_position: num_sources must be >= 1");
  CounterRng rng(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(slot), kStreamReplacement);
  int64_t pos = 0;
  for (int a = 0; a < attempt; ++a) pos = static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(num_sources)));
  return pos;
}

uint64_t attempt_key(int64_t source_id, int64_t slot, int attempt) {
  return attempt == 0 ? static_cast<uint64_t>(source_id)
                      : detail::splitmix64(static_cast<uint64_t>(source_id) ^
                                           detail::splitmix64(static_cast<uint64_t>(slot) * 64 + attempt));
}

SlotSample make_slot_sample(PairMaker& maker, SlotSources& sources, uint64_t seed, int64_t slot, int64_t position,
                            int max_retries, const PairOutput& out) {
  const int64_t n = sources.size();
  const int64_t epoch = slot / n;
  // A bad source is replaced by a draw keyed by (seed, epoch, slot, attempt), so the replacement is
  // the same whatever the thread count, timing, or which engine (loader or graph op) runs the slot.
  CounterRng replacement(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(slot), kStreamReplacement);
  SlotSample sample;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      ++sample.failed_attempts;
      if (attempt > max_retries) {
        throw std::runtime_error("PairLoader: " + std::to_string(max_retries) +
                                 " replacement sources in a row failed to decode" + sources.exhausted_detail());
      }
      position = static_cast<int64_t>(replacement.uniform_int(static_cast<uint64_t>(n)));
    }
    if (sources.known_bad(position)) continue;  // would fail again
    const SourceRef& src = sources.at(position);
    const uint64_t key = attempt_key(src.id, slot, attempt);
    try {
      sample.params = maker.make(src, seed, static_cast<uint64_t>(epoch), key, out);
      sample.source_id = src.id;
      return sample;
    } catch (const DecodeError& e) {
      // Only bad media is skipped. Any other exception (a bad argument, bad_alloc, a bug) leaves here and
      // stops the loader (next() rethrows it with its own type and message) or fails the op.
      sources.failed(position, src, e);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// BufferPool: batch buffers are recycled once Python drops its last reference.

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  BufferPool(size_t bytes, size_t max_free) : bytes_((bytes + 63) / 64 * 64), max_free_(max_free) {}
  size_t buffer_bytes() const { return bytes_; }
  ~BufferPool() {
    for (void* p : free_) std::free(p);
  }
  std::shared_ptr<uint8_t> get() {
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        p = free_.back();
        free_.pop_back();
      }
    }
    if (p == nullptr) {
      p = std::aligned_alloc(64, bytes_);
      if (p == nullptr) throw std::bad_alloc();
    }
    std::weak_ptr<BufferPool> weak = weak_from_this();
    return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [weak](uint8_t* q) {
      if (auto pool = weak.lock()) pool->put(q);
      else std::free(q);
    });
  }

 private:
  void put(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < max_free_) free_.push_back(p);
    else std::free(p);
  }
  size_t bytes_, max_free_;
  std::mutex mu_;
  std::vector<void*> free_;
};

// ---------------------------------------------------------------------------------------------
// PairLoader

PairLoader::PairLoader(std::vector<SourceRef> sources, const AugmentSettings& settings, const LoaderOptions& options)
    : sources_(std::move(sources)), settings_(settings), options_(options) {
  settings_.validate();
  if (sources_.empty()) throw std::invalid_argument("PairLoader: no sources (empty list after sharding?)");
  if (options_.batch_size < 1) {
    throw std::invalid_argument("PairLoader: batch_size = " + std::to_string(options_.batch_size) + " must be >= 1");
  }
  if (options_.num_threads < 1 || options_.num_threads > 256) {
    throw std::invalid_argument("PairLoader: num_threads = " + std::to_string(options_.num_threads) +
                                " must be in [1, 256]");
  }
  if (options_.prefetch_batches < 1) {
    throw std::invalid_argument("PairLoader: prefetch_batches = " + std::to_string(options_.prefetch_batches) +
                                " must be >= 1");
  }
  if (options_.start_batch < 0) {
    throw std::invalid_argument("PairLoader: start_batch = " + std::to_string(options_.start_batch) + " must be >= 0");
  }
  if (options_.float_output && device_colour()) {
    throw std::invalid_argument("PairLoader: float_output=true needs augment_on=host (device mode gives uint8 views "
                                "and the accelerator does the float colour stage)");
  }
  const int64_t n = num_sources();
  const int64_t batch = options_.batch_size;
  end_slot_ = options_.epochs < 0 ? INT64_MAX : options_.epochs * n;
  if (options_.epochs >= 0 && options_.drop_remainder) end_slot_ = end_slot_ / batch * batch;
  const int64_t start = options_.start_batch * batch;
  next_slot_ = std::min(start, end_slot_);
  consumer_batch_ = options_.start_batch;
  const size_t elem = options_.float_output ? sizeof(float) : 1;
  sample_bytes_ = static_cast<size_t>(settings_.num_frames) * settings_.crop_size * settings_.crop_size * 3 * elem;
  pool_ = std::make_shared<BufferPool>(sample_bytes_ * static_cast<size_t>(batch),
                                       2 * static_cast<size_t>(options_.prefetch_batches) + 4);
  bad_.reset(new std::atomic<uint8_t>[static_cast<size_t>(n)]());
  threads_.reserve(options_.num_threads);
  try {
    for (int t = 0; t < options_.num_threads; ++t) threads_.emplace_back(&PairLoader::worker_main, this, t);
  } catch (...) {
    close();  // no destructor runs for a constructor that throws: join the threads already started
    throw;
  }
}

PairLoader::~PairLoader() { close(); }

void PairLoader::close() {
  // Two threads must never join (or clear) threads_ at once: concurrent joins of one std::thread are
  // undefined (in practice both block forever), and clearing in_flight_ before every worker is joined
  // would let a worker write its row into a freed batch. The second caller waits here until the
  // first is done, so every close() returns with the workers joined.
  std::lock_guard<std::mutex> closing(close_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();  // waiting next() calls return end of data
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  std::unique_lock<std::mutex> lock(mu_);
  in_flight_.clear();  // unfinished batches only: batches handed out own their buffers
  // Bounded, so a Caller stuck elsewhere cannot hang close(); the ordering it buys is best effort.
  callers_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return callers_ == 0; });
}

bool PairLoader::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

PairLoader::Caller::Caller(PairLoader& loader) : loader_(loader) {
  std::lock_guard<std::mutex> lock(loader_.mu_);
  ++loader_.callers_;
}

PairLoader::Caller::~Caller() {
  {
    std::lock_guard<std::mutex> lock(loader_.mu_);
    --loader_.callers_;
  }
  loader_.callers_cv_.notify_all();
}

const std::vector<int64_t>& PairLoader::permutation(int64_t epoch) {
  auto it = perms_.find(epoch);
  if (it != perms_.end()) return it->second;
  while (!perms_.empty() && perms_.begin()->first < epoch - 1) perms_.erase(perms_.begin());
  return perms_.emplace(epoch, epoch_permutation(options_.seed, epoch, num_sources(), options_.shuffle)).first->second;
}

PairLoader::InFlight& PairLoader::batch_for(int64_t b) {
  auto it = in_flight_.find(b);
  if (it != in_flight_.end()) return *it->second;
  auto f = std::make_unique<InFlight>();
  const int64_t batch = options_.batch_size;
  f->batch.batch_index = b;
  f->batch.size = static_cast<int>(std::min<int64_t>(batch, end_slot_ - b * batch));
  f->remaining = f->batch.size;
  f->batch.views[0] = pool_->get();
  f->batch.views[1] = pool_->get();
  f->batch.view_shape = {f->batch.size, settings_.num_frames, settings_.crop_size, settings_.crop_size, 3};
  f->batch.float32 = options_.float_output;
  f->batch.view_capacity_bytes = pool_->buffer_bytes();
  f->batch.index.assign(f->batch.size, -1);
  f->batch.epoch.assign(f->batch.size, -1);
  if (device_colour())
    for (auto& c : f->batch.colour) c.assign(static_cast<size_t>(f->batch.size) * kNumColourParams, 0.f);
  return *in_flight_.emplace(b, std::move(f)).first->second;
}

namespace {

// PairLoader's sources for make_slot_sample: its vector, the bad-source flags as the cache, and the
// stats, log line and "every source failed" stop on a source's first failure.
class LoaderSlotSources : public SlotSources {
 public:
  LoaderSlotSources(const std::vector<SourceRef>& sources, std::atomic<uint8_t>* bad, std::atomic<int64_t>& bad_count,
                    std::mutex& mu, LoaderStats& stats)
      : sources_(sources), bad_(bad), bad_count_(bad_count), mu_(mu), stats_(stats) {}
  int64_t size() const override { return static_cast<int64_t>(sources_.size()); }
  const SourceRef& at(int64_t position) override { return sources_[static_cast<size_t>(position)]; }
  bool known_bad(int64_t position) override { return bad_[position].load(std::memory_order_relaxed) != 0; }
  void failed(int64_t position, const SourceRef& src, const std::exception& e) override {
    const bool first = bad_[position].exchange(1) == 0;
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.failed_attempts;
    if (!first) return;
    const int64_t count = ++bad_count_;
    stats_.skipped.emplace_back(src.name(), e.what());
    if (count == size()) {
      throw std::runtime_error("PairLoader: every one of the " + std::to_string(size()) +
                               " sources failed to decode; first error: " + stats_.skipped.front().first + ": " +
                               stats_.skipped.front().second);
    }
  }
  std::string exhausted_detail() const override {
    return " (" + std::to_string(bad_count_.load()) + " of " + std::to_string(size()) + " sources are bad)";
  }

 private:
  const std::vector<SourceRef>& sources_;
  std::atomic<uint8_t>* bad_;
  std::atomic<int64_t>& bad_count_;
  std::mutex& mu_;
  LoaderStats& stats_;
};

}  // namespace

void PairLoader::produce(PairMaker& maker, int64_t slot, InFlight& target, int row) {
  const int64_t n = num_sources();
  const int64_t epoch = slot / n;
  int64_t pos;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pos = permutation(epoch)[static_cast<size_t>(slot % n)];
  }
  PairOutput out;
  for (int v = 0; v < 2; ++v) {
    uint8_t* base = target.batch.views[v].get() + sample_bytes_ * static_cast<size_t>(row);
    if (options_.float_output) out.f32[v] = reinterpret_cast<float*>(base);
    else out.u8[v] = base;
  }
  LoaderSlotSources sources(sources_, bad_.get(), bad_count_, mu_, stats_);
  const SlotSample sample = make_slot_sample(maker, sources, options_.seed, slot, pos, options_.max_retries, out);
  if (device_colour()) {
    for (int v = 0; v < 2; ++v) {
      const auto c = colour_row(sample.params.views[v]);
      std::copy(c.begin(), c.end(), target.batch.colour[v].begin() + static_cast<int64_t>(row) * kNumColourParams);
    }
  }
  target.batch.index[row] = sample.source_id;
  target.batch.epoch[row] = epoch;
}

void PairLoader::worker_main(int thread_index) {
  PairMaker maker(settings_);
  const int64_t batch = options_.batch_size;
  while (true) {
    int64_t slot;
    InFlight* target;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] {
        return stop_ || error_ || (next_slot_ < end_slot_ && next_slot_ / batch < consumer_batch_ + options_.prefetch_batches);
      });
      if (stop_ || error_) return;
      slot = next_slot_++;
      try {
        target = &batch_for(slot / batch);
      } catch (...) {
        error_ = std::current_exception();
        ready_cv_.notify_all();
        return;
      }
    }
    try {
      NvtxRange range("batch_row");  // one sample decoded and augmented into its row of the batch
      produce(maker, slot, *target, static_cast<int>(slot % batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
      work_cv_.notify_all();
      ready_cv_.notify_all();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.samples;
      stats_.decode_seconds += maker.decode_seconds;
      stats_.augment_seconds += maker.augment_seconds;
      maker.decode_seconds = maker.augment_seconds = 0;
      if (--target->remaining == 0) ready_cv_.notify_all();
    }
  }
  (void)thread_index;
}

std::pair<std::optional<LoadedBatch>, bool> PairLoader::next(double timeout_seconds) {
  if (!(timeout_seconds >= 0)) {  // also NaN
    throw std::invalid_argument("PairLoader::next: timeout_seconds = " + std::to_string(timeout_seconds) +
                                " must be >= 0");
  }
  const auto t0 = Clock::now();
  NvtxRange range("wait_batch");  // the consumer waiting until every row of its batch is filled
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t batch = options_.batch_size;
  auto ready = [&] {
    if (error_ || stop_ || consumer_batch_ * batch >= end_slot_) return true;
    auto it = in_flight_.find(consumer_batch_);
    return it != in_flight_.end() && it->second->remaining == 0;
  };
  bool done = true;
  // A steady_clock deadline this far out would overflow: wait without one.
  if (timeout_seconds > 1e9) ready_cv_.wait(lock, ready);
  else done = ready_cv_.wait_for(lock, std::chrono::duration<double>(timeout_seconds), ready);
  stats_.wait_seconds += seconds_since(t0);
  if (!done) return {std::nullopt, false};
  // Closed (before or during this call): the end of the data. close() is how a consumer says it
  // wants no more batches, and a thread still waiting (tf.data's generator thread when the
  // interpreter exits) must get an ordinary end, not an error.
  if (stop_) return {std::nullopt, true};
  if (error_) std::rethrow_exception(error_);
  if (consumer_batch_ * batch >= end_slot_) return {std::nullopt, true};
  auto it = in_flight_.find(consumer_batch_);
  LoadedBatch out = std::move(it->second->batch);
  in_flight_.erase(it);
  ++consumer_batch_;
  ++stats_.batches;
  lock.unlock();
  work_cv_.notify_all();
  return {std::move(out), true};
}

LoaderStats PairLoader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<std::pair<std::string, std::string>> PairLoader::skipped_since(size_t start) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (start >= stats_.skipped.size()) return {};
  return {stats_.skipped.begin() + static_cast<std::ptrdiff_t>(start), stats_.skipped.end()};
}

int64_t PairLoader::next_batch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return consumer_batch_;
}

}  // namespace cvrl
