"""Fine-tuning a CVRL backbone end to end (cvrl.md §6.2, the reference's generic UCF-101 recipe).

    cvrl-fast finetune --backbone RUN --train train.csv --val val.csv --workdir DIR [--config finetune]

--backbone takes what linear-eval takes (a pretrain workdir, a training checkpoint, an official backbone).
Writes DIR/predictions.csv, DIR/metrics.json, the fine-tuned backbone DIR/backbone/backbone-N (official
layout, with model.json, so DIR is itself a valid --backbone) and the head DIR/classifier.npz (kernel,
bias, class_names).

32x224 clips at stride 2, batch 64, SGD Nesterov momentum 0.9, lr 0.8 (at batch 64), 5 warmup epochs then
cosine over 100 epochs, L2 1e-4 * sum ||w||^2 / 2 on the backbone conv kernels, dropout 0.2 before the
Dense head; 30-view test. Unverified against the paper's UCF-101/HMDB-51 protocol (cvrl.md §6.2).
"""
from cvrl_fast.configs import linear_eval


def get_config():
    cfg = linear_eval.get_config()
    cfg.eval.batch_size = 64
    cfg.eval.base_batch_size = 64
    cfg.eval.learning_rate = 0.8
    cfg.eval.epochs = 100.0
    cfg.eval.warmup_epochs = 5.0
    return cfg
