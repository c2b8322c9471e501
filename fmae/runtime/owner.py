"""Worker processes that end with the process they work for (their owner).

Torch's DataLoader workers watch their parent's pid, and with a fork server their parent is the
server, which outlives a trainer killed by a signal; DALI's spawned source workers wait on their
owner's queue for ever. Either way a killed trainer left its workers behind (torch's polling at
about 15 % of a core each). :func:`exit_with`, called in a worker, ends it with its owner.
"""

from __future__ import annotations

import os
import select
import threading


def exit_with(owner: int) -> None:
    """In a worker process: exit it as soon as process ``owner`` has ended, at once if it already
    has (a daemon thread waits on a pidfd, which turns readable when its process ends and, unlike
    a pid, cannot be reused meanwhile)."""
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(1)
    threading.Thread(target=_exit_when_readable, args=(fd,), name="fmae-owner-watch", daemon=True).start()


def _exit_when_readable(fd: int) -> None:
    select.select([fd], [], [])
    os._exit(1)
