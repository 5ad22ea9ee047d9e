"""Dialogs: Settings… and Models…."""
