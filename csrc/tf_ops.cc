// The one TensorFlow-aware file: the engine as TensorFlow ops, built into cvrl_fast/_tf_ops.so (only
// when TensorFlow is importable at build time) and loaded by cvrl_fast/tf_ops.py. No engine logic
// here: the kernels convert tensors and attrs and call PairMaker and make_slot_sample, the very code
// PairLoader runs, so the graph pipeline gives PairLoader's bytes.
//
//   CvrlMakePair       one sample from one source (sample_pair as an op); a bad source gives ok=false
//                      and its message, not an op error.
//   CvrlSlotPair       the sample of slot k of the loader's endless sequence over a source table: the
//                      epoch's permutation, replacements for failed sources, as PairLoader does.
//   CvrlSkippedSources this process's record of the sources CvrlSlotPair skipped (for reports).
//
// Both sample ops are stateless (their outputs are pure functions of inputs and attrs), so tf.data can
// run them in parallel, checkpoint the pipeline around them and ship it to tf.data service workers.
// Their kernels keep caches (PairMaker buffers, recent permutations) that never change an output.
// Bad arguments (shapes, ranges, settings) are InvalidArgument with the parameter, value and valid range.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"

#include "pair_loader.h"
#include "sampling.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::TensorShapeUtils;
namespace errors = tensorflow::errors;
namespace shape_inference = tensorflow::shape_inference;

// The settings attr plus the augment_on attr (kept out of the settings text: it picks the outputs'
// meaning, not a draw).
absl::Status settings_from_attrs(const std::string& text, const std::string& augment_on, cvrl::AugmentSettings* out) {
  try {
    *out = cvrl::parse_settings(text);
  } catch (const std::exception& e) {
    return errors::InvalidArgument(e.what());
  }
  if (augment_on == "host") out->augment_on = cvrl::AugmentOn::kHost;
  else if (augment_on == "device") out->augment_on = cvrl::AugmentOn::kDevice;
  else return errors::InvalidArgument("augment_on = '", augment_on, "' must be 'host' or 'device'");
  return absl::OkStatus();
}

// Outputs 0-3 (view1, view2: dtype [T, S, S, 3]; colour1, colour2: float32 [kNumColourParams]).
absl::Status pair_shapes(shape_inference::InferenceContext* c) {
  std::string text, augment_on;
  TF_RETURN_IF_ERROR(c->GetAttr("settings", &text));
  TF_RETURN_IF_ERROR(c->GetAttr("augment_on", &augment_on));
  cvrl::AugmentSettings s;
  TF_RETURN_IF_ERROR(settings_from_attrs(text, augment_on, &s));
  const auto view = c->MakeShape({s.num_frames, s.crop_size, s.crop_size, 3});
  c->set_output(0, view);
  c->set_output(1, view);
  c->set_output(2, c->Vector(cvrl::kNumColourParams));
  c->set_output(3, c->Vector(cvrl::kNumColourParams));
  return absl::OkStatus();
}

absl::Status scalar_input(OpKernelContext* ctx, int index, const char* op, const char* name, const Tensor** out) {
  *out = &ctx->input(index);
  if (!TensorShapeUtils::IsScalar((*out)->shape())) {
    return errors::InvalidArgument(op, ": ", name, " must be a scalar, got shape ", (*out)->shape().DebugString());
  }
  return absl::OkStatus();
}

