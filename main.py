"""Multimodal Assistant: ``python main.py`` opens the window.

This file parses the flags and hands over to one front end: the window
(``ui.app``), or a command-line one (``cli``): ``--ask`` answers once,
``--chat`` holds a conversation in the terminal, ``--headless`` a spoken one,
``--export-chat`` prints a saved chat, ``--search`` finds things in the saved chats.
"""

from __future__ import annotations

import sys

from cli.options import EXIT_USAGE, build_parser, check_args


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.export_chat is not None:
        from cli.export import run_export

        return run_export(args)
    if args.search is not None:
        from cli.search import run_search

        return run_search(args)
    if args.ask is not None:
        from cli.ask import run_ask

        return run_ask(args)
    if args.chat:
        from cli.chat import run_chat

        return run_chat(args)
    if args.headless:
        from cli.headless import run_headless

        return run_headless(args)
    from ui.app import run_gui

    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
