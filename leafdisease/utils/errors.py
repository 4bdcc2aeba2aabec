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


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: a result of the settings (an LR too high, extreme class weights), which a
    benchmark records rather than stops on; train.py exits with EXIT_TRAINING_DIVERGED for it."""


EXIT_USER_ERROR = 2
EXIT_TRAINING_DIVERGED = 3  # a script running train.py tells a diverged run from bad input by this
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


def cli_entry(main):
    """Wrap a script's main() so a UserError (and Ctrl-C) ends the process with one line, not a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_TRAINING_DIVERGED if isinstance(error, TrainingDiverged) else EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper
