"""tf.data input for CVRL pretraining from the C++ engine (no Python work per frame), by one of two engines:

    engine="loader": `Dataset.from_generator` over a PairLoader (its own C++ threads). The generator is
      Python inside the graph, so this pipeline cannot be serialized: no tf.data service, no iterator
      checkpoint.
    engine="graph": a pure TF pipeline (range of batches -> slots -> `map` of the CvrlSlotPair op ->
      batch -> prefetch), the same bytes as the loader for the same seed. It runs on tf.data service
      workers (`distribute`) and its iterator can be checkpointed (tf.train.Checkpoint(iterator=...)).

    ds = cvrl_fast.data.pretrain_dataset(sources, batch_size=1024, seed=0, input_context=ctx)
    # elements: {"view1": uint8 [B, T, S, S, 3], "view2": uint8 [B, T, S, S, 3]}

    ds = cvrl_fast.data.pretrain_dataset(sources, batch_size=1024, seed=0, augment_on="device")
    # elements: {"view1", "view2": uint8, no colour stage; "colour1", "colour2": float32 [B, 13]}
    # and in the train step, on the accelerator: x1 = cvrl_fast.device_augment(view1, colour1)

Exact resume: pass `start_batch` = the number of batches this pipeline already delivered (with one
batch per training step, the global step), or, with the graph engine, restore a checkpoint of the
iterator. Every pixel is a pure function of (seed, epoch, video), so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._augment import AugmentConfig, _resolve
from ._loader import PairLoader, _check_dtype, _settings


ENGINES = ("loader", "graph")


def pretrain_dataset(sources, *, batch_size: int, seed: int, input_context=None,
                     config: Optional[AugmentConfig] = None, num_threads: Optional[int] = None,
                     shuffle: bool = True, epochs: Optional[int] = None, start_batch: int = 0,
                     prefetch_batches: int = 2, output_dtype=np.uint8, include_index: bool = False,
                     stats: Optional[dict] = None, augment_on: str = "host", engine: str = "loader",
                     max_retries: int = 32, log_skips: bool = True):
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
      Loader engine only: the graph engine has no Python in its pipeline; its skipped sources are in
      `cvrl_fast.tf_ops.skipped_sources()` (per process); with log_skips the op prints each once on
      stderr, and `cvrl_fast.tf_ops.log_new_skips()` logs them through Python logging (the trainer
      passes log_skips=False and calls it after every step).
    engine: "loader" (PairLoader behind from_generator) or "graph" (see the module docstring). The graph
      engine's parallelism is tf.data's AUTOTUNE; num_threads, if given, caps it with a private thread
      pool of that many threads. Both skip a source that fails and replace it by the same deterministic
      draw; `max_retries` replacements in a row failing stop the data (graph: DataLossError).
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
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r} must be one of {ENGINES}")
    if engine == "graph":
        if stats is not None:
            raise ValueError("stats= is for engine='loader'; the graph engine's skipped sources are in "
                             "cvrl_fast.tf_ops.skipped_sources()")
        return _graph_dataset(sources, per_pipeline=per_pipeline, seed=int(seed), shard_index=shard_index,
                              num_shards=num_shards, config=cfg, num_threads=num_threads, shuffle=shuffle,
                              epochs=epochs, start_batch=int(start_batch), prefetch_batches=prefetch_batches,
                              output_dtype=output_dtype, include_index=include_index, augment_on=augment_on,
                              max_retries=max_retries, log_skips=log_skips)
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


def source_table(sources, shard_index: int = 0, num_shards: int = 1) -> dict:
    """The graph engine's source table of one shard, as PairLoader shards (every num_shards-th source
    from shard_index, global ids kept): {"paths": string [n], "record_offsets", "record_lengths",
    "source_ids": int64 [n]} as NumPy arrays."""
    from ._loader import resolve_sources

    refs = resolve_sources(sources)[0][shard_index::num_shards]
    return {"paths": np.array([r.path for r in refs], dtype=object),
            "record_offsets": np.array([r.record_offset for r in refs], np.int64),
            "record_lengths": np.array([r.record_length for r in refs], np.int64),
            "source_ids": np.array([r.id for r in refs], np.int64)}


def _graph_dataset(sources, *, per_pipeline, seed, shard_index, num_shards, config, num_threads, shuffle, epochs,
                   start_batch, prefetch_batches, output_dtype, include_index, augment_on, max_retries, log_skips):
    """The graph engine: batch index b -> slots b*B .. b*B+B-1 -> CvrlSlotPair each -> batch.

    The source is a range of batch indices, so that under tf.data service's dynamic sharding a split is
    one whole batch: whichever worker makes it, batch b holds the same samples as PairLoader's batch b.
    """
    import tensorflow as tf

    from . import tf_ops

    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs = {epochs!r} must be None (endless) or an integer >= 1")
    if num_threads is not None and not (isinstance(num_threads, int) and 1 <= num_threads <= 256):
        raise ValueError(f"num_threads = {num_threads!r} must be None (AUTOTUNE) or an integer in [1, 256]")
    if not (isinstance(prefetch_batches, int) and prefetch_batches >= 0):
        raise ValueError(f"prefetch_batches = {prefetch_batches!r} must be an integer >= 0")
    if not (isinstance(max_retries, int) and max_retries >= 0):
        raise ValueError(f"max_retries = {max_retries!r} must be an integer >= 0")
    tf_ops.library()  # the ops must be registered before the map function is traced
    shard = source_table(sources, shard_index, num_shards)
    n = len(shard["paths"])
    if n == 0:
        raise ValueError(f"input pipeline {shard_index} of {num_shards} gets no videos")
    table = {k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in shard.items()}
    batch = int(per_pipeline)
    # PairLoader with drop_remainder: epochs x n slots, cut to whole batches; endless: as good as endless.
    end_batch = (epochs * n) // batch if epochs is not None else (1 << 62) // batch

    def slots_of_batch(b):
        return tf.data.Dataset.range(b * batch, (b + 1) * batch)

    def make(slot):
        v1, v2, c1, c2, index = tf_ops.slot_pair(table, seed, slot, config=config, augment_on=augment_on,
                                                 output_dtype=output_dtype, shuffle=shuffle, max_retries=max_retries,
                                                 log_skips=log_skips)
        out = {"view1": v1, "view2": v2}
        if augment_on == "device":
            out["colour1"], out["colour2"] = c1, c2
        if include_index:
            out["index"] = index
        return out

    ds = tf.data.Dataset.range(min(start_batch, end_batch), end_batch).flat_map(slots_of_batch)
    ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch, drop_remainder=True).prefetch(prefetch_batches)
    options = tf.data.Options()
    # Iterator checkpoints record positions, not buffered batches: every element is a pure function of
    # its slot, so the restored pipeline recomputes what was in flight (a checkpoint of a K400 pipeline
    # would otherwise hold its map and prefetch buffers, hundreds of MB).
    options.experimental_symbolic_checkpoint = True
    if num_threads is not None:
        options.threading.private_threadpool_size = num_threads
        options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


# ---- tf.data service ----
# Dynamic sharding ("distributed_epoch"): the dispatcher hands out the graph pipeline's batch indices one
# split at a time to whichever worker asks, so every batch is made once, by one worker, with the same
# bytes as PairLoader's batch of that index; the order in which batches reach the trainer depends on
# worker timing. A service iterator cannot be checkpointed: a resumed run starts a new job at
# start_batch = the step it resumes from (see README, "Input workers").
SERVICE_PROCESSING_MODE = "distributed_epoch"


def service_target(address: str) -> str:
    """HOST:PORT (or grpc://HOST:PORT) -> the dispatcher target tf.data service expects."""
    address = str(address).strip()
    if not address:
        raise ValueError("the tf.data service address is empty (HOST:PORT of `cvrl-fast input-dispatcher`)")
    return address if "://" in address else f"grpc://{address}"


def distribute(ds, service_address: str, *, job_name: Optional[str] = None):
    """`ds` (a graph-engine pipeline) read from tf.data service workers instead of this process.

    The dispatcher and every worker must have loaded the op library (`cvrl-fast input-dispatcher`,
    `cvrl-fast input-worker` do), and the workers must see the source files under the same paths.
    """
    import tensorflow as tf

    return ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=service_target(service_address),
        job_name=job_name))


def start_dispatcher(port: int, *, work_dir: Optional[str] = None):
    """A tf.data service dispatcher on `port` (0: any free port), with the op library loaded (it reads
    the pipeline's graph to split it). Returns the server; `.target` is its grpc:// address."""
    import tensorflow as tf

    from . import tf_ops

    tf_ops.library()
    config = tf.data.experimental.service.DispatcherConfig(port=int(port), work_dir=work_dir,
                                                           fault_tolerant_mode=work_dir is not None)
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher_address: str, *, port: int = 0, host: Optional[str] = None):
    """A tf.data service worker of the dispatcher at HOST:PORT, with the op library loaded. `host` is the
    name clients reach this machine by (default: its host name)."""
    import socket

    import tensorflow as tf

    from . import tf_ops

    tf_ops.library()
    target = service_target(dispatcher_address)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=target.split("://", 1)[1], worker_address=f"{host or socket.gethostname()}:%port%",
        port=int(port))
    return tf.data.experimental.service.WorkerServer(config)
