"""The command-line front ends (no Qt): ``--ask``, ``--headless``, ``--export-chat``.

``main.py`` parses the flags (``options``) and hands over to one of these; the
window is ``ui.app``.  Each front end holds a ``Session``, as the window does.
"""
