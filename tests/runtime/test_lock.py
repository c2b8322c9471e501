"""One writer per output folder: a second process is refused with the holder's name, a
SIGKILLed holder leaves no stale lock, and forked workers do not keep a folder locked."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fmae.runtime import lock
from fmae.runtime.lock import FolderInUseError, folder_lock, lock_path


def hold(folder, *, fork_child=False):
    """A process holding ``folder``'s lock until killed (with ``fork_child``, it first forks
    a child that outlives it); returns it once the lock is held, with the child's pid, if any."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from fmae.runtime.lock import folder_lock
        with folder_lock({str(folder)!r}):
            child = os.fork() if {fork_child} else -1
            if child == 0:
                time.sleep(60)
                os._exit(0)
            print(child, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, "--holder-of", str(folder)], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    return proc, child


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_second_process_is_refused_naming_the_folder_and_its_holder(tmp_path):
    holder, _ = hold(tmp_path / "out")
    try:
        with pytest.raises(FolderInUseError) as refused:
            with folder_lock(tmp_path / "out"):
                pass
        message = str(refused.value)
        assert str(tmp_path / "out") in message
        assert f"pid {holder.pid} " in message and "--holder-of" in message  # who, and their command
        assert holder.poll() is None  # the holder goes on
    finally:
        kill(holder)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder, _ = hold(tmp_path)
    kill(holder)
    with folder_lock(tmp_path) as path:
        assert path == lock_path(tmp_path)
    assert path.read_text().startswith(f"pid {os.getpid()} ")  # read after: closing a copy drops the lock


def test_a_forked_worker_does_not_keep_its_killed_parents_folder_locked(tmp_path):
    holder, child = hold(tmp_path, fork_child=True)
    kill(holder)
    try:
        os.kill(child, 0)  # the worker lives on
        with folder_lock(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_this_process_cannot_take_a_folder_it_holds_and_keeps_holding_it(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderInUseError, match="already in use by this process"):
            with folder_lock(tmp_path, wait=True):
                pass
        # The refusal closed no descriptor of the lock file: another process is still refused.
        code = f"from fmae.runtime.lock import folder_lock\nwith folder_lock({str(tmp_path)!r}): pass"
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert probe.returncode != 0 and "FolderInUseError" in probe.stderr


def test_shares_lock_apart_and_a_waiting_run_takes_its_turn(tmp_path):
    holder, _ = hold(tmp_path)
    with folder_lock(tmp_path, "rank1"):  # another share of the same folder
        pass
    threading.Timer(0.5, kill, [holder]).start()
    start = time.monotonic()
    with folder_lock(tmp_path, wait=True):
        assert time.monotonic() - start >= 0.4


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "lockf", no_locks)
    with folder_lock(tmp_path) as path:
        assert path.read_text().startswith(f"pid {os.getpid()} ")
    assert "cannot lock" in caplog.text and "would not be stopped" in caplog.text
