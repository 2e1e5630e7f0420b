"""``--ray``: a run's samples split across the workers of a Ray cluster (``snnc simulate``, and
each row of ``snnc sweep``), merged into exactly the local run's result (:mod:`.shards`).

``--ray local`` starts a cluster on this machine for the command (one worker per core, or
``--workers``) and stops it at the end; ``--ray auto`` joins the cluster ``ray start`` runs here
(RAY_ADDRESS or this machine's); ``--ray HOST:PORT`` / ``ray://HOST:PORT`` joins that one. Each
worker is an actor holding the artifacts it was sent (an artifact's bytes go into the object store
once and are read by a worker once); the driver reads the data a batch at a time and hands each
worker a shard of samples with its first index, at most two shards a worker in flight, so neither
the driver nor the object store holds the data set. Nothing but the artifact bytes and the shards
crosses the network: the workers need snnc installed, not the files.
"""
from __future__ import annotations

import hashlib
import os
import re

from .extras import require

# The object store of a local cluster: shards in flight (two per worker) and the artifacts, not
# the data set; Ray's default (30% of memory) would take memory a 2-core machine's runs need.
LOCAL_OBJECT_STORE = 256 << 20
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d+$")


def check_address(text: str) -> str:
    """``local``, ``auto`` or HOST:PORT (``ray://HOST:PORT``), or a one-line ValueError."""
    if text in ("local", "auto") or _ADDRESS.match(text):
        return text
    raise ValueError(f"--ray {text!r}: expected local (start a cluster here), auto (the running cluster) "
                     f"or the cluster's HOST:PORT")


class Worker:
    """One Ray actor: runs shards of samples of artifacts it keeps (by digest) once read."""

    def __init__(self):
        self.graphs = {}

    def run(self, digest, blob, x, first, backend, options):
        from .shards import run_shard
        return run_shard(self._graph(digest, blob), x, first, backend, options)

    def input_events(self, digest, blob, x, first, T, encoding, seed):
        from .shards import input_events
        return input_events(self._graph(digest, blob), x, first, T, encoding, seed)

    def warm(self, digest, blob, x, backend, options):
        """Compile the engine's kernels (numba JIT) before a timed run: one sample, one step."""
        from .targets import get_backend
        opts = {k: v for k, v in options.items() if k not in ("batch_size", "record", "record_steps")}
        opts["timesteps"] = 1
        get_backend(backend)(self._graph(digest, blob), x[:1], **opts)
        return os.getpid()

    def _graph(self, digest, blob):
        if digest not in self.graphs:
            import io

            import ray

            from . import artifact
            self.graphs[digest] = artifact.load(io.BytesIO(ray.get(blob[0])))   # blob in a list: fetched here, once
        return self.graphs[digest]


