"""The `cvrl-fast` command line. Each subcommand imports its heavy dependencies (TensorFlow) lazily.

A mistake a user can make (a config typo, a missing path, a value out of range) prints one line naming
the problem and exits 2; `--verbose` shows the traceback instead. Any other exception is a bug and keeps
its traceback. TensorFlow's start-up logging is silenced unless `--verbose` (TF_CPP_MIN_LOG_LEVEL, set
only when the user has not set it).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from cvrl_fast import DecodeError
from cvrl_fast.configs import ConfigKeyError

# Exceptions that mean "the user asked for something that cannot work", with a message that says what
# (DecodeError: a file the user named does not decode; its message names the file).
USER_ERRORS = (ValueError, ConfigKeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, DecodeError)


def _prepare_tensorflow(verbose: bool, precision: str | None = None) -> None:
    """Environment TensorFlow reads once, when it is imported: call before the first TF import."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ INFO/WARNING start-up lines
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        from cvrl_fast._quiet import filter_native_stderr

        filter_native_stderr()  # the absl lines TF_CPP_MIN_LOG_LEVEL does not reach
    if precision == "mixed_bfloat16":
        # oneDNN's bfloat16 CPU kernels gave non-finite weights on AVX512_BF16 CPUs; Eigen's did not
        # (trainer.check_precision, README "bfloat16 on CPU"). GPU/TPU replicas do not use oneDNN.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _cmd_info(args: argparse.Namespace) -> int:
    import cvrl_fast

    print(f"cvrl_fast {cvrl_fast.__version__}: {cvrl_fast.build_info()}")
    from cvrl_fast import tf_ops

    try:
        print(f"TensorFlow ops (data.engine=graph, input workers): {tf_ops.library_path()}")
    except ImportError:
        print("TensorFlow ops (data.engine=graph, input workers): not built (no TensorFlow at build time)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _prepare_tensorflow(args.verbose)
    from cvrl_fast import demo  # lazy: imports TensorFlow

    demo.run_demo(args.workdir, quick=args.quick, overrides=_config_overrides(args))
    return 0


def _config_overrides(args: argparse.Namespace) -> list[str]:
    """The `--config.KEY=VALUE` arguments left over by argparse, as `KEY=VALUE` strings."""
    overrides = []
    for item in args.rest:
        if not item.startswith("--config.") or "=" not in item:
            raise SystemExit(f"cvrl-fast {args.command}: unexpected argument {item!r} "
                             "(overrides are --config.KEY=VALUE)")
        overrides.append(item[len("--config."):])
    return overrides


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from cvrl_fast.configs import load_config

    cfg = load_config(args.config, _config_overrides(args))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1, default=list))
        return 0
    if args.workdir is None:
        raise ValueError("cvrl-fast pretrain needs --workdir DIR (checkpoints, backbone/, logs and config.json "
                         "go there)")
    _prepare_tensorflow(args.verbose, cfg.runtime.precision)
    from cvrl_fast import trainer  # lazy: imports TensorFlow

    return trainer.main_pretrain(cfg, args.workdir)


def _cmd_linear_eval(args: argparse.Namespace) -> int:
    _prepare_tensorflow(args.verbose)
    from cvrl_fast import evaluation  # lazy: imports TensorFlow

    evaluation.main_linear_eval(args.backbone, args.train, args.val, args.workdir, args.config,
                                _config_overrides(args), finetuning=args.finetuning)
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    _prepare_tensorflow(args.verbose)
    from cvrl_fast import evaluation

    evaluation.main_extract(args.backbone, args.videos, args.out, args.config, _config_overrides(args))
    return 0


def _cmd_inflate(args: argparse.Namespace) -> int:
    _prepare_tensorflow(args.verbose)
    from cvrl_fast import inflate

    print(f"inflate: wrote {inflate.main_inflate(args.resnet50_weights, args.out)}")
    return 0


def _serve(server, line: str, every_second=None) -> int:
    """Print where the server listens, then keep it up until Ctrl-C or SIGTERM (exit 0), calling
    `every_second()` (if given) once a second."""
    import signal
    import time

    def stop(signum, frame):
        raise KeyboardInterrupt

    print(line, flush=True)
    signal.signal(signal.SIGTERM, stop)
    try:
        while True:  # not server.join(): Python must get control back to run the signal handlers
            time.sleep(1.0)
            if every_second is not None:
                every_second()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _cmd_input_dispatcher(args: argparse.Namespace) -> int:
    _prepare_tensorflow(args.verbose)
    from cvrl_fast import data

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} must be in [0, 65535]")
    server = data.start_dispatcher(args.port, work_dir=args.work_dir)
    return _serve(server, f"input-dispatcher: serving {server.target} (workers: cvrl-fast input-worker "
                          f"--dispatcher HOST:{server.target.rsplit(':', 1)[1]})")


