// The one Python-aware file: converts types and releases the GIL around engine calls. No logic here.
// cvrl::DecodeError (bad media, errors.h) -> cvrl_fast.DecodeError, a RuntimeError subclass; otherwise
// pybind11's default translation: std::invalid_argument -> ValueError, std::out_of_range -> IndexError,
// std::runtime_error -> RuntimeError.
//
// Arrays: every NumPy array handed to Python is either allocated here with a shape the engine computed
// (VideoReader::output_size, the loader's own batch shape, the settings' T and S) or copied from an engine
// vector with that vector's length. No view is ever built over engine memory from a shape Python passed.
//
// Each engine module has its own section below; keep edits inside your section.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>

#include "build_info.h"
#include "errors.h"
#include "ffmpeg_log.h"
#include "jpeg_decode.h"
#include "nvtx.h"
#include "video_reader.h"
#include "augment.h"
#include "sampling.h"
#include "jpeg_crop.h"
#include "pair_loader.h"
#include "tfrecord.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "cvrl_fast native engine (private; use the cvrl_fast package)";
  m.def("build_info", &cvrl::build_info, "Versions of the native libraries the engine was built with.");
  m.def("nvtx_compiled_in", &cvrl::nvtx_compiled_in, "Whether the engine was built with its NVTX ranges.");
  // Registered before any function that can throw it; pybind11 tries this translator before its defaults.
  py::register_exception<cvrl::DecodeError>(m, "DecodeError", PyExc_RuntimeError);
  m.def("set_ffmpeg_log_level", &cvrl::set_ffmpeg_log_level, py::arg("level"),
        "av_log_set_level (process-wide); returns the previous level. See ffmpeg_log.h.");
  m.def("ffmpeg_log_level", &cvrl::ffmpeg_log_level, "av_log_get_level().");
  m.def("restore_ffmpeg_log_level", &cvrl::restore_ffmpeg_log_level, py::arg("level"),
        "Undo set_ffmpeg_log_level: this level, and the engine's default (demoted) decoder messages.");
  m.def("engine_log_offset", &cvrl::engine_log_offset, "log_level_offset of the engine's decoder contexts.");

  // ---- section: video decode (VideoReader) ----
  py::class_<cvrl::VideoReader>(m, "VideoReader")
      .def(py::init([](const std::string& path, int num_threads) {
             py::gil_scoped_release release;
             return std::make_unique<cvrl::VideoReader>(path, num_threads);
           }),
           py::arg("path"), py::arg("num_threads") = 1)
      .def_static(
          "from_bytes",
          [](py::bytes data, int num_threads) {
            std::string copy = data;  // the reader owns its bytes
            py::gil_scoped_release release;
            return std::make_unique<cvrl::VideoReader>(cvrl::VideoReader::from_bytes(std::move(copy), num_threads));
          },
          py::arg("data"), py::arg("num_threads") = 1)
      .def_property_readonly("num_frames", [](const cvrl::VideoReader& r) { return r.info().num_frames; })
      .def_property_readonly("fps", [](const cvrl::VideoReader& r) { return r.info().fps; })
      .def_property_readonly("duration_seconds", [](const cvrl::VideoReader& r) { return r.info().duration_seconds; })
      .def_property_readonly("width", [](const cvrl::VideoReader& r) { return r.info().width; })
      .def_property_readonly("height", [](const cvrl::VideoReader& r) { return r.info().height; })
      .def_property_readonly("codec", [](const cvrl::VideoReader& r) { return r.info().codec; })
      .def_property_readonly("rotation", [](const cvrl::VideoReader& r) { return r.info().rotation; })
      .def_property_readonly("source_name", &cvrl::VideoReader::source_name)
      .def_property_readonly("frame_pts_seconds",
                             [](const cvrl::VideoReader& r) {
                               const auto& v = r.frame_pts_seconds();
                               return py::array_t<double>(static_cast<py::ssize_t>(v.size()), v.data());
                             })
      .def_property_readonly("stats",
                             [](const cvrl::VideoReader& r) {
                               const auto& s = r.stats();
                               py::dict d;
                               d["seeks"] = s.seeks;
                               d["packets_sent"] = s.packets_sent;
                               d["packets_skipped"] = s.packets_skipped;
                               d["nonref_skip_sent"] = s.nonref_skip_sent;
                               d["frames_decoded"] = s.frames_decoded;
                               d["frames_converted"] = s.frames_converted;
                               d["decode_errors"] = s.decode_errors;
                               return d;
                             })
      .def(
          "get_frames",
          [](cvrl::VideoReader& r, std::vector<int64_t> indices, std::optional<std::tuple<int, int, int, int>> crop,
             std::optional<std::pair<int, int>> size) {
            std::optional<cvrl::CropBox> box;
            if (crop) box = cvrl::CropBox{std::get<0>(*crop), std::get<1>(*crop), std::get<2>(*crop), std::get<3>(*crop)};
            // The engine validates crop and size and says how large each frame is; get_frames writes
            // exactly that.
            const auto [h, w] = r.output_size(box, size);
            py::array_t<uint8_t> out({static_cast<py::ssize_t>(indices.size()), static_cast<py::ssize_t>(h),
                                      static_cast<py::ssize_t>(w), static_cast<py::ssize_t>(3)});
            uint8_t* dst = out.mutable_data();
            {
              py::gil_scoped_release release;
              r.get_frames(indices, dst, box, size);
            }
            return out;
          },
          py::arg("indices"), py::arg("crop") = std::nullopt, py::arg("size") = std::nullopt,
          "Frames by presentation index as uint8 [N, H, W, 3] RGB. crop=(x, y, width, height), size=(h, w).");

  // ---- section: jpeg decode ----
  m.def(
      "decode_jpeg_frames",
      [](const std::vector<py::bytes>& frames, std::optional<std::pair<int, int>> size, bool fast_dct) {
        // string_views into the bytes objects, which the list keeps alive while the GIL is released.
        std::vector<std::string_view> views;
        views.reserve(frames.size());
        for (const auto& b : frames) {
          char* data = nullptr;
          py::ssize_t len = 0;
          if (PyBytes_AsStringAndSize(b.ptr(), &data, &len) != 0) throw py::error_already_set();
          views.emplace_back(data, static_cast<size_t>(len));
        }
        // Decode straight into the numpy array: the GIL is held only while the array is created.
        py::object result;
        {
          py::gil_scoped_release release;
          cvrl::decode_jpeg_frames_into(
              views,
              [&](int h, int w) {
                py::gil_scoped_acquire acquire;
                py::array_t<uint8_t> out({static_cast<py::ssize_t>(views.size()), static_cast<py::ssize_t>(h),
                                          static_cast<py::ssize_t>(w), static_cast<py::ssize_t>(3)});
                uint8_t* data = out.mutable_data();
                result = std::move(out);
                return data;
              },
              size, fast_dct ? cvrl::JpegDct::kFast : cvrl::JpegDct::kAccurate);
        }
        if (!result) {  // empty list
          const py::ssize_t h = size ? size->first : 0, w = size ? size->second : 0;
          result = py::array_t<uint8_t>({py::ssize_t{0}, std::max<py::ssize_t>(h, 0), std::max<py::ssize_t>(w, 0),
                                         py::ssize_t{3}});
        }
        return result;
      },
      py::arg("frames"), py::arg("size") = std::nullopt, py::arg("fast_dct") = false,
      "Decode JPEG frames (a list of bytes) to uint8 [N, H, W, 3] RGB; size=(h, w) resizes (bilinear).");

  // ---- section: sampling and augmentation ----
  {
    using cvrl::AugmentSettings;
    py::class_<AugmentSettings>(m, "AugmentSettings")
        .def(py::init<>())
        .def_readwrite("num_frames", &AugmentSettings::num_frames)
        .def_readwrite("frame_stride", &AugmentSettings::frame_stride)
        .def_readwrite("crop_size", &AugmentSettings::crop_size)
        .def_readwrite("target_fps", &AugmentSettings::target_fps)
        .def_readwrite("area_min", &AugmentSettings::area_min)
        .def_readwrite("area_max", &AugmentSettings::area_max)
        .def_readwrite("aspect_min", &AugmentSettings::aspect_min)
        .def_readwrite("aspect_max", &AugmentSettings::aspect_max)
        .def_readwrite("min_object_covered", &AugmentSettings::min_object_covered)
        .def_readwrite("max_attempts", &AugmentSettings::max_attempts)
        .def_readwrite("flip_prob", &AugmentSettings::flip_prob)
        .def_readwrite("jitter_prob", &AugmentSettings::jitter_prob)
        .def_readwrite("brightness", &AugmentSettings::brightness)
        .def_readwrite("contrast", &AugmentSettings::contrast)
        .def_readwrite("saturation", &AugmentSettings::saturation)
        .def_readwrite("hue", &AugmentSettings::hue)
        .def_readwrite("grayscale_prob", &AugmentSettings::grayscale_prob)
        .def_readwrite("blur_prob", &AugmentSettings::blur_prob)
        .def_readwrite("blur_sigma_min", &AugmentSettings::blur_sigma_min)
        .def_readwrite("blur_sigma_max", &AugmentSettings::blur_sigma_max)
        .def_readwrite("solarize_prob", &AugmentSettings::solarize_prob)
        .def_readwrite("truncate_after_resize", &AugmentSettings::truncate_after_resize)
        .def_readwrite("jpeg_dct_scaling", &AugmentSettings::jpeg_dct_scaling)
        .def_property(
            "augment_on",
            [](const AugmentSettings& s) { return s.augment_on == cvrl::AugmentOn::kDevice ? "device" : "host"; },
            [](AugmentSettings& s, const std::string& where) {
              if (where == "host") s.augment_on = cvrl::AugmentOn::kHost;
              else if (where == "device") s.augment_on = cvrl::AugmentOn::kDevice;
              else throw std::invalid_argument("augment_on = '" + where + "' must be 'host' or 'device'");
            })
        .def("validate", &AugmentSettings::validate)
        .def("serialize", &cvrl::serialize_settings,
             "Every field but augment_on as name=value lines, doubles exact (the TensorFlow ops' settings attr).");
    m.def("parse_settings", &cvrl::parse_settings, py::arg("text"));
    py::class_<cvrl::Box>(m, "Box")
        .def(py::init<>())
        .def(py::init([](int x, int y, int w, int h) { return cvrl::Box{x, y, w, h}; }), py::arg("x"),
             py::arg("y"), py::arg("width"), py::arg("height"))
        .def_readwrite("x", &cvrl::Box::x)
        .def_readwrite("y", &cvrl::Box::y)
        .def_readwrite("width", &cvrl::Box::width)
        .def_readwrite("height", &cvrl::Box::height)
        .def("__repr__", [](const cvrl::Box& b) {
          return "Box(x=" + std::to_string(b.x) + ", y=" + std::to_string(b.y) + ", width=" +
                 std::to_string(b.width) + ", height=" + std::to_string(b.height) + ")";
        });
    py::class_<cvrl::ViewParams>(m, "ViewParams")
        .def(py::init<>())
        .def_readwrite("crop", &cvrl::ViewParams::crop)
        .def_readwrite("flip", &cvrl::ViewParams::flip)
        .def_readwrite("jitter", &cvrl::ViewParams::jitter)
        .def_readwrite("brightness", &cvrl::ViewParams::brightness)
        .def_readwrite("contrast", &cvrl::ViewParams::contrast)
        .def_readwrite("saturation", &cvrl::ViewParams::saturation)
        .def_readwrite("hue", &cvrl::ViewParams::hue)
        .def_readwrite("jitter_order", &cvrl::ViewParams::jitter_order)
        .def_readwrite("grayscale", &cvrl::ViewParams::grayscale)
        .def_readwrite("blur", &cvrl::ViewParams::blur)
        .def_readwrite("blur_sigma", &cvrl::ViewParams::blur_sigma)
        .def_readwrite("solarize", &cvrl::ViewParams::solarize);
    py::class_<cvrl::ClipPlan>(m, "ClipPlan")
        .def_readonly("num_frames", &cvrl::ClipPlan::num_frames)
        .def_readonly("offset_range", &cvrl::ClipPlan::offset_range)
        .def_readonly("interval", &cvrl::ClipPlan::interval)
        .def_readonly("start_a", &cvrl::ClipPlan::start_a)
        .def_readonly("start_b", &cvrl::ClipPlan::start_b)
        .def_readonly("swapped", &cvrl::ClipPlan::swapped)
        .def_readonly("indices", &cvrl::ClipPlan::indices);
    py::class_<cvrl::PairParams>(m, "PairParams")
        .def_readonly("clips", &cvrl::PairParams::clips)
        .def_readonly("views", &cvrl::PairParams::views);
    m.def(
        "sample_pair_params",
        [](int64_t num_frames, int height, int width, const AugmentSettings& s, uint64_t seed, uint64_t epoch,
           uint64_t sample) {
          s.validate();
          return cvrl::sample_pair_params(num_frames, height, width, s, seed, epoch, sample);
        },
        py::arg("num_frames"), py::arg("height"), py::arg("width"), py::arg("settings"), py::arg("seed"),
        py::arg("epoch") = 0, py::arg("sample") = 0);
    m.def(
        "sample_intervals",
        [](int64_t offset_range, uint64_t seed, int64_t count) {
          py::array_t<int64_t> out(count);
          int64_t* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            for (int64_t i = 0; i < count; ++i) {
              cvrl::CounterRng rng(seed, 0, static_cast<uint64_t>(i), cvrl::kStreamTemporal);
              o[i] = cvrl::sample_interval(offset_range, rng);
            }
          }
          return out;
        },
        py::arg("offset_range"), py::arg("seed"), py::arg("count"));
    m.def(
        "sample_crop_boxes",
        [](int height, int width, const AugmentSettings& s, uint64_t seed, int64_t count) {
          s.validate();
          py::array_t<int32_t> out({count, static_cast<int64_t>(4)});
          int32_t* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            for (int64_t i = 0; i < count; ++i) {
              cvrl::CounterRng rng(seed, 0, static_cast<uint64_t>(i), cvrl::kStreamCropView1);
              const cvrl::Box b = cvrl::sample_crop_box(height, width, s, rng);
              o[4 * i] = b.x;
              o[4 * i + 1] = b.y;
              o[4 * i + 2] = b.width;
              o[4 * i + 3] = b.height;
            }
          }
          return out;
        },
        py::arg("height"), py::arg("width"), py::arg("settings"), py::arg("seed"), py::arg("count"));
    m.def("fixed_rate_frame_map", &cvrl::fixed_rate_frame_map, py::arg("pts_seconds"), py::arg("target_fps"));
    m.def(
        "plan_pair",
        [](const std::vector<double>& pts, bool fixed_rate, int height, int width, const AugmentSettings& s,
           uint64_t seed, uint64_t epoch, uint64_t key) {
          s.validate();
          const cvrl::PairPlan plan = cvrl::plan_pair(pts, fixed_rate, height, width, s, seed, epoch, key);
          // Each view's T frames as stored-frame numbers (what a decoder that takes frame lists needs).
          std::vector<std::vector<int64_t>> stored(2);
          for (int v = 0; v < 2; ++v)
            for (int64_t index : plan.params.clips.indices[v]) stored[v].push_back(plan.frame_of_index[static_cast<size_t>(index)]);
          return py::make_tuple(plan.params, stored[0], stored[1], plan.unique_frames);
        },
        "The engine's draw for one sample before any pixel is decoded: (PairParams, view 1's stored frames, "
        "view 2's stored frames, the union of both, sorted). The same function PairMaker uses.",
        py::arg("pts_seconds"), py::arg("fixed_rate"), py::arg("height"), py::arg("width"), py::arg("settings"),
        py::arg("seed"), py::arg("epoch") = 0, py::arg("key") = 0);
    m.def(
        "augment_clip",
        [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> frames, const cvrl::ViewParams& p,
           const AugmentSettings& s, bool float_output) {
          s.validate();
          if (frames.ndim() != 4 || frames.shape(3) != 3)
            throw std::invalid_argument("augment_clip: frames must be uint8 [T, H, W, 3]");
          const auto& b = p.crop;
          // In 64 bits: x + width of two ints can overflow (and then pass the check).
          if (b.width < 1 || b.height < 1 || b.x < 0 || b.y < 0 || int64_t{b.x} + b.width > frames.shape(2) ||
              int64_t{b.y} + b.height > frames.shape(1))
            throw std::invalid_argument("augment_clip: crop box lies outside the " + std::to_string(frames.shape(2)) +
                                        "x" + std::to_string(frames.shape(1)) + " frames");
          cvrl::ClipWindow w;
          w.height = b.height;
          w.width = b.width;
          w.row_stride_bytes = frames.shape(2) * 3;
          for (py::ssize_t t = 0; t < frames.shape(0); ++t)
            w.frames.push_back(frames.data() + t * frames.shape(1) * w.row_stride_bytes + b.y * w.row_stride_bytes +
                               b.x * 3);
          const std::vector<py::ssize_t> shape = {frames.shape(0), s.crop_size, s.crop_size, 3};
          if (float_output) {
            py::array_t<float> out(shape);
            float* o = out.mutable_data();
            {
              py::gil_scoped_release release;
              cvrl::augment_clip(w, p, s, nullptr, o);
            }
            return py::object(out);
          }
          py::array_t<uint8_t> out(shape);
          uint8_t* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            cvrl::augment_clip(w, p, s, o, nullptr);
          }
          return py::object(out);
        },
        py::arg("frames"), py::arg("params"), py::arg("settings"), py::arg("float_output") = false);
  }

  // ---- section: pair loader ----
  {
    auto colour_array = [](const cvrl::ViewParams& v) {
      const auto row = cvrl::colour_row(v);
      return py::array_t<float>(py::ssize_t{cvrl::kNumColourParams}, row.data());
    };
    py::class_<cvrl::SourceRef>(m, "SourceRef")
        .def(py::init<>())
        .def_readwrite("path", &cvrl::SourceRef::path)
        .def_readwrite("record_offset", &cvrl::SourceRef::record_offset)
        .def_readwrite("record_length", &cvrl::SourceRef::record_length)
        .def_readwrite("id", &cvrl::SourceRef::id)
        .def_property(
            "data", [](const cvrl::SourceRef& s) { return py::bytes(s.bytes); },
            [](cvrl::SourceRef& s, const py::bytes& b) { s.bytes = std::string(b); })
        .def("name", &cvrl::SourceRef::name);
    m.def(
        "index_tfrecord",
        [](const std::string& path) {
          std::vector<cvrl::RecordRef> refs;
          {
            py::gil_scoped_release release;
            refs = cvrl::index_tfrecord(path);
          }
          std::vector<std::pair<int64_t, int64_t>> out;
          for (const auto& r : refs) out.emplace_back(r.offset, r.length);
          return out;
        },
        py::arg("path"));
    m.def(
        "tfrecord_masked_crc", [](const py::bytes& b) {
          std::string s = b;
          return cvrl::tfrecord_masked_crc(s.data(), s.size());
        });
    m.def(
        "parse_video_record",
        [](const py::bytes& payload) {
          std::string data = payload;
          cvrl::VideoRecord rec = cvrl::parse_video_record(data, "<bytes>");
          py::list frames;
          for (auto f : rec.frames) frames.append(py::bytes(f.data(), f.size()));
          return py::make_tuple(frames, rec.labels, rec.fps);
        },
        py::arg("payload"));
    m.def(
        "jpeg_decode_window",
        [](const py::bytes& jpeg, int x, int y, int width, int height, int scale_denom) {
          std::string data = jpeg;
          if (width < 1 || height < 1) throw std::invalid_argument("jpeg_decode_window: empty window");
          py::array_t<uint8_t> out(std::vector<py::ssize_t>{height, width, 3});
          uint8_t* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            cvrl::jpeg_decode_window(data, cvrl::Box{x, y, width, height}, o, static_cast<int64_t>(width) * 3,
                                     "<bytes>", scale_denom);
          }
          return out;
        },
        py::arg("jpeg"), py::arg("x"), py::arg("y"), py::arg("width"), py::arg("height"), py::arg("scale_denom") = 1);
    m.def("epoch_permutation", &cvrl::epoch_permutation, py::arg("seed"), py::arg("epoch"), py::arg("num_sources"),
          py::arg("shuffle") = true, "The loader's order of one epoch's sources (positions in the shard).");
    m.def("replacement_position", &cvrl::replacement_position, py::arg("seed"), py::arg("epoch"), py::arg("slot"),
          py::arg("attempt"), py::arg("num_sources"), "PairLoader's position for attempt >= 1 of a slot.");
    m.def("attempt_key", &cvrl::attempt_key, py::arg("source_id"), py::arg("slot"), py::arg("attempt"),
          "PairLoader's sample key for an attempt of a slot.");
    m.def("colour_row", colour_array, py::arg("params"),
          "float32 [13]: one view's colour parameters in the device-mode layout (cvrl_fast.COLOUR_FIELDS).");
    m.def(
        "make_pair",
        [colour_array](const cvrl::SourceRef& source, const cvrl::AugmentSettings& s, uint64_t seed, uint64_t epoch,
           uint64_t key, bool float_output) {
          s.validate();
          const std::vector<py::ssize_t> shape = {s.num_frames, s.crop_size, s.crop_size, 3};
          py::array out1 = float_output ? py::array(py::array_t<float>(shape)) : py::array(py::array_t<uint8_t>(shape));
          py::array out2 = float_output ? py::array(py::array_t<float>(shape)) : py::array(py::array_t<uint8_t>(shape));
          cvrl::PairOutput o;
          if (float_output) {
            o.f32[0] = static_cast<float*>(out1.mutable_data());
            o.f32[1] = static_cast<float*>(out2.mutable_data());
          } else {
            o.u8[0] = static_cast<uint8_t*>(out1.mutable_data());
            o.u8[1] = static_cast<uint8_t*>(out2.mutable_data());
          }
          cvrl::PairParams params;
          {
            py::gil_scoped_release release;
            cvrl::PairMaker maker(s);
            params = maker.make(source, seed, epoch, key, o);
          }
          return py::make_tuple(out1, out2, params, colour_array(params.views[0]), colour_array(params.views[1]));
        },
        py::arg("source"), py::arg("settings"), py::arg("seed"), py::arg("epoch") = 0, py::arg("key") = 0,
        py::arg("float_output") = false);

    // Hands a batch buffer to NumPy without a copy: the array's base capsule owns a reference to it.
    // Shape and dtype are the ones the loader recorded in the batch when it filled the buffer, checked
    // against the buffer's capacity, so an array can never reach past its buffer.
    auto to_array = [](const std::shared_ptr<uint8_t>& buf, const cvrl::LoadedBatch& b) {
      const std::vector<py::ssize_t> shape(b.view_shape.begin(), b.view_shape.end());
      size_t bytes = b.float32 ? sizeof(float) : 1;
      for (const py::ssize_t d : shape) bytes *= static_cast<size_t>(d);
      if (!buf || bytes > b.view_capacity_bytes)
        throw std::logic_error("PairLoader: batch view of " + std::to_string(bytes) + " bytes exceeds its " +
                               std::to_string(b.view_capacity_bytes) + "-byte buffer");
      auto holder = std::make_unique<std::shared_ptr<uint8_t>>(buf);
      py::capsule owner(holder.get(), [](void* p) { delete static_cast<std::shared_ptr<uint8_t>*>(p); });
      holder.release();  // owned by the capsule from here on
      if (b.float32) return py::array(py::array_t<float>(shape, reinterpret_cast<float*>(buf.get()), owner));
      return py::array(py::array_t<uint8_t>(shape, buf.get(), owner));
    };
    // Runs f() without the GIL and takes the GIL back in plain code, not in a destructor as
    // py::gil_scoped_release does: once interpreter finalization has begun, CPython (3.11 to 3.13)
    // ends any other thread that takes the GIL back with pthread_exit, and a forced unwind that starts
    // inside a (noexcept) destructor is std::terminate, which aborts the whole process at exit. From
    // plain code it unwinds this frame and the thread just ends.
    auto without_gil = [](auto&& f) {
      using R = decltype(f());
      std::exception_ptr error;
      std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> result;
      PyThreadState* state = PyEval_SaveThread();
      try {
        if constexpr (std::is_void_v<R>) {
          f();
          result.emplace(true);
        } else {
          result.emplace(f());
        }
      } catch (...) {  // rethrown below, once this thread holds the GIL again
        error = std::current_exception();
      }
      PyEval_RestoreThread(state);
      if (error) std::rethrow_exception(error);
      if constexpr (!std::is_void_v<R>) return std::move(*result);
    };
    // Python runs signal handlers in the main thread only (looked up per call: a fork from another
    // thread makes that thread the child's main thread).
    py::object main_thread = py::module_::import("threading").attr("main_thread");
    py::class_<cvrl::PairLoader>(m, "PairLoader")
        .def(py::init([](std::vector<cvrl::SourceRef> sources, const cvrl::AugmentSettings& s, int batch_size,
                         uint64_t seed, int num_threads, bool shuffle, int64_t epochs, int prefetch_batches,
                         bool float_output, int64_t start_batch, bool drop_remainder, int max_retries) {
               cvrl::LoaderOptions o;
               o.batch_size = batch_size;
               o.seed = seed;
               o.num_threads = num_threads;
               o.shuffle = shuffle;
               o.epochs = epochs;
               o.prefetch_batches = prefetch_batches;
               o.float_output = float_output;
               o.start_batch = start_batch;
               o.drop_remainder = drop_remainder;
               o.max_retries = max_retries;
               return std::make_unique<cvrl::PairLoader>(std::move(sources), s, o);
             }),
             py::arg("sources"), py::arg("settings"), py::arg("batch_size"), py::arg("seed"), py::arg("num_threads"),
             py::arg("shuffle"), py::arg("epochs"), py::arg("prefetch_batches"), py::arg("float_output"),
             py::arg("start_batch"), py::arg("drop_remainder"), py::arg("max_retries"))
        .def(
            "next",
            [to_array, without_gil, main_thread](cvrl::PairLoader& self) -> py::object {
              // The main thread waits in short slices and runs signal handlers between them, so Ctrl-C
              // (KeyboardInterrupt) is honoured while blocked. No other thread can run them: those wait
              // without the GIL until a batch, the end, an error or close() (which wakes them) rather
              // than taking the GIL back ten times a second, which at interpreter exit ends the thread.
              const bool is_main = PyThread_get_thread_ident() == main_thread().attr("ident").cast<unsigned long>();
              const double slice = is_main ? 0.1 : std::numeric_limits<double>::infinity();
              while (true) {
                std::pair<std::optional<cvrl::LoadedBatch>, bool> r;
                {
                  // Held until this thread has the GIL again: close() waits for it (see Caller).
                  cvrl::PairLoader::Caller caller(self);
                  r = without_gil([&] { return self.next(slice); });
                }
                if (r.second) {
                  if (!r.first) return py::none();  // end of the data, or closed
                  const cvrl::LoadedBatch& b = *r.first;
                  py::object colour[2] = {py::none(), py::none()};
                  if (self.device_colour()) {
                    for (int v = 0; v < 2; ++v) {
                      // A copy of the vector, with its own length.
                      const py::ssize_t rows = static_cast<py::ssize_t>(b.colour[v].size() / cvrl::kNumColourParams);
                      colour[v] = py::array_t<float>({rows, py::ssize_t{cvrl::kNumColourParams}}, b.colour[v].data());
                    }
                  }
                  return py::make_tuple(to_array(b.views[0], b), to_array(b.views[1], b),
                                        py::array_t<int64_t>(b.index.size(), b.index.data()),
                                        py::array_t<int64_t>(b.epoch.size(), b.epoch.data()), b.batch_index,
                                        colour[0], colour[1]);
                }
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // no Caller held here
              }
            },
            "The next batch (view1, view2, index, epoch, batch_index, colour1, colour2; the colour rows are None "
            "unless augment_on=device), or None at the end of the data or once "
            "closed (also when close() is called by another thread while this one waits).")
        .def("close", [without_gil](cvrl::PairLoader& self) { without_gil([&] { self.close(); }); },
             "Stops and joins the workers (thread-safe, idempotent); batches already returned stay valid.")
        .def_property_readonly("closed", &cvrl::PairLoader::closed)
        .def("next_batch", &cvrl::PairLoader::next_batch)
        .def("num_sources", &cvrl::PairLoader::num_sources)
        .def("stats", [](const cvrl::PairLoader& self) {
          const cvrl::LoaderStats st = self.stats();
          py::dict d;
          d["samples"] = st.samples;
          d["batches"] = st.batches;
          d["failed_attempts"] = st.failed_attempts;
          d["wait_seconds"] = st.wait_seconds;
          d["decode_seconds"] = st.decode_seconds;
          d["augment_seconds"] = st.augment_seconds;
          py::list skipped;
          for (const auto& [name, reason] : st.skipped) skipped.append(py::make_tuple(name, reason));
          d["skipped"] = skipped;
          return d;
        })
        .def(
            "skipped_since",
            [](const cvrl::PairLoader& self, size_t start) {
              py::list out;
              for (const auto& [name, reason] : self.skipped_since(start)) out.append(py::make_tuple(name, reason));
              return out;
            },
            py::arg("start"), "stats()['skipped'][start:]: the skips after the first `start` ones.");
  }

  // ---- section: sanitizer test hooks (ASan builds only: make test-asan, make fuzz) ----
  // _test_leak_bytes(n) loses n heap bytes on purpose, the way a missing delete in the engine would, so
  // tests/test_reliability.py can show that make test-asan's leak check reports a leak in this extension
  // (and is clean without the call). Not compiled into normal builds.
#if defined(__SANITIZE_ADDRESS__)
#define CVRL_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CVRL_ASAN_BUILD 1
#endif
#endif
#ifdef CVRL_ASAN_BUILD
  m.def(
      "_test_leak_bytes",
      [](size_t n) {
        static char* volatile last = nullptr;  // volatile: the allocation cannot be optimised away
        last = new char[n];
        std::memset(last, 0x5a, n);
        last = nullptr;  // the only pointer to it is gone: a leak
      },
      py::arg("n"), "Test hook (ASan builds): leaks n bytes allocated with new[].");
#endif
}
