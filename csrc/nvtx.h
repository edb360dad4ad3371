// NVTX ranges on the engine's hot paths (decode, augment, batch rows, waiting for a batch), in the
// "cvrl_fast" domain so Nsight Systems can show or hide them as a group.
//
// Compiled in when CMake found the header-only NVTX3 API (CVRL_HAVE_NVTX). NVTX3 loads a tool only
// when one is attached (NVTX_INJECTION64_PATH, set by nsys); until then every call is one test of a
// function pointer, so the ranges cost nothing measurable without a profiler. Without the headers
// the ranges compile to nothing.
#pragma once

namespace cvrl {

bool nvtx_compiled_in();
void nvtx_push(const char* name);  // name must outlive the range (string literals)
void nvtx_pop();

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtx_push(name); }
  ~NvtxRange() { nvtx_pop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace cvrl
