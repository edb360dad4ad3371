"""One command for a GPU (or TPU-less accelerator) machine: what the colour stage costs inside a compiled
CVRL train step, next to the model step.

    python benchmarks/gpu_augment_step.py                    # R3D-50, 16x224x224, 8 pairs per step, bf16, XLA
    python benchmarks/gpu_augment_step.py --batch 16 --precision float32

Needs TensorFlow with a GPU and an installed cvrl_fast; no video files (the views are random uint8, the
colour rows come from the engine's own parameter draw, so every op runs in the proportions training sees).
Times, on the first GPU, after warm-up, the median of --repeats timings of --steps steps:
  device_augment   the colour stage alone, compiled (jit_compile=True), both views of the batch
  step_host        the train step as with augment_on="host": uint8 views -> x/255 -> model, loss, update
  step_device      the train step as with augment_on="device": device_augment inside the same XLA cluster
and prints one JSON line plus a short table: ms per step, pairs/s and the share of the step that the
colour stage adds. `--tiny` runs a small model at 4x32x32 (a smoke test that runs on a CPU in a minute).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="pairs per step")
    ap.add_argument("--precision", default="mixed_bfloat16", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-xla", action="store_true", help="plain tf.function steps (XLA off)")
    ap.add_argument("--tiny", action="store_true", help="tiny model at 4x32x32 (smoke test, CPU is fine)")
    args = ap.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from cvrl_fast import _C, AugmentConfig, device_augment, trainer
    from cvrl_fast.configs import load_config

    overrides = [f"train.global_batch_size={args.batch}", f"runtime.precision={args.precision}"]
    if args.tiny:
        overrides += ["model.depth=18", "model.head_num_hidden_layers=1"]
        cfg = load_config("tiny_cpu", overrides)
    else:
        cfg = load_config("k400_pretrain", overrides)
    jit = not args.no_xla
    keras.utils.set_random_seed(0)
    trainer.set_precision(cfg.runtime.precision)
    T, S, B = cfg.data.num_frames, cfg.data.image_size, cfg.train.global_batch_size
    rng = np.random.default_rng(0)
    views = {k: tf.constant(rng.integers(0, 256, (B, T, S, S, 3), dtype=np.uint8)) for k in "12"}
    settings = AugmentConfig(num_frames=T, crop_size=S)._native()
    rows = {"1": [], "2": []}
    for i in range(B):
        params = _C.sample_pair_params(300, 256, 340, settings, 0, 0, i)
        for v, k in enumerate("12"):
            rows[k].append(_C.colour_row(params.views[v]))
    colours = {k: tf.constant(np.stack(rows[k])) for k in "12"}

    def build_step():
        strategy = tf.distribute.get_strategy()
        model, _ = trainer.build_model(cfg)
        optimizer, _ = trainer.build_optimizer(cfg, 1000, 10)
        optimizer.build(model.trainable_variables)
        return trainer.make_train_step(model, optimizer, strategy, temperature=cfg.train.temperature,
                                       weight_decay=cfg.train.weight_decay, jit_compile=jit)

    host_batch = {"view1": views["1"], "view2": views["2"]}
    device_batch = dict(host_batch, colour1=colours["1"], colour2=colours["2"])
    augment = tf.function(lambda v, c: device_augment(v, c), jit_compile=jit)
    both_views = tf.concat([views["1"], views["2"]], 0)
    both_colours = tf.concat([colours["1"], colours["2"]], 0)

    def timed(fn, sync):
        fn()
        fn()  # trace / compile, then one warm call
        sync()
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for _ in range(args.steps):
                out = fn()
            sync(out)
            runs.append(1000 * (time.perf_counter() - t) / args.steps)
        return statistics.median(runs)

    def sync(out=None):
        if out is not None:
            (out["loss"] if isinstance(out, dict) else out).numpy()

    step_host, step_device = build_step(), build_step()
    result = {
        "device": (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name,
        "model": f"R3D-{cfg.model.depth} width {cfg.model.width_multiplier:g}", "clip": f"{T}x{S}x{S}",
        "pairs_per_step": B, "precision": cfg.runtime.precision, "xla": jit,
        "device_augment_ms": timed(lambda: augment(both_views, both_colours), sync),
        "step_host_ms": timed(lambda: step_host(host_batch), sync),
        "step_device_ms": timed(lambda: step_device(device_batch), sync),
    }
    result["pairs_per_s_host"] = 1000 * B / result["step_host_ms"]
    result["pairs_per_s_device"] = 1000 * B / result["step_device_ms"]
    result["colour_stage_share_of_step"] = (result["step_device_ms"] - result["step_host_ms"]) / result["step_device_ms"]
    print(json.dumps(result))
    print(f"| {result['device']} | {result['model']} {result['clip']}, {B} pairs, {result['precision']}, "
          f"XLA {'on' if jit else 'off'} | device_augment {result['device_augment_ms']:.1f} ms | step host "
          f"{result['step_host_ms']:.1f} ms | step device {result['step_device_ms']:.1f} ms | "
          f"share {100 * result['colour_stage_share_of_step']:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
