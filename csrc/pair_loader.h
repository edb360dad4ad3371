// CVRL training pairs from videos or reference TFRecords: PairMaker turns one source into two
// augmented clips (decode once, crop window only); PairLoader runs PairMakers on a thread pool and
// assembles whole batches in preallocated buffers, in a deterministic order.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sampling.h"

namespace cvrl {

// One video: a container file, an in-memory file, or one record of a TFRecord file.
struct SourceRef {
  std::string path;
  int64_t record_offset = -1;  // >= 0: TFRecord payload at this byte offset of `path`
  int64_t record_length = 0;
  std::string bytes;           // non-empty: the whole video file in memory (path is only a name)
  int64_t id = 0;              // global id: keys the random draws and is reported as "index"
  std::string name() const;    // for messages: the path, or path[record@offset]
};

// Where one sample's two views go: [T, S, S, 3] each, uint8 or float32 (exactly one kind set).
struct PairOutput {
  uint8_t* u8[2] = {nullptr, nullptr};
  float* f32[2] = {nullptr, nullptr};
};

// What one sample draws before any pixel is decoded. pts: presentation times of the source's stored
// frames; fixed_rate: map them onto the settings' fixed-rate index space (else the stored frames are
// the index space). Pure function of its arguments, like sample_pair_params.
struct PairPlan {
  PairParams params;
  std::vector<int64_t> frame_of_index;  // index space -> stored frame
  std::vector<int64_t> unique_frames;   // the stored frames both clips need, sorted, each once
};
PairPlan plan_pair(const std::vector<double>& pts, bool fixed_rate, int height, int width,
                   const AugmentSettings& settings, uint64_t seed, uint64_t epoch, uint64_t sample_key);

// Decode + augment for one thread (not thread-safe; holds reusable buffers).
class PairMaker {
 public:
  explicit PairMaker(const AugmentSettings& settings);
  // Throws DecodeError (errors.h) for a source that cannot be decoded (bad data, an absurd timeline or
  // frame size); anything else it throws is a bug or a bad argument (e.g. a SourceRef with a negative
  // record length), which the loader does not skip.
  PairParams make(const SourceRef& source, uint64_t seed, uint64_t epoch, uint64_t sample_key, const PairOutput& out);
  double decode_seconds = 0.0, augment_seconds = 0.0;

 private:
  // boxes: the views' crop boxes in the pixels of the decoded frames (params' boxes, or scaled ones).
  void augment_views(const PairParams& params, const Box (&boxes)[2], const std::vector<int64_t>& frame_of_index,
                     const std::vector<int64_t>& unique_frames, const Box& window, const PairOutput& out);
  AugmentSettings settings_;
  std::vector<uint8_t> frames_;  // decoded union window of both clips' frames
};

// ---------------------------------------------------------------------------------------------
// The sample-slot rules of the loader, shared with the TensorFlow op (csrc/tf_ops.cc) so that the
// graph pipeline and PairLoader follow one definition: slot k of the endless sequence belongs to epoch
// k / n and reads position permutation(epoch)[k % n]; a source that fails is replaced by draws keyed by
// (seed, epoch, slot, attempt).

// The order of one epoch's n sources: identity, or a Fisher-Yates shuffle keyed by (seed, epoch),
// independent of threads and batch size. Throws std::invalid_argument for n < 1 or epoch < 0.
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t num_sources, bool shuffle);

// What make_slot_sample needs to know about the sources (PairLoader: its vector; the op: its input
// tensors) and how it reports failures.
class SlotSources {
 public:
  virtual ~SlotSources() = default;
  virtual int64_t size() const = 0;
  // The source at `position` in [0, size()); the reference may be invalidated by the next call.
  virtual const SourceRef& at(int64_t position) = 0;
  // Known to fail (a cache: skipping it gives the same result as trying it, only sooner).
  virtual bool known_bad(int64_t position) { return false; }
  // Called once per failed attempt; may throw to stop the slot (PairLoader: every source failed).
  virtual void failed(int64_t position, const SourceRef& source, const std::exception& error) {}
  // Appended to the message when max_retries replacements in a row failed, e.g. " (3 of 9 sources are bad)".
  virtual std::string exhausted_detail() const { return ""; }
};

struct SlotSample {
  PairParams params;
  int64_t source_id = 0;     // the id of the source that made the sample
  int failed_attempts = 0;   // sources tried (or known bad) before it
};

// Makes the sample of `slot` into `out`: the source at `position` (permutation(slot / n)[slot % n]),
// or, while attempts fail, replacement draws (uniform over the n positions) keyed by (seed, epoch,
// slot, attempt), the sample key being the source id for attempt 0 and a hash of (id, slot, attempt)
// for a replacement. Throws std::runtime_error "PairLoader: <max_retries> replacement sources in a
// row failed to decode..." when every replacement failed. Only DecodeError is a failed attempt: any other
// exception (std::bad_alloc, a bad argument, a bug) passes through.
SlotSample make_slot_sample(PairMaker& maker, SlotSources& sources, uint64_t seed, int64_t slot, int64_t position,
                            int max_retries, const PairOutput& out);

// The same rules one attempt at a time, for input backends that plan samples here and decode elsewhere
// (cvrl_fast.dali): attempt a >= 1 of slot k reads replacement_position(seed, epoch, k, a, n), the a-th
// draw of the slot's replacement stream, and every attempt's sample key is attempt_key(id, k, a).
int64_t replacement_position(uint64_t seed, int64_t epoch, int64_t slot, int attempt, int64_t num_sources);
uint64_t attempt_key(int64_t source_id, int64_t slot, int attempt);

