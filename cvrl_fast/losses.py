"""CVRL contrastive loss (cvrl.md §4): NT-Xent with negatives from every replica, and weight decay.

`nt_xent_loss` works under any `tf.distribute` strategy (default, Mirrored, MultiWorkerMirrored, TPU):
the embeddings of both views are all-gathered with a *differentiable* gather (`all_gather_with_grad`),
so negatives from other replicas receive gradients exactly as in the single-device computation.
"""
from __future__ import annotations

import tensorflow as tf

LARGE_NUM = 1e9  # subtracted from the self-similarity logit (cvrl.md §4)


# ------------------------------------------------------------------------------------------------
# Cross-replica gather
# ------------------------------------------------------------------------------------------------
def _replica_info():
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        raise RuntimeError(
            "nt_xent_loss/all_gather_with_grad called in cross-replica context: call it inside "
            "strategy.run(...) (or outside any strategy scope)"
        )
    return ctx, ctx.num_replicas_in_sync


def all_gather_with_grad(x: tf.Tensor) -> tf.Tensor:
    """Concatenate `x` ([b, ...], same b on every replica) over replicas along axis 0.

    Forward: every replica writes its rows into a zero [R*b, ...] tensor at offset r*b, and an all-reduce
    SUM assembles the gathered tensor (a plain all-reduce exists on every strategy, unlike a native
    all-gather on some). Backward (cvrl.md §4): the upstream gradient of the gathered tensor is summed over
    all replicas and the local slice [r*b, (r+1)*b) is returned, because every replica's loss depends on
    this replica's rows.
    """
    ctx, num_replicas = _replica_info()
    if num_replicas == 1:
        return x
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    b = tf.shape(x)[0]

    def place(t):
        # [R, b, ...] with t in row replica_id and zeros elsewhere, flattened to [R*b, ...].
        onehot = tf.one_hot(replica_id, num_replicas, dtype=t.dtype)
        onehot = tf.reshape(onehot, [num_replicas] + [1] * t.shape.rank)
        placed = onehot * tf.expand_dims(t, 0)
        return tf.reshape(placed, tf.concat([[num_replicas * b], tf.shape(t)[1:]], 0))

    @tf.custom_gradient
    def gather(t):
        gathered = ctx.all_reduce(tf.distribute.ReduceOp.SUM, place(tf.stop_gradient(t)))

        def grad(dy):
            dy_sum = ctx.all_reduce(tf.distribute.ReduceOp.SUM, dy)
            return dy_sum[replica_id * b:(replica_id + 1) * b]

        return gathered, grad

    out = gather(x)
    out.set_shape([x.shape[0] * num_replicas if x.shape[0] is not None else None] + x.shape[1:].as_list())
    return out


# ------------------------------------------------------------------------------------------------
# NT-Xent
# ------------------------------------------------------------------------------------------------
def nt_xent_loss(z1, z2, temperature: float = 0.1, return_metrics: bool = False):
    """Summed two-direction NT-Xent of cvrl.md §4 for this replica's anchors.

    z1, z2: [b, D] projections of views 1 and 2 of the local videos (any float dtype; computed in float32).
    Returns the mean over the local anchors of l1_i + l2_i, where the candidates of each anchor are the
    view-2 embeddings of all N global videos plus the other N-1 view-1 embeddings (2N-2 negatives).
    On one replica (or with a single global batch) this is L_con exactly; on R replicas the caller scales
    by 1/R and sums gradients, which gives the gradient of the global mean.
    With return_metrics=True returns (loss, {"contrastive_accuracy", "contrastive_entropy"}).
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    z1 = tf.math.l2_normalize(tf.cast(z1, tf.float32), axis=-1)
    z2 = tf.math.l2_normalize(tf.cast(z2, tf.float32), axis=-1)
    if z1.shape.rank != 2 or z2.shape.rank != 2:
        raise ValueError(f"nt_xent_loss: z1 {z1.shape} and z2 {z2.shape} must be [batch, dim]")
    ctx, num_replicas = _replica_info()
    z1_all = all_gather_with_grad(z1)
    z2_all = all_gather_with_grad(z2)
    b = tf.shape(z1)[0]
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int32) if num_replicas > 1 else 0
    # Local row i has its positive (and its masked self pair) at global column r*b + i.
    positive_cols = replica_id * b + tf.range(b)
    n_global = tf.shape(z1_all)[0]
    labels = tf.one_hot(positive_cols, 2 * n_global)  # positive is in the first (cross-view) block
    self_mask = tf.one_hot(positive_cols, n_global) * LARGE_NUM

    logits_12 = tf.matmul(z1, z2_all, transpose_b=True) / temperature
    logits_11 = tf.matmul(z1, z1_all, transpose_b=True) / temperature - self_mask
    logits_21 = tf.matmul(z2, z1_all, transpose_b=True) / temperature
    logits_22 = tf.matmul(z2, z2_all, transpose_b=True) / temperature - self_mask
    logits_1 = tf.concat([logits_12, logits_11], axis=1)
    logits_2 = tf.concat([logits_21, logits_22], axis=1)
    loss_1 = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits_1)
    loss_2 = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits_2)
    loss = tf.reduce_mean(loss_1 + loss_2)
    if not return_metrics:
        return loss
    # Metrics as logged by the reference: accuracy of the view-1 -> view-2 logits, and the mean entropy
    # of the softmax over those logits.
    pred = tf.argmax(logits_12, axis=1, output_type=tf.int32)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(pred, positive_cols), tf.float32))
    prob = tf.nn.softmax(logits_12, axis=1)
    entropy = tf.reduce_mean(-tf.reduce_sum(prob * tf.math.log(prob + 1e-8), axis=1))
    return loss, {"contrastive_accuracy": accuracy, "contrastive_entropy": entropy}


# ------------------------------------------------------------------------------------------------
# Weight decay
# ------------------------------------------------------------------------------------------------
def weight_decay_loss(kernels, coefficient: float = 1e-6) -> tf.Tensor:
    """coefficient * sum ||W||^2 / 2 over the given kernel variables (cvrl.md §4), in float32.

    Pass `cvrl_fast.models.kernel_variables(model)`: conv and dense kernels only, selected by layer type.
    """
    if coefficient < 0:
        raise ValueError(f"weight_decay={coefficient!r}: must be >= 0")
    kernels = list(kernels)
    if not kernels or coefficient == 0:
        return tf.constant(0.0, tf.float32)
    return coefficient * tf.add_n([tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in kernels])
