"""Decompression bombs, values beyond what the engines compute in, damaged zips: refused from what
the files declare (npy headers, zip sizes, the manifest's size and keys), before anything is
inflated, on one line naming the file and the cause."""
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from snn_compiler import artifact
from snn_compiler.data import DataError, load_data

from .tools import assert_refused, declare_size, npy_header, snnc

torch = pytest.importorskip("torch")


@pytest.fixture
def files(cnn_files):
    return cnn_files


def run_commands(files, data, *words):
    """simulate, check and compile --calibration all refuse ``data`` on one line with ``words``."""
    assert_refused(snnc("simulate", files / "net.snnc", "--data", data), *words)
    assert_refused(snnc("check", files / "net.snnc", "--data", data, "--backends", "reference,float"), *words)
    assert_refused(snnc("compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", data,
                        "-o", data.parent / "o.snnc"), *words)
    assert not (data.parent / "o.snnc").exists()


def bounded(fn, limit_mib=64):
    """Run ``fn`` (which must raise ValueError) and return its message; its peak traced memory stays
    under ``limit_mib``."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as e:
            fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit_mib << 20, f"peak {peak / 2**20:.0f} MiB"
    return str(e.value)


def test_npz_bomb_is_refused_from_its_declared_size(files, tmp_path):
    """x declares (10^7, 1, 8, 8): 0.6 GiB of zeros in a 0.6 MB file, 5.4 GiB once read as float64
    (before: simulate and check grew to 10-11 GB until killed)."""
    bomb = tmp_path / "bomb.npz"
    shape = (10 ** 7, 1, 8, 8)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z, z.open("x.npy", "w") as f:
        f.write(npy_header(shape, np.int8))
        zeros = bytes(1 << 24)
        left = int(np.prod(shape))
        while left:
            f.write(zeros[:left])
            left -= min(left, len(zeros))
    assert bomb.stat().st_size < 4 << 20
    msg = bounded(lambda: load_data(bomb, (1, 8, 8)))
    assert "bomb.npz" in msg and "(10000000, 1, 8, 8)" in msg and "MAX_ARRAY_BYTES" in msg
    run_commands(files, bomb, "bomb.npz", "MAX_ARRAY_BYTES")


def test_a_huge_declared_shape_is_refused_not_allocated(files, tmp_path):
    """A header declaring terabytes is refused naming the file (before: "Unable to allocate ... TiB")."""
    data = tmp_path / "huge.npz"
    with zipfile.ZipFile(data, "w") as z:
        z.writestr("x.npy", npy_header((10 ** 12, 1, 8, 8), np.float64) + bytes(64))
    assert "huge.npz" in bounded(lambda: load_data(data, (1, 8, 8)))
    run_commands(files, data, "huge.npz", "damaged")
    # header and zip sizes agree on 4 GB of float64, 8 GB once read: the budget refuses it
    with zipfile.ZipFile(data, "w") as z:
        z.writestr("x.npy", npy_header((62_500_000, 1, 8, 1), np.float64) + bytes(64))
    declare_size(data, "x.npy", 4_000_000_000 + len(npy_header((62_500_000, 1, 8, 1), np.float64)))
    assert "MAX_ARRAY_BYTES" in bounded(lambda: load_data(data, (1, 8, 1)))


def _damaged(path, member):
    """Flip bytes in the middle of ``member``'s compressed data."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    mid = start + info.compress_size // 2
    raw[mid:mid + 8] = bytes(b ^ 0xA5 for b in raw[mid:mid + 8])
    path.write_bytes(bytes(raw))


def test_damaged_data_names_the_file_and_the_cause(files, tmp_path):
    """A CRC or deflate error (before: "Error -3 while decompressing data", no file named)."""
    data = tmp_path / "crc.npz"
    np.savez_compressed(data, x=np.random.default_rng(0).integers(0, 4, (20, 1, 8, 8)).astype(np.float32))
    _damaged(data, "x.npy")
    run_commands(files, data, "crc.npz", "'x'", "damaged")


def test_a_directory_as_data_says_so(files, tmp_path):
    (tmp_path / "d.npz").mkdir()
    run_commands(files, tmp_path / "d.npz", "d.npz", "is a directory")


def test_data_beyond_float32_is_refused(files, tmp_path):
    """1.7e308 is finite in float64 and inf in the float32 the ANN reading computes in (before: exit
    0, overflow warnings, NaN scores on --backend ann)."""
    x = np.random.default_rng(0).random((6, 1, 8, 8))
    x[2, 0, 3, 3] = 1.7e308
    np.savez(tmp_path / "big.npz", x=x)
    assert_refused(snnc("simulate", files / "net.snnc", "--data", tmp_path / "big.npz", "--backend", "ann"),
                   "big.npz", "float32", "sample 2")
    run_commands(files, tmp_path / "big.npz", "big.npz", "float32")


