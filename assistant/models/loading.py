"""One model load at a time in the whole process.

transformers' ``from_pretrained`` changes process-wide state while it runs (the default
dtype, patched ``torch`` and model functions) and restores it afterwards.  Two loads in
two threads (the chat model in the pipeline thread, the image search model in the search
thread) interleave those changes and break each other: "Cannot copy out of meta tensor",
or weights left untied for the rest of the process.  Every ``from_pretrained`` of a model
runs under ``MODEL_LOAD_LOCK``; a load waits for the one in progress (seconds).
"""

from __future__ import annotations

import threading

__all__ = ["MODEL_LOAD_LOCK"]

MODEL_LOAD_LOCK = threading.RLock()
