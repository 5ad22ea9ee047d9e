"""Multimodal Assistant: ``python main.py`` opens the window; ``--ask`` answers once on the command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from assistant.cli import EXIT_USAGE, build_parser, check_args, run_ask

    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.ask is not None:
        return run_ask(args)
    from ui.app import run_gui

    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