// Shared by both sample kernels: settings, dtype, a pool of PairMakers (each holds reusable decode
// buffers and is not thread-safe; tf.data calls Compute from several threads at once), and the outputs.
class PairKernelBase : public OpKernel {
 public:
  explicit PairKernelBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string text, augment_on;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("settings", &text));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("augment_on", &augment_on));
    OP_REQUIRES_OK(ctx, settings_from_attrs(text, augment_on, &settings_));
    tensorflow::DataType dtype;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dtype", &dtype));
    float_output_ = dtype == tensorflow::DT_FLOAT;
    OP_REQUIRES(ctx, !(float_output_ && settings_.augment_on == cvrl::AugmentOn::kDevice),
                errors::InvalidArgument("dtype=float32 needs augment_on='host' (device mode gives uint8 views and "
                                        "the accelerator does the float colour stage)"));
  }

 protected:
  class MakerLease {
   public:
    explicit MakerLease(PairKernelBase& k) : k_(k) {
      std::lock_guard<std::mutex> lock(k_.makers_mu_);
      if (!k_.makers_.empty()) {
        maker_ = std::move(k_.makers_.back());
        k_.makers_.pop_back();
      }
      if (!maker_) maker_ = std::make_unique<cvrl::PairMaker>(k_.settings_);
    }
    ~MakerLease() {
      std::lock_guard<std::mutex> lock(k_.makers_mu_);
      k_.makers_.push_back(std::move(maker_));
    }
    cvrl::PairMaker& operator*() { return *maker_; }

   private:
    PairKernelBase& k_;
    std::unique_ptr<cvrl::PairMaker> maker_;
  };

  // Allocates view1, view2, colour1, colour2 and points `out` at the views.
  absl::Status allocate_pair(OpKernelContext* ctx, cvrl::PairOutput* out, Tensor* colour[2]) {
    const TensorShape view({settings_.num_frames, settings_.crop_size, settings_.crop_size, 3});
    for (int v = 0; v < 2; ++v) {
      Tensor* t = nullptr;
      TF_RETURN_IF_ERROR(ctx->allocate_output(v, view, &t));
      if (float_output_) out->f32[v] = t->flat<float>().data();
      else out->u8[v] = t->flat<uint8_t>().data();
      TF_RETURN_IF_ERROR(ctx->allocate_output(2 + v, TensorShape({cvrl::kNumColourParams}), &colour[v]));
      std::fill_n(colour[v]->flat<float>().data(), cvrl::kNumColourParams, 0.f);
    }
    return absl::OkStatus();
  }

  // Device mode: each view's colour row; host mode leaves the zeros (the views are final).
  void write_colour(const cvrl::PairParams& params, Tensor* colour[2]) const {
    if (settings_.augment_on != cvrl::AugmentOn::kDevice) return;
    for (int v = 0; v < 2; ++v) {
      const auto row = cvrl::colour_row(params.views[v]);
      std::copy(row.begin(), row.end(), colour[v]->flat<float>().data());
    }
  }

  size_t view_bytes() const {
    return static_cast<size_t>(settings_.num_frames) * settings_.crop_size * settings_.crop_size * 3 *
           (float_output_ ? sizeof(float) : 1);
  }

  cvrl::AugmentSettings settings_;
  bool float_output_ = false;

 private:
  std::mutex makers_mu_;
  std::vector<std::unique_ptr<cvrl::PairMaker>> makers_;
};

// ---------------------------------------------------------------------------------------------
// CvrlMakePair