class Cluster:
    """A connection to a Ray cluster and ``workers`` actors on it (a context manager)."""

    def __init__(self, address: str, workers=None):
        check_address(address)
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        self.address, self.want = address, workers
        self.ray = require("ray", "--ray")
        self.started = False
        self.actors = []
        self._blobs = {}

    def __enter__(self):
        ray = self.ray
        if ray.is_initialized():
            raise RuntimeError("this process is already connected to a Ray cluster; --ray opens its own connection")
        quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=False)
        kept = _signal_handlers()   # ray.init sets its own SIGTERM handler (sys.exit): the command's goes back after
        try:
            self._init(ray, quiet)
        finally:
            _restore(kept)
        self.started = True
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            if cpus < 1:
                raise RuntimeError(f"--ray {self.address}: the cluster offers no CPUs")
            n = cpus if self.want is None else min(self.want, cpus)
            actor = ray.remote(num_cpus=1)(Worker)
            self.actors = [actor.remote() for _ in range(n)]
        except BaseException:   # no connection (or local cluster) left behind
            self.__exit__(None, None, None)
            raise
        return self

    def _init(self, ray, quiet):
        if self.address == "local":
            cpus = self.want if self.want is not None else os.cpu_count()
            ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE, **quiet)
            return
        if self.address != "auto":
            _check_reachable(self.address)
        try:
            ray.init(address=self.address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RuntimeError(f"--ray {self.address}: cannot connect to a Ray cluster ({_one_line(e)})") from None

    def __exit__(self, *exc):
        if self.started:
            for a in self.actors:
                self.ray.kill(a)
            self.actors = []
            self.ray.shutdown()   # a joined cluster keeps running; a local one stops
            self.started = False
        return False

    def blob(self, graph):
        """(digest, [ref]) of ``graph``'s artifact bytes, put in the object store once."""
        from . import artifact
        data = artifact.to_bytes(graph)
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._blobs:
            self._blobs[digest] = [self.ray.put(data)]
        return digest, self._blobs[digest]

    def warm(self, graph, source, backend, options):
        """Every worker compiles its kernels on one sample (before a timed run)."""
        digest, blob = self.blob(graph)
        _, x = next(source.batches(1))
        for ref in [a.warm.remote(digest, blob, x, backend, options) for a in self.actors]:
            self._get(ref)

    def run(self, graph, source, backend, options, shard):
        """(SimResult, spike totals) of the whole source (:func:`.shards.merge`), in shards of
        ``shard`` samples over the workers."""
        from .shards import merge
        digest, blob = self.blob(graph)
        return merge(graph, self._map(source, shard, lambda a, first, x: a.run.remote(digest, blob, x, first, backend,
                                                                                    options)))

    def input_events(self, graph, source, shard, T, encoding, seed) -> int:
        """The input's events over the whole source (:func:`.shards.input_events`), on the workers."""
        digest, blob = self.blob(graph)
        return sum(self._map(source, shard, lambda a, first, x: a.input_events.remote(digest, blob, x, first, T,
                                                                                     encoding, seed)))

    def _map(self, source, shard, submit) -> list:
        """``submit(actor, first, x)`` for every shard of the source, two a worker in flight; the
        results as they come back."""
        ray = self.ray
        results, pending, idle = [], {}, list(self.actors) * 2
        batches = source.batches(shard)
        more = True
        try:
            while more or pending:
                while more and idle:
                    got = next(batches, None)
                    if got is None:
                        more = False
                        break
                    a = idle.pop()
                    pending[submit(a, *got)] = a
                if not pending:
                    break
                ready, _ = _interruptible(ray.wait, list(pending), num_returns=1)
                for ref in ready:
                    idle.append(pending.pop(ref))
                    results.append(self._get(ref))
        except Exception:   # the shards in flight end (small); their errors are this one, not Ray's "unhandled" log
            for ref in pending:
                try:
                    ray.get(ref)
                except Exception:
                    pass
            raise
        return results

    def _get(self, ref):
        """A shard's result; its error raised as the worker raised it (one line, not Ray's traceback)."""
        try:
            return _interruptible(self.ray.get, ref)
        except self.ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, Exception):
                raise e.cause from None
            raise


def shard_size(n: int, workers: int, batch_size: int) -> int:
    """Samples a shard: the work spread over every worker (four shards each, so an uneven one
    does not leave the others idle at the end), at most 16 batches (the memory in flight)."""
    return max(1, min(-(-n // (4 * workers)), 16 * batch_size))


def _interruptible(call, *args, **kw):
    """``call`` (Ray's wait or get), with an interrupt or SIGTERM that arrives inside it raised as
    itself: the signal handler's exception comes out of Ray's compiled code wrapped in a SystemError."""
    try:
        return call(*args, **kw)
    except SystemError as e:
        if isinstance(e.__cause__, BaseException) and not isinstance(e.__cause__, Exception):
            raise e.__cause__ from None
        raise


_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


def _signal_handlers() -> dict:
    """This process's handlers of the signals a command unwinds on (main thread only: elsewhere
    neither Ray nor snnc sets them)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(getattr(signal, s)) for s in _SIGNALS if hasattr(signal, s)}


def _restore(handlers: dict) -> None:
    import signal
    for name, h in handlers.items():
        if h is not None:
            signal.signal(getattr(signal, name), h)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """HOST:PORT accepts a connection within ``timeout`` seconds, or a one-line error: Ray itself
    retries an unreachable address for minutes before it gives up."""
    import socket
    host, _, port = address[len("ray://"):].rpartition(":") if address.startswith("ray://") else address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise RuntimeError(f"--ray {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                           f"`ray start --head` or use --ray local") from None


def _one_line(e) -> str:
    return " ".join(str(e).split()) or type(e).__name__
