#include "nvtx.h"

#if CVRL_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace cvrl {

#if CVRL_HAVE_NVTX
namespace {
// Created on first use: NVTX3 initialises (and looks for a tool) on its first call.
nvtxDomainHandle_t domain() {
  static const nvtxDomainHandle_t handle = nvtxDomainCreateA("cvrl_fast");
  return handle;
}
}  // namespace

bool nvtx_compiled_in() { return true; }

void nvtx_push(const char* name) {
  nvtxEventAttributes_t attributes = {};
  attributes.version = NVTX_VERSION;
  attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
  attributes.message.ascii = name;
  nvtxDomainRangePushEx(domain(), &attributes);
}

void nvtx_pop() { nvtxDomainRangePop(domain()); }
#else
bool nvtx_compiled_in() { return false; }
void nvtx_push(const char*) {}
void nvtx_pop() {}
#endif

}  // namespace cvrl
