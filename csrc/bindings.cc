// The one Python-aware file: converts types and releases the GIL around engine calls. No logic here.
// C++ std::invalid_argument -> ValueError, std::out_of_range -> IndexError, std::runtime_error ->
// RuntimeError (pybind11's default translation).
//
// Each engine module has its own section below; keep edits inside your section.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "build_info.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "cvrl_fast native engine (private; use the cvrl_fast package)";
  m.def("build_info", &cvrl::build_info, "Versions of the native libraries the engine was built with.");

  // ---- section: video decode (VideoReader) ----

  // ---- section: jpeg decode ----

  // ---- section: sampling and augmentation ----

  // ---- section: pair loader ----
}
