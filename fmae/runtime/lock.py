"""One writer per output folder: an exclusive lock that a second run is refused by.

:func:`folder_lock` holds a POSIX record lock (``fcntl.lockf``) on a hidden file in the
folder, ``.fmae.lock`` (``.fmae-<name>.lock`` for a named share, e.g. one rank of a
sharded run), and writes the holder's pid, host and command line into it. The kernel
drops the lock when the holder dies, however it dies (a SIGKILL included), so a killed
run never leaves a stale lock behind and its rerun simply takes it. A record lock, not a
``flock``, because processes forked by the holder (data-loader and pool workers) do not
inherit it: a killed run's orphaned workers cannot keep its folder locked. The price: the
kernel drops a record lock when its process closes *any* descriptor of the file, so the
holder never opens its own lock file (this module refuses to lock it twice in one process).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

LOCK_NAME = ".fmae.lock"
_NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP})  # the file system has no locks
_POLL_S = 0.2  # how often a waiting run tries again

# Record locks belong to the process: the kernel grants this process a second lock of a file
# it holds, and closing either descriptor drops both. The lock files this process holds:
_held: set[tuple[int, int]] = set()
_registry = threading.Lock()


class FolderInUseError(RuntimeError):
    """Another run holds the output folder's lock."""


def lock_path(folder: str | os.PathLike, name: str = "") -> Path:
    """The lock file of ``folder`` (of its share ``name``, when given)."""
    return Path(folder) / (f".fmae-{name}.lock" if name else LOCK_NAME)


def _command_line() -> str:
    """This process's command line as typed (``python -m fmae.train …``, where /proc has it),
    on one line."""
    try:
        words = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        words = [sys.executable, *sys.argv]
    return shlex.join(words).replace("\n", "\\n")


def _holder(path: Path) -> str:
    """Who holds ``path``, as its holder wrote it (read only by a process that does not hold it)."""
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"


def _try_lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its lock (or, on a file system without locks,
    not holding it), or ``None`` while another process holds it."""
    with _registry:
        # Checked without opening the file: closing any descriptor of it would drop the lock held.
        with contextlib.suppress(FileNotFoundError):
            stat = os.stat(path)
            if (stat.st_dev, stat.st_ino) in _held:
                raise FolderInUseError(
                    f"{path.parent} is already in use by this process (pid {os.getpid()}): "
                    "give each run its own output folder"
                )
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _NO_LOCKS:
                # Cluster file systems mounted without locks (Lustre's default, some NFS): better
                # a run that goes on unguarded than no run at all.
                log.warning("cannot lock %s (%s): a second run into it would not be stopped", path.parent, err)
            else:
                os.close(fd)
                if err.errno in (errno.EACCES, errno.EAGAIN):
                    return None
                raise
        stat = os.fstat(fd)
        _held.add((stat.st_dev, stat.st_ino))
        return fd


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str = "", wait: bool = False) -> Iterator[Path]:
    """Hold ``folder``'s lock (of its share ``name``) for the ``with`` block; yields the lock
    file's path (not to be opened while held: see the module docstring).

    Creates ``folder``. With ``wait`` it waits for another holder to finish; without, it
    raises :class:`FolderInUseError` naming the folder and the holder (pid, host, command).
    A folder this process holds already is refused either way.
    """
    path = lock_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    while (fd := _try_lock(path)) is None:
        if not wait:
            raise FolderInUseError(
                f"{path.parent} is in use by another run ({_holder(path)}): wait for it to finish, "
                "or give this run another output folder"
            )
        time.sleep(_POLL_S)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {_command_line()}\n".encode(), 0)
        yield path
    finally:
        with _registry:
            stat = os.fstat(fd)
            _held.discard((stat.st_dev, stat.st_ino))
            os.close(fd)  # releases the lock; the file stays, so that no two runs lock two different files