def _cmd_input_worker(args: argparse.Namespace) -> int:
    _prepare_tensorflow(args.verbose)
    from cvrl_fast import data

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} must be in [0, 65535]")
    from cvrl_fast import tf_ops

    server = data.start_worker(args.dispatcher, port=args.port, host=args.host)
    # The sources this worker's op skipped, on its stderr through the cvrl_fast logger (the trainer's
    # process never sees them).
    return _serve(server, f"input-worker: serving the dispatcher {data.service_target(args.dispatcher)}",
                  every_second=tf_ops.log_new_skips)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show tracebacks and TensorFlow's own logging")
    parser = argparse.ArgumentParser(prog="cvrl-fast", description="CVRL video self-supervised learning")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of the native libraries", parents=[common]).set_defaults(
        func=_cmd_info)
    p = sub.add_parser("demo", help="run the whole pipeline on a small embedded dataset", parents=[common],
                       description="--config.KEY=VALUE overrides keys of cvrl_fast/configs/demo.py")
    p.add_argument("--workdir", default="demo_work", help="data, checkpoints, logs and PNGs go here")
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long smoke run of every stage, written to WORKDIR/quick")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser(
        "pretrain", help="CVRL self-supervised pretraining (TF2)", parents=[common],
        description="--config.KEY=VALUE overrides any config key; unknown keys are rejected. "
                    "--config.data.sources=DIR (files, directories, globs, CSV/TXT lists, TFRecords) trains on "
                    "those videos; without it the run uses synthetic data. Rerunning into the same --workdir "
                    "resumes (with a compatible config). Ctrl-C or SIGTERM saves a checkpoint and exits; a "
                    "second Ctrl-C exits at once.")
    p.add_argument("--config", required=True,
                   help="config file (.py with get_config(), or a run's config.json), or a built-in name "
                        "(tiny_cpu, k400_pretrain, k600_pretrain)")
    p.add_argument("--workdir", help="checkpoints/, backbone/ (official layout), tensorboard/ and config.json go here")
    p.add_argument("--print-config", action="store_true", help="print the effective config (JSON) and exit")
    p.set_defaults(func=_cmd_pretrain)
    for name, finetuning, help_text in (
            ("linear-eval", False, "linear evaluation of a frozen backbone, 30-view test (cvrl.md §6.1)"),
            ("finetune", True, "fine-tune a backbone end to end with a dropout head (cvrl.md §6.2)")):
        p = sub.add_parser(name, help=help_text, parents=[common],
                           description="--config.KEY=VALUE overrides any config key; unknown keys are rejected")
        p.add_argument("--backbone", required=True,
                       help="a pretrain workdir, a training checkpoint (ckpt-N), or an official backbone prefix; "
                            "depth and width are read from the run")
        p.add_argument("--train", required=True, help="labelled videos: CSV/TXT list or class sub-directories")
        p.add_argument("--val", required=True, help="labelled held-out videos, same forms as --train")
        p.add_argument("--workdir", required=True,
                       help="metrics.json and predictions.csv go here" +
                            (", and the fine-tuned backbone/ and classifier.npz" if finetuning else ""))
        p.add_argument("--config", default="finetune" if finetuning else "linear_eval")
        p.set_defaults(func=_cmd_linear_eval, finetuning=finetuning)
    p = sub.add_parser("extract", help="pooled backbone features per video, averaged over the 30 test views",
                       parents=[common])
    p.add_argument("--backbone", required=True,
                   help="a pretrain workdir, a training checkpoint (ckpt-N), or an official backbone prefix; "
                            "depth and width are read from the run")
    p.add_argument("--videos", required=True, help="videos: a list file, a directory or a glob")
    p.add_argument("--out", required=True, help="output .npz with features [N, D], paths and labels")
    p.add_argument("--config", default="linear_eval")
    p.set_defaults(func=_cmd_extract)
    p = sub.add_parser("inflate", help="build the ImageNet-inflated R3D-50 from Keras ResNet50 weights (I3D rule)",
                       parents=[common])
    p.add_argument("--resnet50-weights", required=True, help="a keras.applications.ResNet50 weights file")
    p.add_argument("--out", required=True, help="output checkpoint prefix in the official backbone layout")
    p.set_defaults(func=_cmd_inflate)
    p = sub.add_parser("input-dispatcher", parents=[common],
                       help="the tf.data service dispatcher that input workers and trainers connect to")
    p.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    p.add_argument("--work-dir", help="journal directory: a restarted dispatcher resumes its jobs from it")
    p.set_defaults(func=_cmd_input_dispatcher)
    p = sub.add_parser("input-worker", parents=[common],
                       help="a tf.data service worker that runs the graph input pipeline (loads cvrl_fast's ops)")
    p.add_argument("--dispatcher", required=True, help="HOST:PORT of `cvrl-fast input-dispatcher`")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    p.add_argument("--host", help="the name trainers reach this machine by (default: its host name)")
    p.set_defaults(func=_cmd_input_worker)
    return parser


@contextlib.contextmanager
def _cli_logging(verbose: bool):
    """The CLI owns its process, so for the command's duration it sets up the two logs the library leaves
    alone (and puts them back afterwards, for callers of main() inside a bigger process, e.g. the tests).

    * The "cvrl_fast" logger (each skipped video, once) gets its own stderr handler: TensorFlow imports
      absl, whose root handler writes absl-format lines that the stderr filter (_quiet) drops as TF noise.
    * FFmpeg's process-wide level: "fatal" (the skip lines already name each bad file and FFmpeg's reason),
      "error" with --verbose.
    """
    from cvrl_fast._ffmpeg_log import ffmpeg_log_level

    log = logging.getLogger("cvrl_fast")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cvrl_fast: %(message)s"))
    saved = log.propagate, log.level
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        with ffmpeg_log_level("error" if verbose else "fatal"):
            yield
    finally:
        log.removeHandler(handler)
        log.propagate, log.level = saved


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    args.rest = rest
    with _cli_logging(args.verbose):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.verbose:
            raise
        print(f"cvrl-fast {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.verbose:
            raise
        print(f"cvrl-fast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        # Training that turned non-finite, data with no usable video left, or a checkpoint the disk could not
        # take, is the run's outcome, not a bug: one line, exit 1.
        if type(e).__name__ not in ("NonFiniteError", "InputError", "CheckpointWriteError") or args.verbose:
            raise
        print(f"cvrl-fast {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
