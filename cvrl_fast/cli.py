"""The `cvrl-fast` command line. Each subcommand imports its heavy dependencies (TensorFlow) lazily."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import cvrl_fast

    print(f"cvrl_fast {cvrl_fast.__version__}: {cvrl_fast.build_info()}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
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
    overrides = _config_overrides(args)
    from cvrl_fast import trainer  # lazy: imports TensorFlow

    return trainer.main_pretrain(args.config, overrides, args.workdir)


def _cmd_linear_eval(args: argparse.Namespace) -> int:
    from cvrl_fast import evaluation  # lazy: imports TensorFlow

    evaluation.main_linear_eval(args.backbone, args.train, args.val, args.workdir, args.config,
                                _config_overrides(args), finetuning=args.finetuning)
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from cvrl_fast import evaluation

    evaluation.main_extract(args.backbone, args.videos, args.out, args.config, _config_overrides(args))
    return 0


def _cmd_inflate(args: argparse.Namespace) -> int:
    from cvrl_fast import inflate

    print(f"inflate: wrote {inflate.main_inflate(args.resnet50_weights, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvrl-fast", description="CVRL video self-supervised learning")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of the native libraries").set_defaults(func=_cmd_info)
    p = sub.add_parser("demo", help="run the whole pipeline on a small embedded dataset",
                       description="--config.KEY=VALUE overrides keys of cvrl_fast/configs/demo.py")
    p.add_argument("--workdir", default="demo_work", help="data, checkpoints, logs and PNGs go here")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run of every stage")
    p.set_defaults(func=_cmd_demo)
    # Subcommands registered by other modules go here (pretrain, linear-eval, extract, ...).
    p = sub.add_parser("pretrain", help="CVRL self-supervised pretraining (TF2)",
                       description="--config.KEY=VALUE overrides any config key; unknown keys are rejected")
    p.add_argument("--config", required=True, help="config file, or a built-in name (tiny_cpu, k400_pretrain, k600_pretrain)")
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard logs and config.json go here")
    p.set_defaults(func=_cmd_pretrain)
    for name, finetuning, help_text in (
            ("linear-eval", False, "linear evaluation of a frozen backbone, 30-view test (cvrl.md §6.1)"),
            ("finetune", True, "fine-tune a backbone end to end with a dropout head (cvrl.md §6.2)")):
        p = sub.add_parser(name, help=help_text,
                           description="--config.KEY=VALUE overrides any config key; unknown keys are rejected")
        p.add_argument("--backbone", required=True, help="official-layout backbone checkpoint prefix")
        p.add_argument("--train", required=True, help="labelled videos: CSV/TXT list or class sub-directories")
        p.add_argument("--val", required=True, help="labelled held-out videos, same forms as --train")
        p.add_argument("--workdir", required=True, help="metrics.json and predictions.csv go here")
        p.add_argument("--config", default="finetune" if finetuning else "linear_eval")
        p.set_defaults(func=_cmd_linear_eval, finetuning=finetuning)
    p = sub.add_parser("extract", help="pooled backbone features per video, averaged over the 30 test views")
    p.add_argument("--backbone", required=True, help="official-layout backbone checkpoint prefix")
    p.add_argument("--videos", required=True, help="videos: a list file, a directory or a glob")
    p.add_argument("--out", required=True, help="output .npz with features [N, D], paths and labels")
    p.add_argument("--config", default="linear_eval")
    p.set_defaults(func=_cmd_extract)
    p = sub.add_parser("inflate", help="build the ImageNet-inflated R3D-50 from Keras ResNet50 weights (I3D rule)")
    p.add_argument("--resnet50-weights", required=True, help="a keras.applications.ResNet50 weights file")
    p.add_argument("--out", required=True, help="output checkpoint prefix in the official backbone layout")
    p.set_defaults(func=_cmd_inflate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    args.rest = rest
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
