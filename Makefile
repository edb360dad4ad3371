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

.PHONY: setup apt venv build test test-all test-asan asan-build setup-dali test-dali bench bench-baseline demo clean

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
# child processes, whose stderr the tests check for sanitizer reports); TensorFlow leaks, so leak
# detection is off; UBSan stops at its first report.
ASAN_VENV ?= .venv-asan
ASAN_PY := $(ASAN_VENV)/bin/python
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_RUNTIME = $(shell gcc -print-file-name=libasan.so):$(shell gcc -print-file-name=libubsan.so)

asan-build: venv
	@[ -x $(ASAN_PY) ] || $(PY) -m venv $(ASAN_VENV)
	@$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(ASAN_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cvrl_project_venv.pth"
	@$(LOCK) $(ASAN_PY) -m pip install -q -e . --no-deps --no-build-isolation -Cbuild-dir=build/asan \
	  -Ccmake.build-type=RelWithDebInfo "-Ccmake.define.CMAKE_CXX_FLAGS=$(ASAN_FLAGS)" \
	  "-Ccmake.define.CMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined"

test-asan: asan-build
	$(PY) scripts/fetch_clips.py
	LD_PRELOAD=$(ASAN_RUNTIME) ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(ASAN_PY) -m pytest -q -p no:cacheprovider tests/test_loader.py tests/test_video_reader.py

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
	rm -rf build $(VENV) $(ASAN_VENV) .pytest_cache
