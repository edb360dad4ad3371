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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvrl-fast", description="CVRL video self-supervised learning")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of the native libraries").set_defaults(func=_cmd_info)
    sub.add_parser("demo", help="run the whole pipeline on a small embedded dataset").set_defaults(func=_cmd_demo)
    # Subcommands registered by other modules go here (pretrain, linear-eval, extract, ...).
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    args.rest = rest
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
