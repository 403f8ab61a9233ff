"""Keeping secrets out of core dumps and away from debuggers of the same user.

The daemon and the relay hold role credentials, MFA sessions and (briefly) long-lived keys
in memory. A crash with core dumps enabled would write all of it to a file in the working
directory (issue 13: an 87 MB core from SIGABRT). At start they call `forbid_core_dumps`:

- RLIMIT_CORE 0, soft and hard, so no core file is written and it cannot be raised again
  (setrlimit(2); works on Linux and macOS);
- on Linux, PR_SET_DUMPABLE 0 (prctl(2)): no core even through a core_pattern pipe, and
  processes of the same uid can no longer ptrace it or read /proc/PID/mem or environ.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import resource
import sys
from dataclasses import dataclass

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3


@dataclass(frozen=True)
class CoreDumps:
    """What `forbid_core_dumps` achieved: `limit_zero` (RLIMIT_CORE is 0) and `dumpable`
    (None where the OS has no such flag)."""

    limit_zero: bool
    dumpable: bool | None

    @property
    def off(self) -> bool:
        return self.limit_zero and not self.dumpable

    def describe(self) -> str:
        """One phrase for `vaultd status` and the log, e.g. `off (RLIMIT_CORE 0, not
        dumpable)`."""
        parts = ["RLIMIT_CORE 0" if self.limit_zero else "RLIMIT_CORE not 0"]
        if self.dumpable is not None:
            parts.append("dumpable" if self.dumpable else "not dumpable")
        return f"{'off' if self.off else 'ON'} ({', '.join(parts)})"


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


def forbid_core_dumps() -> CoreDumps:
    """Set RLIMIT_CORE to 0 and (Linux) PR_SET_DUMPABLE to 0 for this process; report what
    holds afterwards. Never raises: a failure shows up in the result instead."""
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit_zero = resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
    dumpable: bool | None = None
    if sys.platform.startswith("linux"):
        try:
            _prctl(PR_SET_DUMPABLE, 0)
            dumpable = _prctl(PR_GET_DUMPABLE, 0) != 0
        except (OSError, AttributeError):
            dumpable = True  # could not ask: assume the worst
    return CoreDumps(limit_zero, dumpable)
