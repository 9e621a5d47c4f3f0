"""One exception type for problems the user can fix.

The CLI and the server turn a `UserError` into a single readable line (exit status 2 on the
command line, an `error` message on the wire) instead of a traceback.
"""


class UserError(Exception):
    """Bad input or configuration, explained in one line the user can act on."""

    exit_status = 2
