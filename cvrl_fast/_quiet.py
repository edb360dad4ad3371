"""Keep TensorFlow's native start-up lines out of the CLI's output (not in `--verbose`).

TF_CPP_MIN_LOG_LEVEL silences TensorFlow's own C++ logging, but TF 2.16+ also logs through absl before
absl::InitializeLog() runs ("WARNING: All log messages before absl::InitializeLog() ...", "I0000 ...
cudart_stub.cc:31] Could not find cuda drivers ..."), and on a machine without a GPU driver it logs
"failed call to cuInit" as an error; no switch turns those off. So the CLI routes file descriptor 2
through a small filter process that drops exactly those line shapes and passes everything else on
unchanged (Python tracebacks, our own messages, FFmpeg's, the C++ loader's skip lines). A process rather
than a thread, so that whatever the main process writes before it dies (an abort message included) still
reaches the terminal: the filter drains the pipe until the last writer has gone.
"""
from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys

# One line each: absl's pre-init banner, absl-format INFO/WARNING lines (I/W, MMDD, time, thread id,
# file:line]), and the cuInit error of a CUDA build on a machine without a driver.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] .*"
    r"|E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ cuda_(platform|executor|diagnostics)\.cc:\d+\] .*)$")

_FILTER = r"""
import os, re, sys
noise = re.compile(sys.argv[1])
out = os.fdopen(int(sys.argv[2]), "wb", buffering=0)
for raw in sys.stdin.buffer:
    if not noise.match(raw.decode("utf-8", "replace").rstrip("\r\n")):
        out.write(raw)
"""

_installed = False


def filter_native_stderr() -> None:
    """Route fd 2 through the filter for the rest of the process (idempotent)."""
    global _installed
    if _installed:
        return
    sys.stderr.flush()
    original = os.dup(2)
    proc = subprocess.Popen([sys.executable, "-c", _FILTER, NOISE.pattern, str(original)], stdin=subprocess.PIPE,
                            pass_fds=(original,), close_fds=True)
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()  # fd 2 is now the pipe's only write end in this process
    _installed = True

    @atexit.register
    def _restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's write end: the filter sees EOF, drains and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
