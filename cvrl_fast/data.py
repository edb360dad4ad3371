"""tf.data input for CVRL pretraining, fed by the C++ PairLoader (no Python work per frame).

    ds = cvrl_fast.data.pretrain_dataset(sources, batch_size=1024, seed=0, input_context=ctx)
    # elements: {"view1": uint8 [B, T, S, S, 3], "view2": uint8 [B, T, S, S, 3]}

    ds = cvrl_fast.data.pretrain_dataset(sources, batch_size=1024, seed=0, augment_on="device")
    # elements: {"view1", "view2": uint8, no colour stage; "colour1", "colour2": float32 [B, 13]}
    # and in the train step, on the accelerator: x1 = cvrl_fast.device_augment(view1, colour1)

Exact resume: pass `start_batch` = the number of batches this pipeline already delivered (with one
batch per training step, the global step). Every pixel is a pure function of (seed, epoch, video),
so a resumed run sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._augment import AugmentConfig, _resolve
from ._loader import PairLoader, _check_dtype, _settings


def pretrain_dataset(sources, *, batch_size: int, seed: int, input_context=None,
                     config: Optional[AugmentConfig] = None, num_threads: Optional[int] = None,
                     shuffle: bool = True, epochs: Optional[int] = None, start_batch: int = 0,
                     prefetch_batches: int = 2, output_dtype=np.uint8, include_index: bool = False,
                     stats: Optional[dict] = None, augment_on: str = "host"):
    """A `tf.data.Dataset` of CVRL pair batches.

    batch_size: with `input_context` (tf.distribute's `InputContext`), the GLOBAL batch size; each
      input pipeline yields `input_context.get_per_replica_batch_size(batch_size)` videos per element
      and reads the disjoint shard `input_pipeline_id` of `num_input_pipelines`. Without it, the size
      of each element.
    Elements are {"view1", "view2"} (plus "index", int64 [B] source ids, if include_index), with a
    static batch dimension (partial batches are dropped). output_dtype uint8 (round(255 x)) or
    float32 (x in [0, 1]).
    augment_on: "host" (the views are final) or "device": uint8 views cropped, resized and flipped
      only, plus "colour1"/"colour2", float32 [B, len(COLOUR_FIELDS)], for `device_augment` in the
      train step (same draws, so the same seed gives the same training pairs within 1/255).
    stats: a dict the pipeline keeps up to date with its loader's `PairLoader.stats` (samples, batches,
      skipped [(source, reason)], ...) after every batch, for a caller's report (the trainer's end line).
    """
    import tensorflow as tf

    cfg = _resolve(config)
    fp = _check_dtype(output_dtype)
    shard_index, num_shards, per_pipeline = 0, 1, int(batch_size)
    if input_context is not None:
        shard_index = int(input_context.input_pipeline_id)
        num_shards = int(input_context.num_input_pipelines)
        per_pipeline = int(input_context.get_per_replica_batch_size(batch_size))
    _settings(cfg, augment_on, fp)  # a bad augment_on fails here, not inside the first get_next
    if start_batch < 0:
        raise ValueError(f"start_batch = {start_batch} must be >= 0")
    # Resolve sources now so bad paths fail at construction, not inside the first get_next.
    probe = dict(batch_size=per_pipeline, seed=int(seed), num_threads=num_threads, shard_index=shard_index,
                 num_shards=num_shards, shuffle=shuffle, epochs=epochs, config=cfg, output_dtype=output_dtype,
                 prefetch_batches=prefetch_batches, augment_on=augment_on)
    from ._loader import resolve_sources
    total = len(resolve_sources(sources)[0])
    if total <= shard_index:
        raise ValueError(f"input pipeline {shard_index} of {num_shards} gets no videos ({total} sources)")
    state = {"seed": int(seed), "batch_size": per_pipeline, "num_sources": total, "shard_index": shard_index,
             "num_shards": num_shards, "shuffle": bool(shuffle), "next_batch": int(start_batch)}

    names = ("view1", "view2") + (("colour1", "colour2") if augment_on == "device" else ())

    def generate():
        loader = PairLoader(sources, state=state, **probe)
        try:
            for batch in loader:
                if stats is not None:
                    stats.update(loader.stats)
                out = {k: batch[k] for k in names}
                if include_index:
                    out["index"] = batch["index"]
                yield out
        finally:
            # Also reached when another thread (the atexit hook at interpreter exit) closed the loader
            # while this generator waited in next(), which then ended the iteration: a no-op that
            # returns at once, so that tf.data is out of Python before the interpreter finalizes.
            loader.close()

    dtype = tf.float32 if fp else tf.uint8
    shape = (per_pipeline, cfg.num_frames, cfg.crop_size, cfg.crop_size, 3)
    signature = {"view1": tf.TensorSpec(shape, dtype), "view2": tf.TensorSpec(shape, dtype)}
    if augment_on == "device":
        from ._device_augment import NUM_COLOUR_PARAMS

        for name in ("colour1", "colour2"):
            signature[name] = tf.TensorSpec((per_pipeline, NUM_COLOUR_PARAMS), tf.float32)
    if include_index:
        signature["index"] = tf.TensorSpec((per_pipeline,), tf.int64)
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # The C++ loader already prefetches `prefetch_batches`; one more element hides the hand-off.
    return ds.prefetch(1)
