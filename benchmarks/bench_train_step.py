"""Train-step benchmark: steps/s and clips/s of `cvrl_fast.trainer.make_train_step` on this machine.

Variants: R3D-50 (full width) at a small batch and the tiny CPU config, float32 vs mixed_bfloat16,
XLA (jit_compile) off/on. Each variant runs in its own process (the precision policy and XLA are
process-wide) on the default strategy, with one fixed uint8 batch already in memory, so only the step is
timed: forward of both views, NT-Xent, weight decay, backward, SGD update. The first steps (tracing,
XLA compilation) are reported separately as `first_step_s`.

Input check: the tiny config also runs the whole training loop (`trainer.train`) with the synthetic source
and, when the clips of `scripts/fetch_clips.py` are cached, with the C++ pair loader
(`cvrl_fast.data.pretrain_dataset`), and reports the time the loop waited for input per step.

Run: `python benchmarks/bench_train_step.py [--steps N] [--only tiny|r3d50]` prints the tables for
benchmarks/README.md; `make bench` runs the pytest-benchmark entry point (tiny, float32, no XLA).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# name: (config, overrides). R3D-50 at 8x112x112, 2 videos (4 clips) per step: the real network at a size
# a 2-core CPU steps in about a second.
MODELS = {
    "tiny": ("tiny_cpu", []),
    "r3d50": ("tiny_cpu", ["model.width_multiplier=1.0", "model.head_hidden_dim=2048", "model.head_output_dim=128",
                           "data.num_frames=8", "data.image_size=112", "train.global_batch_size=2"]),
}


def _step_fn(config: str, overrides: list[str]):
    """Build model, optimizer and a jit'd or plain train step exactly as the trainer does."""
    import keras
    import tensorflow as tf

    from cvrl_fast import trainer
    from cvrl_fast.configs import load_config

    cfg = load_config(config, overrides)
    keras.utils.set_random_seed(0)
    trainer.set_precision(cfg.runtime.precision)
    strategy = tf.distribute.get_strategy()
    model, _ = trainer.build_model(cfg)
    total, warmup = trainer.schedule_steps(cfg)
    optimizer, _ = trainer.build_optimizer(cfg, total, warmup)
    optimizer.build(model.trainable_variables)
    step = trainer.make_train_step(model, optimizer, strategy, temperature=cfg.train.temperature,
                                   weight_decay=cfg.train.weight_decay,
                                   jit_compile=trainer.resolve_jit_compile(cfg.runtime.jit_compile))
    n = cfg.train.global_batch_size
    batch = next(iter(trainer.synthetic_pretrain_dataset(
        per_replica_batch=n, global_batch=n, num_frames=cfg.data.num_frames, image_size=cfg.data.image_size,
        seed=0, start_step=0)))
    return cfg, step, batch


def measure_step(config: str, overrides: list[str], steps: int, warmup: int = 2) -> dict:
    cfg, step, batch = _step_fn(config, overrides)
    t0 = time.perf_counter()
    for _ in range(warmup):
        float(step(batch)["loss"])
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(batch)
    float(out["loss"])  # wait for the last step
    elapsed = time.perf_counter() - t0
    return {"steps_per_s": steps / elapsed, "clips_per_s": 2 * cfg.train.global_batch_size * steps / elapsed,
            "first_step_s": first, "steps": steps, "batch_videos": cfg.train.global_batch_size}


def measure_loop(config: str, overrides: list[str]) -> dict:
    """Whole training loop; the trainer logs input wait per step (averaged over the log window)."""
    from cvrl_fast import trainer
    from cvrl_fast.configs import load_config

    cfg = load_config(config, overrides)
    with tempfile.TemporaryDirectory() as workdir:
        result = trainer.train(cfg, workdir)
    m = result.metrics
    return {"steps_per_s": m["steps_per_second"], "clips_per_s": m["clips_per_second"],
            "input_wait_ms_per_step": 1e3 * m["input_wait_seconds_per_step"],
            "step_ms": 1e3 / m["steps_per_second"]}


def _run_child(kind: str, config: str, overrides: list[str], steps: int) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_train_step as b; "
            f"print('RESULT ' + json.dumps(b.measure_{kind}({config!r}, {overrides!r}"
            + (f", {steps}" if kind == "step" else "") + ")))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc={proc.returncode}"}
    return json.loads(lines[-1][len("RESULT "):])


def clip_sources() -> list[str]:
    return sorted(glob.glob(str(ROOT / ".cache" / "clips" / "*.mp4")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", choices=sorted(MODELS), default=None)
    parser.add_argument("--no-xla-r3d50", action="store_true", help="skip XLA for R3D-50 (long compile)")
    parser.add_argument("--loops-only", action="store_true", help="only the input-wait check")
    args = parser.parse_args(argv)
    print(f"# bench_train_step on {os.cpu_count()} CPU cores (TF default intra/inter-op threads)")
    if not args.loops_only:
        print("\n| model | precision | XLA | steps/s | clips/s | first 2 steps (s) | vs float32 no-XLA |")
        print("|---|---|---|---|---|---|---|")
    for name, (config, base) in MODELS.items():
        if (args.only and name != args.only) or args.loops_only:
            continue
        steps = args.steps if name == "tiny" else max(3, args.steps // 3)
        baseline = None
        for precision in ("float32", "mixed_bfloat16"):
            for xla in ("false", "true"):
                if name == "r3d50" and xla == "true" and args.no_xla_r3d50:
                    continue
                ov = base + [f"runtime.precision={precision}", f"runtime.jit_compile={xla}"]
                r = _run_child("step", config, ov, steps)
                if "error" in r:
                    print(f"| {name} | {precision} | {xla} | error: {r['error'][:80]} | | | |", flush=True)
                    continue
                baseline = baseline or r["steps_per_s"]
                print(f"| {name} | {precision} | {xla} | {r['steps_per_s']:.3f} | {r['clips_per_s']:.2f} | "
                      f"{r['first_step_s']:.1f} | {r['steps_per_s'] / baseline:.2f}x |", flush=True)
    if args.only in (None, "tiny"):
        print("\n| tiny loop, input source | steps/s | step (ms) | input wait (ms/step) |")
        print("|---|---|---|---|")
        # 40 steps logged every 10: the reported window is steps 31-40 (no tracing); no checkpoints.
        loop_ov = ["train.total_steps=40", "log.every_steps=10", "checkpoint.every_steps=1000"]
        loops = {"synthetic": loop_ov}
        sources = clip_sources()
        if sources:
            loops["C++ pair loader (5 cached clips)"] = [
                "data.source=videos", "data.sources=" + ",".join(sources), "data.num_train_videos=5"] + loop_ov
        for label, ov in loops.items():
            r = _run_child("loop", "tiny_cpu", ov, 0)
            if "error" in r:
                print(f"| {label} | error: {r['error'][:80]} | | |", flush=True)
                continue
            print(f"| {label} | {r['steps_per_s']:.2f} | {r['step_ms']:.0f} | {r['input_wait_ms_per_step']:.2f} |",
                  flush=True)
    return 0


@pytest.mark.benchmark(group="train_step")
def test_bench_train_step_tiny(benchmark):
    pytest.importorskip("tensorflow")
    _, step, batch = _step_fn("tiny_cpu", [])
    float(step(batch)["loss"])  # trace outside the timing
    benchmark.pedantic(lambda: float(step(batch)["loss"]), rounds=10, iterations=1)


if __name__ == "__main__":
    sys.exit(main())
