#include "build_info.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}
#include <turbojpeg.h>

#include "nvtx.h"

namespace cvrl {

std::string build_info() {
  auto ver = [](unsigned v) {
    return std::to_string(v >> 16) + "." + std::to_string((v >> 8) & 0xff) + "." + std::to_string(v & 0xff);
  };
  return "libavcodec " + ver(avcodec_version()) + ", libavformat " + ver(avformat_version()) +
         ", libswscale " + ver(swscale_version()) + ", libturbojpeg " CVRL_TURBOJPEG_VERSION +
         (nvtx_compiled_in() ? ", NVTX ranges on" : ", NVTX ranges off");
}

}  // namespace cvrl