class MakePairKernel : public PairKernelBase {
 public:
  using PairKernelBase::PairKernelBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor *path, *offset, *length, *seed, *epoch, *key;
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 0, "CvrlMakePair", "path", &path));
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 1, "CvrlMakePair", "record_offset", &offset));
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 2, "CvrlMakePair", "record_length", &length));
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 3, "CvrlMakePair", "seed", &seed));
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 4, "CvrlMakePair", "epoch", &epoch));
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 5, "CvrlMakePair", "sample_key", &key));
    cvrl::SourceRef src;
    src.path = std::string(path->scalar<tensorflow::tstring>()());
    src.record_offset = offset->scalar<int64_t>()();
    src.record_length = length->scalar<int64_t>()();
    const int64_t epoch_value = epoch->scalar<int64_t>()();
    OP_REQUIRES(ctx, src.record_offset >= -1,
                errors::InvalidArgument("CvrlMakePair: record_offset = ", src.record_offset,
                                        " must be >= 0 (a TFRecord record) or -1 (a video file)"));
    OP_REQUIRES(ctx, src.record_length >= 0,
                errors::InvalidArgument("CvrlMakePair: record_length = ", src.record_length, " must be >= 0"));
    OP_REQUIRES(ctx, epoch_value >= 0, errors::InvalidArgument("CvrlMakePair: epoch = ", epoch_value, " must be >= 0"));
    OP_REQUIRES(ctx, !src.path.empty(), errors::InvalidArgument("CvrlMakePair: path is empty"));

    cvrl::PairOutput out;
    Tensor* colour[2];
    OP_REQUIRES_OK(ctx, allocate_pair(ctx, &out, colour));
    Tensor *ok = nullptr, *error = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({}), &ok));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({}), &error));
    ok->scalar<bool>()() = true;
    error->scalar<tensorflow::tstring>()() = "";
    // seed and sample_key are uint64 in the engine: the int64 inputs carry their bits.
    const auto seed_bits = static_cast<uint64_t>(seed->scalar<int64_t>()());
    const auto key_bits = static_cast<uint64_t>(key->scalar<int64_t>()());
    try {
      MakerLease maker(*this);
      const cvrl::PairParams params = (*maker).make(src, seed_bits, static_cast<uint64_t>(epoch_value), key_bits, out);
      write_colour(params, colour);
    } catch (const std::bad_alloc&) {
      ctx->SetStatus(errors::ResourceExhausted("CvrlMakePair: out of memory making a sample of ", src.name()));
      return;
    } catch (const std::exception& e) {
      // Bad media is data, not a program error: a flag and the reason, and zero views.
      ok->scalar<bool>()() = false;
      error->scalar<tensorflow::tstring>()() = e.what();  // names the source
      for (int v = 0; v < 2; ++v) {
        void* p = float_output_ ? static_cast<void*>(out.f32[v]) : static_cast<void*>(out.u8[v]);
        std::memset(p, 0, view_bytes());
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The record of skipped sources: one per process, as PairLoader.stats is one per loader. Writing it
// does not change any op output, so the sample ops stay stateless.

struct SkipRecord {
  std::mutex mu;
  std::set<std::string> names, logged;
  std::vector<std::pair<std::string, std::string>> skipped;  // (source, reason), first failure each
  int64_t failed_attempts = 0;
};

SkipRecord& skip_record() {
  static SkipRecord* record = new SkipRecord();  // never destroyed: kernels may run during exit
  return *record;
}

// ---------------------------------------------------------------------------------------------
// CvrlSlotPair

class SlotPairKernel : public PairKernelBase {
 public:
  explicit SlotPairKernel(OpKernelConstruction* ctx) : PairKernelBase(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shuffle", &shuffle_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_retries", &max_retries_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("log_skips", &log_skips_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& paths = ctx->input(0);
    const Tensor& offsets = ctx->input(1);
    const Tensor& lengths = ctx->input(2);
    const Tensor& ids = ctx->input(3);
    const Tensor *seed, *slot;
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 4, "CvrlSlotPair", "seed", &seed));
    OP_REQUIRES_OK(ctx, scalar_input(ctx, 5, "CvrlSlotPair", "slot", &slot));
    OP_REQUIRES(ctx, TensorShapeUtils::IsVector(paths.shape()) && paths.NumElements() >= 1,
                errors::InvalidArgument("CvrlSlotPair: paths must be a vector of >= 1 sources, got shape ",
                                        paths.shape().DebugString()));
    const int64_t n = paths.NumElements();
    for (const auto& [t, name] : {std::pair<const Tensor*, const char*>{&offsets, "record_offsets"},
                                  {&lengths, "record_lengths"}, {&ids, "source_ids"}}) {
      OP_REQUIRES(ctx, TensorShapeUtils::IsVector(t->shape()) && t->NumElements() == n,
                  errors::InvalidArgument("CvrlSlotPair: ", name, " must be a vector of ", n,
                                          " (one per path), got shape ", t->shape().DebugString()));
    }
    const int64_t slot_value = slot->scalar<int64_t>()();
    OP_REQUIRES(ctx, slot_value >= 0, errors::InvalidArgument("CvrlSlotPair: slot = ", slot_value, " must be >= 0"));
    const auto seed_bits = static_cast<uint64_t>(seed->scalar<int64_t>()());

    cvrl::PairOutput out;
    Tensor* colour[2];
    OP_REQUIRES_OK(ctx, allocate_pair(ctx, &out, colour));
    Tensor* index = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({}), &index));

    TableSources sources(paths, offsets, lengths, ids, log_skips_);
    try {
      const auto perm = permutation(seed_bits, slot_value / n, n);
      MakerLease maker(*this);
      const cvrl::SlotSample sample = cvrl::make_slot_sample(
          *maker, sources, seed_bits, slot_value, (*perm)[static_cast<size_t>(slot_value % n)], max_retries_, out);
      write_colour(sample.params, colour);
      index->scalar<int64_t>()() = sample.source_id;
    } catch (const std::bad_alloc&) {
      ctx->SetStatus(errors::ResourceExhausted("CvrlSlotPair: out of memory making the sample of slot ", slot_value));
    } catch (const std::exception& e) {
      // Every replacement failed: the data cannot go on (the trainer reports this line).
      ctx->SetStatus(errors::DataLoss("cvrl_fast input: ", e.what()));
    }
  }

 private:
  // The op's input tensors as make_slot_sample's sources; failures go to the process's skip record.
  class TableSources : public cvrl::SlotSources {
   public:
    TableSources(const Tensor& paths, const Tensor& offsets, const Tensor& lengths, const Tensor& ids, bool log_skips)
        : paths_(paths.flat<tensorflow::tstring>()), offsets_(offsets.flat<int64_t>()),
          lengths_(lengths.flat<int64_t>()), ids_(ids.flat<int64_t>()), log_skips_(log_skips) {}
    int64_t size() const override { return paths_.size(); }
    const cvrl::SourceRef& at(int64_t position) override {
      scratch_.path = std::string(paths_(position));
      scratch_.record_offset = offsets_(position);
      scratch_.record_length = lengths_(position);
      scratch_.id = ids_(position);
      return scratch_;
    }
    void failed(int64_t, const cvrl::SourceRef& src, const std::exception& e) override {
      last_ = src.name() + ": " + e.what();
      SkipRecord& record = skip_record();
      std::lock_guard<std::mutex> lock(record.mu);
      ++record.failed_attempts;
      if (record.names.insert(src.name()).second) record.skipped.emplace_back(src.name(), e.what());
      // Logged once per source and process, by the first pipeline that logs at all.
      if (log_skips_ && record.logged.insert(src.name()).second) {
        std::fprintf(stderr, "cvrl_fast: skipping %s: %s\n", src.name().c_str(), e.what());
      }
      // As PairLoader: once every source of the table has failed, say so (not "N replacements in a row").
      // Checked only when the process has recorded at least n failed names, so a run with a few bad
      // files never pays for it.
      if (record.names.size() >= static_cast<size_t>(size())) all_failed_locked(record);
    }
    std::string exhausted_detail() const override { return " (last: " + last_ + ")"; }

   private:
    void all_failed_locked(const SkipRecord& record) const {
      std::set<std::string> mine;
      for (int64_t i = 0; i < size(); ++i) {
        cvrl::SourceRef ref;
        ref.path = std::string(paths_(i));
        ref.record_offset = offsets_(i);
        ref.record_length = lengths_(i);
        if (record.names.count(ref.name()) == 0) return;  // this one has not failed
        mine.insert(ref.name());
      }
      for (const auto& [name, reason] : record.skipped) {
        if (mine.count(name)) {
          throw std::runtime_error("PairLoader: every one of the " + std::to_string(size()) +
                                   " sources failed to decode; first error: " + name + ": " + reason);
        }
      }
    }

    tensorflow::TTypes<tensorflow::tstring>::ConstFlat paths_;
    tensorflow::TTypes<int64_t>::ConstFlat offsets_, lengths_, ids_;
    bool log_skips_;
    cvrl::SourceRef scratch_;
    std::string last_;
  };

  // The epoch's order, computed once per (seed, epoch, n) and kept for the few most recent epochs
  // (a batch may straddle two; parallel calls run a little ahead).
  std::shared_ptr<const std::vector<int64_t>> permutation(uint64_t seed, int64_t epoch, int64_t n) {
    const auto key = std::make_tuple(seed, epoch, n);
    std::lock_guard<std::mutex> lock(perm_mu_);
    auto it = perms_.find(key);
    if (it != perms_.end()) return it->second;
    auto perm = std::make_shared<const std::vector<int64_t>>(cvrl::epoch_permutation(seed, epoch, n, shuffle_));
    perms_.emplace(key, perm);
    if (perms_.size() > 4) {  // drop the oldest epoch
      auto oldest = std::min_element(perms_.begin(), perms_.end(), [](const auto& a, const auto& b) {
        return std::get<1>(a.first) < std::get<1>(b.first);
      });
      perms_.erase(oldest);
    }
    return perm;
  }

  bool shuffle_ = true;
  int max_retries_ = 32;
  bool log_skips_ = true;
  std::mutex perm_mu_;
  std::map<std::tuple<uint64_t, int64_t, int64_t>, std::shared_ptr<const std::vector<int64_t>>> perms_;
};

