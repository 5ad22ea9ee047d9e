"""The command-line front ends (no Qt): ``--ask``, ``--headless``, ``--export-chat``.

``main.py`` parses the flags (``options``) and hands over to one of these; the
window is ``ui.app``.  ``--ask`` and ``--headless`` each hold a ``Session``, as the
window does; ``--export-chat`` only reads the store.
"""
