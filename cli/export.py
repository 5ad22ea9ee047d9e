"""``--export-chat last|ID --format json|md``: a saved conversation on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from cli.console import fail, warn
from cli.options import EXIT_OK, paths_from


def run_export(args: argparse.Namespace) -> int:
    from assistant.store.export import conversation_markdown, export_json, linked_in_history
    from assistant.store.history import HistoryError, open_history

    paths = paths_from(args)
    try:
        store, warning = open_history(paths.data)
    except HistoryError as exc:
        return fail(str(exc))
    try:
        if warning:
            warn(warning)
        conversation_id = store.last_conversation_id() if args.export_chat == "last" else int(args.export_chat)
        if conversation_id is None or store.get_conversation(conversation_id) is None:
            return fail(f"there is no saved conversation '{args.export_chat}'.")
        if args.format == "json":
            sys.stdout.write(json.dumps(export_json(store, conversation_id), ensure_ascii=False, indent=1) + "\n")
        else:
            sys.stdout.write(conversation_markdown(store, conversation_id, linked_in_history))
        return EXIT_OK
    except HistoryError as exc:
        return fail(str(exc))
    finally:
        store.close()
