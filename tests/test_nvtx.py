"""NVTX ranges: a tool attached the way Nsight Systems attaches (NVTX_INJECTION64_PATH) sees the C++
engine's ranges (decode, augment, batch_row on the worker threads, wait_batch on the consumer) and the
Python side's (next_batch), all in the "cvrl_fast" domain; without a tool the Python side uses a null
context and the engine's calls fall through."""
import os
import pathlib
import subprocess
import sys
import textwrap


from cvrl_fast import _C

HERE = pathlib.Path(__file__).parent

CHILD = textwrap.dedent("""
    import sys
    from cvrl_fast import AugmentConfig, PairLoader, sample_pair
    paths = sys.argv[1:]
    cfg = AugmentConfig(num_frames=4, crop_size=24)
    loader = PairLoader(paths, batch_size=2, seed=0, num_threads=2, epochs=1, config=cfg)
    batches = sum(1 for _ in loader)
    loader.close()
    sample_pair(paths[0], 1, cfg)
    print("batches", batches)
""")


def _nvtx_include_dir() -> str:
    import nvidia.nvtx  # the header-only NVTX3 API, a test requirement

    return os.path.join(list(nvidia.nvtx.__path__)[0], "include")


def _build_probe(tmp_path) -> pathlib.Path:
    probe = tmp_path / "libnvtx_probe.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-I", _nvtx_include_dir(), str(HERE / "nvtx_probe.c"),
                    "-o", str(probe), "-lpthread"], check=True)
    return probe


def _run_child(paths, env_extra, code: str = CHILD) -> str:
    # Start from this environment without any NVTX tool of its own, so the result does not depend on
    # whether the test run itself is being profiled.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVTX_INJECTION")}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_engine_is_built_with_nvtx():
    assert _C.nvtx_compiled_in()
    assert "NVTX ranges on" in _C.build_info()


def test_nvtx_ranges_reach_an_attached_tool(tmp_path, video_files):
    probe = _build_probe(tmp_path)
    log = tmp_path / "nvtx.log"
    paths = [video_files[name] for name in list(video_files)[:4]]
    out = _run_child(paths, {"NVTX_INJECTION64_PATH": str(probe), "CVRL_NVTX_PROBE_LOG": str(log)})
    assert "batches 2" in out
    events = [line.split("\t") for line in log.read_text().splitlines()]
    pushes = [(domain, name, tid) for kind, domain, name, tid in events if kind == "push"]
    pops = [(domain, tid) for kind, domain, _, tid in events if kind == "pop"]
    assert {d for d, _, _ in pushes} == {"cvrl_fast"}
    names = {}
    for _, name, tid in pushes:
        names.setdefault(name, set()).add(tid)
    # 4 loader samples + 1 sample_pair: decode and augment once each per sample.
    counts = {name: sum(1 for _, n, _ in pushes if n == name) for name in names}
    assert counts["decode"] == counts["augment"] == 5
    assert counts["batch_row"] == 4
    assert counts["wait_batch"] >= 2 and counts["next_batch"] >= 2
    # Worker ranges run off the consumer thread; every push is popped on its own thread.
    assert not names["batch_row"] & names["next_batch"]
    for tid in {t for _, _, t in pushes}:
        assert sum(1 for _, _, t in pushes if t == tid) == sum(1 for _, t in pops if t == tid)


def test_nvtx_ranges_reach_an_attached_tool_fails_without_tool(tmp_path, video_files):
    """The same run without NVTX_INJECTION64_PATH: the probe is never loaded, nothing is logged."""
    log = tmp_path / "nvtx.log"
    env = {"CVRL_NVTX_PROBE_LOG": str(log)}
    paths = [video_files[name] for name in list(video_files)[:4]]
    assert "batches 2" in _run_child(paths, env)
    assert not log.exists()


NULL_CONTEXT_CHILD = textwrap.dedent("""
    from cvrl_fast import _nvtx
    assert not _nvtx.ENABLED and _nvtx._nvtx is None  # the nvtx package is not even imported
    assert _nvtx.annotate("a") is _nvtx.annotate("b") is _nvtx._NULL
    with _nvtx.annotate("next_batch"):
        pass
    print("null context")
""")


def test_python_ranges_are_a_shared_null_context_without_tool():
    assert "null context" in _run_child([], {}, NULL_CONTEXT_CHILD)
