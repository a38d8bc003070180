"""The base of every error a user can act on: the CLI prints its message as one line, exit 1."""


class HubError(Exception):
    """Something the user can fix (a setting, a missing service, a broken file); says how."""
