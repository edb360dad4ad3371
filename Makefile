# The two commands of the README: `make demo` and `make test`. Each one alone does all set-up on a
# fresh Debian machine (apt packages, a project venv, an editable build of the C++ extension).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PKGS := g++ make pkg-config libavformat-dev libavcodec-dev libavutil-dev libswscale-dev \
            libturbojpeg0-dev libjpeg62-turbo-dev ffmpeg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Serialise concurrent rebuilds of the extension (several shells may call `make build`).
LOCK := flock $(CURDIR)/.build.lock

.PHONY: setup apt venv build test test-all test-asan asan-build test-tsan tsan-build fuzz fuzz-build setup-dali \
        test-dali bench bench-baseline demo clean

setup: apt venv build

apt:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.deps-stamp

$(VENV)/.deps-stamp: pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" "nvidia-nvtx-cu12>=12.0" cmake ninja
	$(PIP) install -q -e ".[test,bench,demo]" --no-build-isolation
	@touch $@

# Incremental rebuild of the C++ extension (editable install, cached CMake build dir).
build: venv
	@$(LOCK) $(PIP) install -q -e . --no-deps --no-build-isolation

test: setup
	$(PY) scripts/fetch_clips.py
	$(PY) -m pytest -q

test-all: setup
	$(PY) scripts/fetch_clips.py
	$(PY) -m pytest -q -m ""

# The loader and decoder tests against an AddressSanitizer + UBSan build of the extension: its own venv
# ($(ASAN_VENV), which sees the project venv's packages through a .pth file) and build dir (build/asan),
# so the normal build is untouched. The ASan runtime is preloaded into Python (and so into the tests'
# child processes, whose stderr the tests check for sanitizer reports); UBSan stops at its first report.
# Leak detection is on (ASAN_LEAK_ENV): each Python process runs LeakSanitizer at exit, before the
# interpreter's finalization (tests/lsan_at_exit.py, run at start-up by a second .pth file), with every
# Python object a malloc chunk (PYTHONMALLOC=malloc) so LSan sees what Python still holds; a leak fails the
# process with status 23. tests/lsan.supp holds the suppressions, each for a leak inside a third-party
# library, each explained there. leak_check_at_exit=0: no check after finalization (CPython, NumPy and
# TensorFlow free little then) and none in the third-party programs the tests run (ffmpeg, git).
# The sanitizer and fuzz builds leave out the TensorFlow op library (csrc/tf_ops.cc, CVRL_TF_OPS=OFF): none
# of their tests loads it (the TF tests here use tf.data and TF's own ops as oracles), GCC's UBSan rejects
# abseil's constexpr code in TensorFlow's headers ("is not a constant expression"), and it would double the
# build. The engine code that the op calls is the same cvrl_core these builds check.
SAN_NO_TF_OPS := -Ccmake.define.CVRL_TF_OPS=OFF
ASAN_VENV ?= .venv-asan
ASAN_PY := $(ASAN_VENV)/bin/python
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_RUNTIME = $(shell gcc -print-file-name=libasan.so):$(shell gcc -print-file-name=libubsan.so)

