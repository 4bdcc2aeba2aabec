"""User-facing errors: one line on stderr and a non-zero exit, never a traceback."""
import functools
import sys


class UserError(Exception):
    """Bad input or environment the user can fix; the message names the file/row/entry and the problem."""

    def __str__(self):
        message = super().__str__()
        # A DataLoader worker's exception comes back as UserError("Caught UserError in DataLoader worker
        # process 0.\nOriginal Traceback ...\nerrors.UserError: <message>"): keep only the message.
        if "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split("UserError: ", 1)[-1]
        return message


EXIT_USER_ERROR = 2


def cli_entry(main):
    """Wrap a script's main() so a UserError (and Ctrl-C) ends the process with one line, not a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