def test_compile_refuses_timesteps_no_engine_runs(files, unchanged, tmp_path):
    with unchanged(files), unchanged(tmp_path):
        for t in ("1000000000", "20000", "0"):
            assert_refused(snnc("compile", files / "model.pt", "--input-shape", "1,8,8", "--timesteps", t,
                                "-o", tmp_path / "o.snnc"), "--timesteps", "10000")


# ---- the artifact --------------------------------------------------------------------------------

def _members(path):
    with zipfile.ZipFile(path) as z:
        return {i.filename: (i.compress_type, z.read(i.filename)) for i in z.infolist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, (kind, data) in members.items():
            z.writestr(name, data, compress_type=kind)


def _bias_member(members):
    m = json.loads(members["manifest.json"][1])
    i = next(i for i, n in enumerate(m["nodes"]) if "bias" in n["arrays"] and n["kind"] == "Neuron")
    return f"arrays/{i}/bias.npy"


def test_an_artifact_member_declaring_a_billion_values_is_refused_uninflated(files, tmp_path):
    """The bias member declares 10^9 int32 (before: 11.7 GB in 44 s, then the refusal)."""
    members = _members(files / "net.snnc")
    name = _bias_member(members)
    head = npy_header((10 ** 9,), np.int32)
    members[name] = (zipfile.ZIP_DEFLATED, head + bytes(1 << 16))
    bad = tmp_path / "bomb.snnc"
    _write(bad, members)
    declare_size(bad, name, len(head) + 4 * 10 ** 9)
    msg = bounded(lambda: artifact.load(bad))
    assert "bomb.snnc" in msg and "(1000000000,) int32" in msg and "MAX_ARRAY_BYTES" in msg
    assert_refused(snnc("inspect", bad), "bomb.snnc", "MAX_ARRAY_BYTES")
    assert_refused(snnc("simulate", bad, "--data", files / "data.npz"), "bomb.snnc", "MAX_ARRAY_BYTES")


def test_a_huge_manifest_is_refused_from_its_declared_size(files, tmp_path):
    """A manifest padded with 40 MiB of whitespace (valid JSON) inflates past MAX_MANIFEST_BYTES
    (before: a 4.4 GB manifest ended in "error: MemoryError")."""
    members = _members(files / "net.snnc")
    members["manifest.json"] = (zipfile.ZIP_DEFLATED, members["manifest.json"][1] + b" " * (40 << 20))
    bad = tmp_path / "big.snnc"
    _write(bad, members)
    assert bad.stat().st_size < 1 << 20
    msg = bounded(lambda: artifact.load(bad), limit_mib=16)
    assert "big.snnc" in msg and "MAX_MANIFEST_BYTES" in msg
    assert_refused(snnc("inspect", bad), "big.snnc", "manifest.json", "MAX_MANIFEST_BYTES")


@pytest.mark.parametrize("where", ["manifest", "node"])
def test_an_unknown_manifest_key_is_refused(files, tmp_path, where):
    """Before: an unknown 442 MB key was carried along (2.5 GB)."""
    members = _members(files / "net.snnc")
    m = json.loads(members["manifest.json"][1])
    (m if where == "manifest" else m["nodes"][1])["payload"] = "x" * 1000
    members["manifest.json"] = (zipfile.ZIP_DEFLATED, json.dumps(m).encode())
    bad = tmp_path / "key.snnc"
    _write(bad, members)
    assert_refused(snnc("inspect", bad), "key.snnc", "unknown key", "payload")


def test_a_damaged_artifact_member_names_the_file_the_member_and_the_cause(files, tmp_path):
    """Before: "error: Error -3 while decompressing data: invalid ..." with no file named."""
    for member in ("manifest.json", None):
        bad = tmp_path / "crc.snnc"
        bad.write_bytes((files / "net.snnc").read_bytes())
        with zipfile.ZipFile(bad) as z:
            target = member or next(i.filename for i in z.infolist()
                                    if i.compress_type == zipfile.ZIP_DEFLATED and i.filename != "manifest.json")
        _damaged(bad, target)
        line = assert_refused(snnc("inspect", bad), "crc.snnc", "damaged", "do not inflate")
        assert (member or target.split("/")[-1][:-4]) in line


def test_a_reference_artifact_on_lava_says_which_target_it_was_compiled_for(files):
    """Before: "layer '2': bias 12598 is not a 13-bit mantissa shifted by a 3-bit exponent"."""
    from snn_compiler.backends.lava import check_graph
    from snn_compiler.targets import TargetError
    q = artifact.load(files / "net.snnc")
    assert q.graph["snnc"]["target"] == "reference"
    try:
        check_graph(q)
    except TargetError as e:
        assert "compiled for target 'reference'" in str(e) and "--target lava" in str(e) and "\n" not in str(e)
    else:
        pytest.skip("this net happens to fit Loihi's registers")
