"""`make fuzz` driver: one atheris (libFuzzer) process per target, over the ASan + UBSan + coverage build.

    python -m fuzz.run TARGET CORPUS_DIR [SEED_DIR ...] -max_total_time=N [libFuzzer flags]

The extension must be built with clang -fsanitize=fuzzer-no-link (make fuzz does it): libFuzzer then
sees the coverage of the C++ engine, which is what guides the mutations. The Python harness is not
instrumented: its branches say little, and instrumenting it would dilute the C++ signal.
"""
from __future__ import annotations

import sys

import atheris

from fuzz import harness


def main() -> None:
    target = sys.argv[1]
    if target not in harness.TARGETS:
        raise SystemExit(f"fuzz.run: unknown target {target!r}; one of {', '.join(harness.TARGETS)}")

    def one_input(data: bytes) -> None:
        harness.run_one(target, data)

    # FFmpeg's messages about the mutants cost time and say nothing the exceptions do not; this process
    # is the fuzzer's own, so it may silence FFmpeg process-wide.
    harness.cvrl_fast.set_ffmpeg_log_level("quiet")
    atheris.Setup([sys.argv[0]] + sys.argv[2:], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
