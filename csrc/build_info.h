// Versions of the native libraries the engine was built against (for bug reports and `cvrl-fast info`).
#pragma once
#include <string>

namespace cvrl {
std::string build_info();
}  // namespace cvrl
