"""The `cvrl-fast` command line. Each subcommand imports its heavy dependencies (TensorFlow) lazily."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import cvrl_fast

    print(f"cvrl_fast {cvrl_fast.__version__}: {cvrl_fast.build_info()}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    print("demo: not yet (the demo lands with the evaluation/demo issue)")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    overrides = []
    for item in args.rest:
        if not item.startswith("--config.") or "=" not in item:
            raise SystemExit(f"cvrl-fast pretrain: unexpected argument {item!r} (overrides are --config.KEY=VALUE)")
        overrides.append(item[len("--config."):])
    from cvrl_fast import trainer  # lazy: imports TensorFlow

    return trainer.main_pretrain(args.config, overrides, args.workdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvrl-fast", description="CVRL video self-supervised learning")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of the native libraries").set_defaults(func=_cmd_info)
    sub.add_parser("demo", help="run the whole pipeline on a small embedded dataset").set_defaults(func=_cmd_demo)
    # Subcommands registered by other modules go here (pretrain, linear-eval, extract, ...).
    p = sub.add_parser("pretrain", help="CVRL self-supervised pretraining (TF2)",
                       description="--config.KEY=VALUE overrides any config key; unknown keys are rejected")
    p.add_argument("--config", required=True, help="config file, or a built-in name (tiny_cpu, k400_pretrain, k600_pretrain)")
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard logs and config.json go here")
    p.set_defaults(func=_cmd_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    args.rest = rest
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