struct LoaderOptions {
  int batch_size = 8;
  uint64_t seed = 0;
  int num_threads = 2;
  bool shuffle = true;
  int64_t epochs = -1;        // < 0: endless
  int prefetch_batches = 2;   // batches assembled ahead of the consumer
  bool float_output = false;
  int64_t start_batch = 0;    // resume point (batches already consumed)
  bool drop_remainder = true;
  int max_retries = 32;       // replacement draws per sample slot before giving up
};

struct LoaderStats {
  int64_t samples = 0, batches = 0, failed_attempts = 0;
  double wait_seconds = 0, decode_seconds = 0, augment_seconds = 0;
  std::vector<std::pair<std::string, std::string>> skipped;  // (source, reason), once per source, in skip order
};

class BufferPool;

struct LoadedBatch {
  int64_t batch_index = 0;
  int size = 0;
  std::shared_ptr<uint8_t> views[2];  // [size, T, S, S, 3] bytes (uint8 or float32)
  // What the view buffers hold, set by the loader that filled them: a consumer builds its array views
  // from these (never from shapes of its own), and view_capacity_bytes bounds them.
  std::array<int64_t, 5> view_shape{};  // {size, T, S, S, 3}
  bool float32 = false;
  size_t view_capacity_bytes = 0;       // bytes allocated for each of views[0], views[1]
  std::vector<int64_t> index;         // source id per row
  std::vector<int64_t> epoch;         // epoch per row
  // augment_on == kDevice only: [size, kNumColourParams] colour rows per view (colour_row), else empty.
  std::vector<float> colour[2];
};

// Thread safety: next(), close(), stats() and next_batch() may be called from any threads at once.
// The destructor must not race with other calls (it closes first, like close()).
class PairLoader {
 public:
  PairLoader(std::vector<SourceRef> sources, const AugmentSettings& settings, const LoaderOptions& options);
  ~PairLoader();
  PairLoader(const PairLoader&) = delete;
  PairLoader& operator=(const PairLoader&) = delete;

  // Waits up to timeout_seconds for the next batch. Returns {batch, true}; {nullopt, true} at the end
  // of the data, and once close() has been called (also by another thread while this one waits: a
  // closed loader has no more batches); {nullopt, false} on timeout. Rethrows a fatal worker error
  // (e.g. every source failed). timeout_seconds = infinity waits until one of those happens.
  std::pair<std::optional<LoadedBatch>, bool> next(double timeout_seconds);
  // Stops and joins the workers, then waits (up to a few seconds) until every Caller is gone.
  // Idempotent and thread-safe: concurrent calls all return only once the workers are joined. Batches
  // already handed out stay valid (their buffers are shared_ptrs). Must not be called by a thread that
  // holds a Caller of this loader.
  void close();
  bool closed() const;
  LoaderStats stats() const;
  // stats().skipped[start:], without copying the rest: lets a caller report each skip once as it happens
  // (the Python wrapper logs them). The engine itself prints nothing.
  std::vector<std::pair<std::string, std::string>> skipped_since(size_t start) const;
  int64_t next_batch() const;  // batches consumed so far + start_batch: the resume point
  int64_t num_sources() const { return static_cast<int64_t>(sources_.size()); }
  size_t sample_bytes() const { return sample_bytes_; }
  const AugmentSettings& settings() const { return settings_; }
  bool float_output() const { return options_.float_output; }
  bool device_colour() const { return settings_.augment_on == AugmentOn::kDevice; }

  // Marks a thread that is using the loader from outside, for longer than a next() call: the Python
  // binding holds one from before it releases the GIL for next() until it holds the GIL again. close()
  // waits for them, so a thread that close() wakes is back with its caller (a thread that takes the
  // GIL back after interpreter finalization began is ended by CPython) before close() returns.
  class Caller {
   public:
    explicit Caller(PairLoader& loader);
    ~Caller();
    Caller(const Caller&) = delete;
    Caller& operator=(const Caller&) = delete;

   private:
    PairLoader& loader_;
  };

 private:
  struct InFlight {
    LoadedBatch batch;
    int remaining = 0;
  };
  void worker_main(int thread_index);
  const std::vector<int64_t>& permutation(int64_t epoch);  // caller holds mu_
  InFlight& batch_for(int64_t b);                           // caller holds mu_
  void produce(PairMaker& maker, int64_t slot, InFlight& target, int row);

  std::vector<SourceRef> sources_;
  AugmentSettings settings_;
  LoaderOptions options_;
  size_t sample_bytes_ = 0;
  std::shared_ptr<BufferPool> pool_;

  std::mutex close_mu_;  // serialises close(): one caller joins the threads, the others wait for it
  mutable std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_, callers_cv_;
  bool stop_ = false;
  int callers_ = 0;  // live Caller objects
  int64_t next_slot_ = 0, end_slot_ = 0, consumer_batch_ = 0;
  std::map<int64_t, std::unique_ptr<InFlight>> in_flight_;
  std::map<int64_t, std::vector<int64_t>> perms_;
  std::exception_ptr error_;
  LoaderStats stats_;
  std::unique_ptr<std::atomic<uint8_t>[]> bad_;
  std::atomic<int64_t> bad_count_{0};
  std::vector<std::thread> threads_;
};

}  // namespace cvrl
