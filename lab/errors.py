"""The lab's one error type: a message for the person running it, never a traceback."""

from __future__ import annotations


class LabError(Exception):
    """Something the lab could not do; the message says what and, where it can, why."""
