"""Every file one command writes: checked before the work starts, committed together after it.

What this module guarantees (README, "Security and failure model"):

- An output never names an input of the same command, nor another output: the same path, the
  same file through a symlink or a hard link.
- An existing output must be a regular file. A symlink is written *through* (the link stays, its
  target gets the new content); directories, devices, FIFOs and sockets are refused.
- Nothing appears until the whole command has succeeded: each file is written to a temporary
  file beside its destination, and only when all are written are they renamed into place.
  SIGTERM, SIGHUP and SIGINT cannot split the renames, whichever thread the kernel hands them to
  (numba's and torch's threads take process signals too): during the renames their handlers only
  record them, and once every file is in place each recorded signal goes to the handler it would
  have reached (:func:`_held_signals`). A failure, an exception or one of those signals before the
  renames removes the temporary files; :data:`COMMITTED` lists what commits put in place, so a
  command that is then interrupted can say which outputs exist.
- A new file gets ``0o666 & ~umask``; a replaced file keeps its mode.
"""
from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Union

Writer = Union[bytes, Callable]   # the file's bytes, or write(fileobj)
TMP_PREFIX = ".snnc-tmp-"
_HELD = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
COMMITTED: list = []   # every path a commit of this process put in place, in order (for messages)


class OutputError(ValueError):
    """An output path that snnc will not write to; the message says which and why."""


def _kind(mode) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path, inputs: Iterable = (), outputs: Iterable = ()) -> str:
    """The real destination of ``path`` (symlinks followed); OutputError if it may not be written."""
    path = os.fspath(path)
    if not path:
        raise OutputError("an output path is empty")
    for other, what in [(p, "an input") for p in inputs if p] + [(p, "another output") for p in outputs]:
        if _same(path, os.fspath(other)):
            raise OutputError(f"output {path} is {what} of this command ({os.fspath(other)}); "
                              f"choose another output path so nothing is overwritten")
    dest = os.path.realpath(path)
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            raise OutputError(f"cannot write {path}: directory {parent} does not exist") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {path}: directory {parent} is not writable") from None
        return dest
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"output {path} is {_kind(st.st_mode)}; snnc writes only regular files, "
                          f"so choose a file path")
    if not os.access(dest, os.W_OK) or not os.access(os.path.dirname(dest), os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: permission denied")
    return dest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class PendingOutputs:
    """The outputs of one command. ``reserve`` paths early (before the work), ``add`` their
    content once computed, ``commit`` once everything has succeeded."""

    def __init__(self, inputs: Iterable = ()):
        self.inputs = [os.fspath(p) for p in inputs if p]
        self._dest: Dict[str, str] = {}       # as given -> real destination
        self._content: Dict[str, Writer] = {}

    def reserve(self, path) -> None:
        """Check ``path`` now, against the inputs and every output reserved before it."""
        path = os.fspath(path)
        self._dest[path] = check_output(path, self.inputs, list(self._dest))

    def add(self, path, content: Writer) -> None:
        path = os.fspath(path)
        if path not in self._dest:
            self.reserve(path)
        self._content[path] = content

    def commit(self) -> list:
        """Write every added file beside its destination, then rename them all; returns the paths."""
        tmps = {}   # filled as soon as each temporary file exists, so an interrupt anywhere removes it
        try:
            for path, content in self._content.items():
                self._write_tmp(self._dest[path], content, tmps, path)
            with _held_signals():
                for path, tmp in list(tmps.items()):
                    os.replace(tmp, self._dest[path])
                    del tmps[path]
                COMMITTED.extend(self._content)
        finally:
            for tmp in tmps.values():
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        return list(self._content)

    @staticmethod
    def _write_tmp(dest: str, content: Writer, tmps: dict, key: str) -> None:
        fd, tmps[key] = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=TMP_PREFIX + os.path.basename(dest) + ".")
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmps[key], mode)


@contextmanager
def _held_signals():
    """Hold SIGTERM, SIGHUP and SIGINT for the block, in every thread: the main thread's mask
    blocks them there, and (where this runs on the main thread, the only one that may set
    handlers) each handler is replaced by one that records the signal, because the kernel
    delivers a process signal to any thread not blocking it and Python then runs the handler on
    the main thread between two renames. After the block the handlers are restored and each
    recorded signal is delivered again, to the handler it was meant for (raising there, after
    the renames, or the default action: the process ends with every output in place)."""
    caught = []
    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _HELD:
            saved[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)   # a signal pending on the mask arrives here
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)   # runs the restored handler (or the default action) now


def write_files(files: Dict, inputs: Iterable = ()) -> list:
    """Check and commit ``{path: content}`` together (the library form of one command's outputs)."""
    pending = PendingOutputs(inputs)
    for path, content in files.items():
        pending.add(path, content)
    return pending.commit()
