"""Lava's channels live in /dev/shm; a killed run never unlinks them. The worker logs every
segment its process group creates (JOB/shm.txt) and whoever kills the group unlinks them.
(No Lava import here: used on both sides.)"""
from __future__ import annotations

import os
import re

SHM_LOG = "shm.txt"


def log_shared_memory(job):
    """Write the name of every shared-memory segment this process group creates to JOB/shm.txt.

    Lava's channels live in /dev/shm (made by a multiprocessing manager process, forked from here,
    so it inherits this hook); a killed run never unlinks them, so whoever kills it does, from
    this list (:func:`unlink_shared_memory`)."""
    from multiprocessing import shared_memory  # (does not touch the start method)

    orig = shared_memory.SharedMemory.__init__
    path = os.path.join(job, SHM_LOG)

    def init(self, name=None, create=False, size=0):
        orig(self, name, create, size)
        if create:
            with open(path, "a") as f:
                f.write(self.name.lstrip("/") + "\n")
    shared_memory.SharedMemory.__init__ = init


def shm_names(job) -> list:
    """The segment names listed in JOB/shm.txt (only multiprocessing's psm_<hex> names)."""
    try:
        with open(os.path.join(job, SHM_LOG)) as f:
            return [n.strip() for n in f if re.fullmatch(r"psm_[0-9a-f]+", n.strip())]
    except OSError:
        return []


def unlink_shared_memory(job) -> int:
    """Unlink the segments listed in JOB/shm.txt that still exist; returns how many."""
    gone = 0
    for name in shm_names(job):
        try:
            os.unlink(os.path.join("/dev/shm", name))
            gone += 1
        except OSError:
            pass
    return gone
