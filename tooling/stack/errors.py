"""The one error the stack raises: its message is the single line the user sees."""

from hub.errors import HubError


class StackError(HubError):
    """A part of the local stack could not be set up, started or stopped; says how to fix it."""
