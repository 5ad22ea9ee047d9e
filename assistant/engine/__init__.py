"""The pipeline: one long-lived worker that owns the model and handles turns one at a time.

``Engine`` is plain Python.  Its host (a ``Session``: in the window's pipeline
``QThread``, or on the command line) calls ``load`` and ``handle_turn`` from one
thread, and may call ``cancel`` from any thread.  Everything the engine has to
say goes to the ``emit`` callback as immutable events (see ``events``).

Cancellation is an epoch counter: ``cancel()`` bumps it, and every piece of
work remembers the epoch it was submitted under.  Work whose epoch is stale
stops between tokens, and turns queued before a Stop are dropped unstarted.

The engine is split by job (``Engine`` puts the parts together):

- ``turns``: ``Engine``: a question in, a streamed reply out; regenerate and edit;
- ``loading``: the generator (load, unload, switch with the old model kept until the new one loads);
- ``speech``: the speech recognizer and spoken questions;
- ``saved``: the chat history (save as it goes, open, rename, delete, export, import, versions);
- ``camera_context``: which camera frames go with a question, and what is in view;
- ``said``: the conversation as shown, and what the model sees of it;
- ``streaming_save``: a reply saved while it streams.
"""

from assistant.engine.loading import BackendFactory, default_backend_factory, encoder_choice
from assistant.engine.said import with_view_labels
from assistant.engine.turns import EMPTY_ANSWER, Engine

__all__ = ["EMPTY_ANSWER", "BackendFactory", "Engine", "default_backend_factory", "encoder_choice", "with_view_labels"]
