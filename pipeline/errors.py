"""The one base class of the errors sal3d expects: bad input, a mismatched store or checkpoint, a
refused setting. The command line prints such an error as one line; anything else is a bug and keeps
its traceback."""

from __future__ import annotations


class Sal3dError(Exception):
    """An expected failure; the message names the file (store, checkpoint, video) and the reason."""
