"""Retrieval: find saved pictures and messages by what they show or mean (and by their words)."""