asan-build: venv
	@[ -x $(ASAN_PY) ] || $(PY) -m venv $(ASAN_VENV)
	@$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(ASAN_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cvrl_project_venv.pth"
	@echo "import runpy; runpy.run_path('$(CURDIR)/tests/lsan_at_exit.py', run_name='cvrl_lsan_at_exit')" > \
	  "$$($(ASAN_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cvrl_lsan_at_exit.pth"
	@$(LOCK) $(ASAN_PY) -m pip install -q -e . --no-deps --no-build-isolation -Cbuild-dir=build/asan \
	  -Ccmake.build-type=RelWithDebInfo "-Ccmake.define.CMAKE_CXX_FLAGS=$(ASAN_FLAGS)" $(SAN_NO_TF_OPS) \
	  "-Ccmake.define.CMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined"

ASAN_LEAK_ENV = PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=1:leak_check_at_exit=0 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp
ASAN_TESTS := tests/test_loader.py tests/test_video_reader.py tests/test_reliability.py tests/test_threads.py \
  tests/test_jpeg_decode.py

test-asan: asan-build
	$(PY) scripts/fetch_clips.py
	LD_PRELOAD=$(ASAN_RUNTIME) $(ASAN_LEAK_ENV) UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(ASAN_PY) -m pytest -q -p no:cacheprovider $(ASAN_TESTS)

# The threading tests against a ThreadSanitizer build (GCC's libtsan), the same pattern as test-asan: own venv
# and build dir (build/tsan), the runtime preloaded into Python and so into the tests' child processes.
# Python, NumPy and FFmpeg are not instrumented: TSan sees only the engine's own memory accesses, and the
# synchronisation of everything (the GIL included) through the pthread calls it intercepts, so a report is
# about the engine's memory. halt_on_error + exitcode 66: the first report fails the run (the pytest
# process, or the child a test started, which checks its exit code and stderr). tests/tsan.supp holds the
# suppressions, each for a report inside a third-party library, each explained there.
TSAN_VENV ?= .venv-tsan
TSAN_PY := $(TSAN_VENV)/bin/python
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer -g
TSAN_RUNTIME = $(shell gcc -print-file-name=libtsan.so)
# Reports go to build/tsan/report.PID (pytest captures the stderr of a test, and a report ends the process
# before pytest could show it); test-tsan prints them.
TSAN_ENV = LD_PRELOAD=$(TSAN_RUNTIME) TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 \
  suppressions=$(CURDIR)/tests/tsan.supp log_path=$(CURDIR)/build/tsan/report"
TSAN_TESTS := tests/test_threads.py tests/test_loader.py tests/test_video_reader.py::test_separate_readers_in_threads
# Without TensorFlow (tf.data, TFRecord fixtures written by TF): its own threads are not ours to check, and
# under TSan its import alone takes minutes. Those paths run under ASan (make test-asan).
TSAN_DESELECT := not pretrain_dataset and not tfrecord and not jpeg_window and not jpeg_dct and not tf_pipeline

tsan-build: venv
	@[ -x $(TSAN_PY) ] || $(PY) -m venv $(TSAN_VENV)
	@$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(TSAN_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cvrl_project_venv.pth"
	@$(LOCK) $(TSAN_PY) -m pip install -q -e . --no-deps --no-build-isolation -Cbuild-dir=build/tsan \
	  -Ccmake.build-type=RelWithDebInfo "-Ccmake.define.CMAKE_CXX_FLAGS=$(TSAN_FLAGS)" $(SAN_NO_TF_OPS) \
	  "-Ccmake.define.CMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread"

# The ffmpeg/ffprobe CLIs (the tests' fixture maker and oracle) are third-party programs: they run without
# the TSan runtime (their encoders' own threads race by TSan's rules, e.g. libSvtAv1Enc), through wrappers
# first on PATH that drop LD_PRELOAD. The wrappers are C: /bin/sh (dash) itself crashes under libtsan.
TSAN_BIN := build/tsan/bin

test-tsan: tsan-build
	$(PY) scripts/fetch_clips.py
	@mkdir -p $(TSAN_BIN) && for tool in ffmpeg ffprobe; do \
	  printf '#include <stdlib.h>\n#include <unistd.h>\nint main(int c, char **v) { (void)c; unsetenv("LD_PRELOAD"); execv("%s", v); return 127; }\n' \
	    "$$(command -v $$tool)" | gcc -x c -o $(TSAN_BIN)/$$tool -; done
	@rm -f build/tsan/report.*
	@PATH=$(CURDIR)/$(TSAN_BIN):$$PATH $(TSAN_ENV) $(TSAN_PY) -m pytest -q -p no:cacheprovider $(TSAN_TESTS) \
	  -k "$(TSAN_DESELECT)"; rc=$$?; \
	for f in build/tsan/report.*; do [ -e "$$f" ] && { echo "== $$f"; cat "$$f"; rc=1; }; done; exit $$rc

# Coverage-guided fuzzing (atheris = libFuzzer for Python) of VideoReader from bytes, decode_jpeg_frames, the
# TFRecord reader and parser, and sample_pair (fuzz/harness.py), each for SECONDS / 4, over an ASan + UBSan
# build made with clang -fsanitize=fuzzer-no-link (own venv and build dir, build/fuzz), so libFuzzer sees the
# engine's coverage. Seeds: small fixtures made with the ffmpeg CLI plus the kept findings (tests/data/fuzz/);
# the corpus grows in build/fuzz-corpus/ from run to run. A finding stops its target and leaves the input in
# build/fuzz-artifacts/TARGET/: keep it under tests/data/fuzz/TARGET/ (test_reliability replays it) and fix it.
SECONDS ?= 120
FUZZ_VENV ?= .venv-fuzz
FUZZ_PY := $(FUZZ_VENV)/bin/python
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=vptr,function -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer -g
FUZZ_RUNTIME = $$($(PY) -c "import atheris; print(atheris.path())")/asan_with_fuzzer.so
FUZZ_TARGETS := video jpeg tfrecord pair

fuzz-build: venv
	@command -v clang++ >/dev/null || { echo "fuzz: installing clang"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq clang; }
	@$(PY) -c "import atheris" 2>/dev/null || $(PIP) install -q "atheris>=2.3"  # the fuzz extra of pyproject.toml
	@[ -x $(FUZZ_PY) ] || $(PY) -m venv $(FUZZ_VENV)
	@$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(FUZZ_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cvrl_project_venv.pth"
	@$(LOCK) $(FUZZ_PY) -m pip install -q -e . --no-deps --no-build-isolation -Cbuild-dir=build/fuzz \
	  -Ccmake.build-type=RelWithDebInfo -Ccmake.define.CMAKE_CXX_COMPILER=clang++ $(SAN_NO_TF_OPS) \
	  "-Ccmake.define.CMAKE_CXX_FLAGS=$(FUZZ_FLAGS)"

fuzz: fuzz-build
	@rm -rf build/fuzz-seeds && $(PY) -m fuzz.make_seeds build/fuzz-seeds
	@per=$$(( $(SECONDS) / 4 > 1 ? $(SECONDS) / 4 : 1 )); status=0; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz-corpus/$$t build/fuzz-artifacts/$$t; \
	  LD_PRELOAD=$(FUZZ_RUNTIME) ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(FUZZ_PY) -m fuzz.run $$t build/fuzz-corpus/$$t build/fuzz-seeds/$$t -max_total_time=$$per -timeout=30 \
	      -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix=build/fuzz-artifacts/$$t/ \
	      > build/fuzz-artifacts/$$t.log 2>&1 || status=1; \
	  $(FUZZ_PY) scripts/fuzz_summary.py $$t build/fuzz-artifacts/$$t.log || status=1; \
	done; exit $$status

# NVIDIA DALI input (cvrl_fast.dali, data.loader=dali): DALI itself from PyPI (~1 GB), then its TensorFlow
# plugin, which compiles at install time against the TensorFlow in the venv (hence no build isolation; a few
# minutes). `import cvrl_fast` never needs either.
DALI_STAMP := $(VENV)/.dali-stamp
setup-dali: setup $(DALI_STAMP)

$(DALI_STAMP):
	$(PIP) install -q "nvidia-dali-cuda120>=2.4"
	$(PIP) install -q --no-build-isolation "nvidia-dali-tf-plugin-cuda120>=2.4"
	@touch $@

# The DALI tests (DALI's CPU backend: VP9 and MJPEG fixtures; NVDEC needs a GPU, see benchmarks/dali_nvdec.py).
test-dali: setup-dali
	$(PY) scripts/fetch_clips.py
	$(PY) -m pytest -q tests/test_dali.py

# Benchmarks are pytest-benchmark suites (bench_*.py). A stored baseline (benchmarks/baselines/, made on
# this project's 2-core machine by `make bench-baseline`) turns them into a gate: `make bench` fails when a
# benchmark's median is more than BENCH_MARGIN slower than the baseline's.
BENCH_MARGIN ?= 35%
BENCH_ARGS := -q -p no:cacheprovider -m "" -o python_files="bench_*.py" benchmarks --benchmark-only \
              --benchmark-storage=file://$(CURDIR)/benchmarks/baselines
bench: setup
	$(PY) scripts/fetch_clips.py
	@if ls benchmarks/baselines/*/*.json >/dev/null 2>&1; then \
	  $(PY) -m pytest $(BENCH_ARGS) --benchmark-compare --benchmark-compare-fail=median:$(BENCH_MARGIN); \
	else \
	  echo "bench: no stored baseline yet (make bench-baseline)"; $(PY) -m pytest $(BENCH_ARGS); \
	fi

bench-baseline: setup
	$(PY) scripts/fetch_clips.py
	$(PY) -m pytest $(BENCH_ARGS) --benchmark-save=baseline

demo: setup
	$(PY) -m cvrl_fast.cli demo --workdir demo_work

clean:
	rm -rf build $(VENV) $(ASAN_VENV) $(TSAN_VENV) $(FUZZ_VENV) .pytest_cache
