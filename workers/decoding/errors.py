"""Exceptions raised by the decoding core."""


class DecodeError(ValueError):
    """A payload (or a part of it) could not be decoded; the message says what and where."""


class ObjectModelError(ValueError):
    """An object-model file is unreadable or malformed; the message names the file and the problem."""
