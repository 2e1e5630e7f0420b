"""A run's samples split across a local Ray cluster of 2 workers equal the local run bit for bit:
scores, predictions, decision times, ties, rates, per-layer counts and per-step records, for every
encoding and read-out (Poisson streams are keyed by seed and sample index, so a shard draws the
whole run's)."""
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from snn_compiler import artifact  # noqa: E402
from snn_compiler.data_stream import open_source  # noqa: E402
from snn_compiler.ir import ops as O, op_of, output_node  # noqa: E402
from snn_compiler.distributed import Cluster, shard_size  # noqa: E402
from snn_compiler.runs import Runner  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402

from lava_nets import compiled  # noqa: E402
from test_shards import same  # noqa: E402

N = 23


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 workers for the module (it starts in a few seconds)."""
    with Cluster("local", workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """The graph as an artifact file gives it (what the workers read; the float SNN's weights are
    stored narrower than compile holds them), samples and their source."""
    q, x = compiled("cnn")
    x = np.random.default_rng(2).uniform(x.min(), 1.0, (N,) + x.shape[1:])
    d = tmp_path_factory.mktemp("ray")
    np.savez(d / "data.npz", x=x)
    artifact.save(q, str(d / "net.snnc"))
    q = artifact.load(str(d / "net.snnc"))
    return q, x, open_source(d / "data.npz", q.nodes["input"]["shape"])


READOUTS = [("membrane", None), ("membrane-sum", None), ("membrane-max", None), ("count", None),
            ("first-spike", None), ("k-spikes", 2)]


@pytest.mark.parametrize("encoding", ["constant", "poisson", "burst", "ch"])
@pytest.mark.parametrize("readout,k", READOUTS)
def test_ray_run_equals_the_local_run(cluster, net, encoding, readout, k):
    q, x, src = net
    opts = dict(timesteps=7, encoding=encoding, seed=11, readout=readout, k=k)
    want = simulate(q, x, **opts)
    runner = Runner(q, src, "reference", batch_size=4, cluster=cluster)
    got, _ = runner.run(opts)
    same(got, want)


@pytest.mark.parametrize("readout,k", [("membrane", None), ("count", None), ("first-spike", None)])
def test_counts_and_records_merge_exactly(cluster, net, readout, k):
    """record=True's per-layer counts and record_steps' per-step spikes, over shards of 3 samples
    (the last one short), on the reference backend; the float SNN's scores agree to BLAS rounding
    (its sums depend on the batch's shape, as a local run's do between batch sizes)."""
    q, x, src = net
    layer = next(n for n in q if isinstance(op_of(q, n), O.NEURONS) and n != output_node(q))
    opts = dict(timesteps=5, encoding="poisson", seed=4, readout=readout, k=k, record=True)
    want = simulate(q, x, **opts)
    got, _ = cluster.run(q, src, "reference", dict(opts, batch_size=4), 3)
    same(got, want)
    assert got.counts and set(got.counts) == set(want.counts)
    want = simulate(q, x, mode="float", **opts)
    got, _ = cluster.run(q, src, "float", dict(opts, batch_size=4), 3)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-9)
    rec = dict(timesteps=5, encoding="poisson", seed=4, readout="count", record_steps=[layer])
    want = simulate(q, x, **rec)
    got, _ = cluster.run(q, src, "reference", dict(rec, batch_size=4), 3)
    assert np.array_equal(got.steps[layer], want.steps[layer])


def test_every_worker_takes_shards_and_keeps_the_artifact(cluster, net):
    q, x, src = net
    assert len(cluster.actors) == 2
    pids = {ray.get(a.warm.remote(*cluster.blob(q), x, "reference", dict(readout="membrane"))) for a in cluster.actors}
    assert len(pids) == 2   # two processes
    digest, _ = cluster.blob(q)
    assert list(cluster._blobs) == [digest]   # the artifact's bytes went into the object store once
    assert shard_size(N, 2, 256) == 3 and shard_size(10 ** 6, 2, 4) == 64


def test_a_worker_error_is_its_own_one_line_error(cluster, net):
    """A shard's error comes back as the error it was on the worker, not Ray's traceback."""
    q, x, src = net
    with pytest.raises(ValueError, match="timesteps") as e:
        cluster.run(q, src, "reference", dict(timesteps=0, encoding="constant", seed=0, readout="membrane",
                                              batch_size=4), 5)
    assert "\n" not in str(e.value)
