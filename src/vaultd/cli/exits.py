"""The exit codes of `vaultd` and the one-line failure that carries one.

0 success; 1 error (one line on stderr); 2 usage; 3 a command needed an MFA code, none was
given and there was no terminal to ask on; 4 the daemon is not running; 141 stdout was closed
before the output was written (`vaultd status | true`), reported quietly. `vaultd exec`
exits with its command's status (126 not executable, 127 not found); 130 interrupted.
"""

from __future__ import annotations

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MFA, EXIT_NO_DAEMON = 0, 1, 2, 3, 4
# What a shell reports for a command killed by SIGPIPE (128 + 13), as `yes | head -1` does.
EXIT_CLOSED_PIPE = 141
EXIT_INTERRUPTED = 130


class Failure(Exception):
    """A failure the user can act on: printed as one `vaultd: MESSAGE` line, then exit."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
