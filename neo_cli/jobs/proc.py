"""Processes: is a recorded supervisor still the same live process, and on which boot.

A pid alone is not an identity (pids are reused, and a reboot starts them over), so the store keeps
(host, boot id, pid, start time); a process is the job's only when all four match. On systems
without /proc only the pid is checked.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from functools import cache
from pathlib import Path


@cache
def host_name() -> str:
    return socket.gethostname()


@cache
def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (/proc/PID/stat field 22)."""
    f = _stat_fields(pid)
    return int(f[19]) if f and len(f) > 19 else None


def parent(pid: int) -> int | None:
    """The parent pid of a live process (None when unknown)."""
    f = _stat_fields(pid)
    return int(f[1]) if f and len(f) > 1 and f[0] not in ("Z", "X") else None


def alive(pid: int | None, started: int | None, boot: str | None) -> bool:
    """Whether `pid` is still the process that started at `started` in this boot (zombies are
    dead)."""
    if not pid:
        return False
    if boot is not None and boot_id() is not None and boot != boot_id():
        return False  # the machine restarted since
    f = _stat_fields(pid)
    if f is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc: the pid is all we have
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if f[0] in ("Z", "X"):
        return False
    return started is None or int(f[19]) == started


def kill_group(pid: int, sig: int) -> None:
    """Signal a process group (a supervisor is a session leader; a worker leads its group)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a no-op),
    so a compile never outlives a supervisor killed with -9."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


__all__ = ["alive", "boot_id", "die_with_parent", "host_name", "kill_group", "parent",
           "start_time"]
