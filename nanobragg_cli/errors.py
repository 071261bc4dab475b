"""User-facing errors: one line on stderr, exit code 9 (nanoBragg.c's), never a traceback."""

EXIT_USAGE = 9


class NanoBraggError(Exception):
    """An error caused by the user's input (flags, files, sizes).

    The CLI prints ``str(err)`` as one line prefixed by ``nanobragg: error:`` and exits with
    ``err.exit_code``.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


class FlagError(NanoBraggError):
    """A problem with one command-line flag; the message names the flag."""


class InputFileError(NanoBraggError):
    """A missing, unreadable or malformed input file; the message names the file."""
