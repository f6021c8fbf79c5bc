"""Errors of the serving core. Each is a ``ValueError`` whose message names the bad value and what was
expected; the HTTP layer maps them to status codes (unknown user or item: 404, anything else: 422)."""

from __future__ import annotations


class ServeError(ValueError):
    """A request the core cannot answer; the message says what is wrong and what was expected."""


class UnknownUser(ServeError):
    """A user with no interaction at all (neither in the data nor ingested)."""


class UntrainedUser(ServeError):
    """A user the model cannot serve because it was not in the training data (a ``model.rating_base`` run reads
    each training user's factors under its frozen base, which a new user does not have)."""


class UnknownItem(ServeError):
    """An item id that is not in the model's catalogue (a new item has no embedding)."""


class BadRequest(ServeError):
    """A value of the right type but out of range (k, a timestamp, a rating)."""
