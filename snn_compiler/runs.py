"""How ``snnc simulate`` and ``snnc sweep`` run a network over their data: in memory in one call
(a DATA.npz, the default), a batch at a time (a streamed data set, :mod:`.data_stream`), or in
shards on a Ray cluster (``--ray``, :mod:`.distributed`); all three give the same result, bit for
bit (:mod:`.shards`)."""
from __future__ import annotations

import sys
import warnings

from .extras import check_available

STREAM_BATCHES = 16   # batches of a streamed data set read at once


def open_data_for(graph, path, **kw):
    """The data source at ``path`` for ``graph``'s input (:func:`.data_stream.open_source`), with
    :func:`.run_inputs.load_data_for`'s notes and, in memory, its clipping warning."""
    from .data_stream import open_source
    from .input_range import clipped_input_warning
    from .ir import input_node, op_of
    notes = []
    src = open_source(path, graph.nodes[input_node(graph)]["shape"], layout=graph.graph["snnc"].get("input_layout"),
                      notes=notes, **kw)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if src.x is not None:
        clipped = clipped_input_warning(op_of(graph, input_node(graph)), src.x)
        if clipped:
            warnings.warn(clipped, UserWarning, stacklevel=1)
    return src


def check_ray_options(ray, workers, backend) -> None:
    """Before any work: --ray's address, ray installed, a backend that splits, --workers with --ray."""
    if ray is None:
        if workers is not None:
            raise ValueError("--workers applies with --ray only")
        return
    from .distributed import check_address
    from .shards import check_backend
    check_address(ray)
    check_backend(backend, "--ray")
    check_available("ray", "--ray")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")


class Runner:
    """Runs ``graph`` on ``backend`` over ``source``; a context manager (a Ray connection lives
    from enter to exit)."""

    def __init__(self, graph, source, backend, *, ray=None, workers=None, batch_size=256, cluster=None):
        """``ray``: the address of a cluster to connect to from enter to exit; ``cluster``: an open
        :class:`.distributed.Cluster` to use (a sweep's, kept across its rows)."""
        from .shards import check_backend
        if source.streamed and ray is None and cluster is None:
            check_backend(backend, f"{source.path}: a streamed data set")
        self.graph, self.source, self.backend = graph, source, backend
        self.ray, self.workers, self.batch_size = ray, workers, batch_size
        self.cluster, self._owned = cluster, False

    def __enter__(self):
        if self.ray is not None and self.cluster is None:
            from .distributed import Cluster
            self.cluster, self._owned = Cluster(self.ray, self.workers).__enter__(), True
        return self

    def __exit__(self, *exc):
        if self._owned:
            self.cluster.__exit__(*exc)
            self.cluster, self._owned = None, False
        return False

    @property
    def sharded(self) -> bool:
        return self.cluster is not None or self.source.streamed

    def warm(self, options) -> None:
        """Compile the engine's kernels outside a timed run (one sample, one step)."""
        from .targets import get_backend
        if self.backend != "reference":
            return
        if self.cluster is not None:
            self.cluster.warm(self.graph, self.source, self.backend, options)
            return
        _, x = next(self.source.batches(1))
        if x.ndim == len(self.graph.nodes[_input(self.graph)]["shape"]) + 2:
            x = x[:, :1]   # a sequence: one frame
        opts = {k: v for k, v in options.items() if k not in ("batch_size", "record", "record_steps", "progress")}
        get_backend(self.backend)(self.graph, x[:1], **dict(opts, timesteps=1))

    def run(self, options, totals=False):
        """(SimResult, {spiking layer: whole-run spike total} or None) of the whole data set;
        ``options``: simulate's, ``timesteps`` given. ``totals``: wanted (a sweep's synaptic
        operations), so an in-memory run goes through the shards' path too."""
        from .shards import run_local
        options = dict(options, batch_size=self.batch_size)
        opts = {k: v for k, v in options.items() if k != "progress"}
        if self.cluster is not None:
            return self.cluster.run(self.graph, self.source, self.backend, opts, self._shard())
        if self.source.streamed or totals:
            return run_local(self.graph, self.source, self.backend, opts, self._shard())
        from .targets import get_backend
        return get_backend(self.backend)(self.graph, self.source.x, **options), None

    def input_events(self, T, encoding, seed) -> int:
        """The input's nonzero values over T steps, all samples (:func:`.shards.input_events`)."""
        from .shards import input_events
        if self.cluster is not None:
            return self.cluster.input_events(self.graph, self.source, self._shard(), T, encoding, seed)
        return sum(input_events(self.graph, x, first, T, encoding, seed) for first, x in self.source.batches(self._shard()))

    def _shard(self) -> int:
        """Samples a shard: spread over a cluster's workers; here all of an in-memory data set, or
        16 batches of a streamed one (simulate batches them; an .npy read is capped by
        data_stream.READ_BYTES however many that is)."""
        if self.cluster is not None:
            from .distributed import shard_size
            return shard_size(self.source.n, len(self.cluster.actors), self.batch_size)
        return STREAM_BATCHES * self.batch_size if self.source.streamed else max(1, self.source.n)


def _input(graph):
    from .ir import input_node
    return input_node(graph)