// ---------------------------------------------------------------------------------------------
// CvrlSkippedSources

class SkippedSourcesKernel : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    SkipRecord& record = skip_record();
    std::lock_guard<std::mutex> lock(record.mu);
    const int64_t k = static_cast<int64_t>(record.skipped.size());
    Tensor *names = nullptr, *reasons = nullptr, *attempts = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({k}), &names));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({k}), &reasons));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({}), &attempts));
    for (int64_t i = 0; i < k; ++i) {
      names->flat<tensorflow::tstring>()(i) = record.skipped[static_cast<size_t>(i)].first;
      reasons->flat<tensorflow::tstring>()(i) = record.skipped[static_cast<size_t>(i)].second;
    }
    attempts->scalar<int64_t>()() = record.failed_attempts;
  }
};

}  // namespace

REGISTER_OP("CvrlMakePair")
    .Input("path: string")
    .Input("record_offset: int64")
    .Input("record_length: int64")
    .Input("seed: int64")
    .Input("epoch: int64")
    .Input("sample_key: int64")
    .Output("view1: dtype")
    .Output("view2: dtype")
    .Output("colour1: float")
    .Output("colour2: float")
    .Output("ok: bool")
    .Output("error: string")
    .Attr("settings: string")
    .Attr("augment_on: {'host', 'device'} = 'host'")
    .Attr("dtype: {uint8, float} = DT_UINT8")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(pair_shapes(c));
      c->set_output(4, c->Scalar());
      c->set_output(5, c->Scalar());
      return absl::OkStatus();
    })
    .Doc(R"doc(
Two augmented views of one video (cvrl_fast.sample_pair as an op).

path, record_offset, record_length: a video file (record_offset -1) or one TFRecord record.
seed, epoch, sample_key: the draw's key (seed and sample_key carry uint64 bits).
colour1, colour2: each clip's colour row in device mode; zeros in host mode.
ok, error: false and the reason when the source does not decode (the views are then zeros).
)doc");

REGISTER_OP("CvrlSlotPair")
    .Input("paths: string")
    .Input("record_offsets: int64")
    .Input("record_lengths: int64")
    .Input("source_ids: int64")
    .Input("seed: int64")
    .Input("slot: int64")
    .Output("view1: dtype")
    .Output("view2: dtype")
    .Output("colour1: float")
    .Output("colour2: float")
    .Output("index: int64")
    .Attr("settings: string")
    .Attr("augment_on: {'host', 'device'} = 'host'")
    .Attr("dtype: {uint8, float} = DT_UINT8")
    .Attr("shuffle: bool = true")
    .Attr("max_retries: int >= 0 = 32")
    .Attr("log_skips: bool = true")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(pair_shapes(c));
      c->set_output(4, c->Scalar());
      return absl::OkStatus();
    })
    .Doc(R"doc(
The sample of one slot of PairLoader's sequence over a source table (paths, record_offsets,
record_lengths, source_ids: one entry per source): epoch slot / n, source permutation(epoch)[slot % n],
failed sources replaced by PairLoader's deterministic draws. index: the id of the source used.
)doc");

REGISTER_OP("CvrlSkippedSources")
    .Output("names: string")
    .Output("reasons: string")
    .Output("failed_attempts: int64")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      c->set_output(2, c->Scalar());
      return absl::OkStatus();
    })
    .Doc("The sources CvrlSlotPair skipped in this process (first reason each) and its failed attempts.");

REGISTER_KERNEL_BUILDER(Name("CvrlMakePair").Device(DEVICE_CPU), MakePairKernel);
REGISTER_KERNEL_BUILDER(Name("CvrlSlotPair").Device(DEVICE_CPU), SlotPairKernel);
REGISTER_KERNEL_BUILDER(Name("CvrlSkippedSources").Device(DEVICE_CPU), SkippedSourcesKernel);
