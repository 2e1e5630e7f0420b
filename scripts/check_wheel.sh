#!/usr/bin/env bash
# CI check of the packaging: build a wheel of the checkout, install it (not editable) into a fresh
# venv, then, from a folder outside the checkout, run the installed `snnc` on a small net:
# compile (TorchScript, and the torch-free Python API), simulate on the reference backend, inspect,
# map onto a shipped profile. Also checks the wheel holds every .py of snn_compiler/ and backends/
# (so a package without __init__.py is caught) and the shipped profiles.
#
#   bash scripts/check_wheel.sh          # ~1-2 min on 2 cores with the local torch wheel
#
# Environment:
#   SNNC_WHEEL_BUILD_PYTHON  interpreter that builds the wheel (default .venv/bin/python; needs
#                            setuptools>=64, no build isolation so nothing is downloaded)
#   SNNC_PYTHON              interpreter that creates the fresh venv (default: that of .venv)
#   SNNC_WHEEL_TORCH=0       do not install torch==2.13.0 into the fresh venv (the `torch` extra):
#                            for a machine without a local torch CPU wheel. The TorchScript model is
#                            then made and compiled with .venv (the build interpreter's environment);
#                            the fresh venv compiles only through the torch-free API, simulates, inspects
#   SNNC_WHEEL_KEEP=1        keep the temporary folder (printed) instead of deleting it
# Exit status 0 when everything passed; otherwise 1 and one line naming the failed step, followed
# by the tail of that step's output.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_py="${SNNC_WHEEL_BUILD_PYTHON:-$root/.venv/bin/python}"
with_torch="${SNNC_WHEEL_TORCH:-1}"

die() { echo "check_wheel: FAIL: $*" >&2; exit 1; }
[ -x "$build_py" ] || die "no $build_py; run 'bash scripts/bootstrap.sh' or set SNNC_WHEEL_BUILD_PYTHON"
venv_base="${SNNC_PYTHON:-$build_py}"
git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$root is not a git checkout (the file list comes from git)"
"$build_py" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 64)' 2>/dev/null \
  || die "$build_py has no setuptools>=64 to build the wheel ('$build_py -m pip install \"setuptools>=64\"')"

if [ "$with_torch" != 1 ]; then
  "$build_py" -c 'import torch' 2>/dev/null || die "SNNC_WHEEL_TORCH=0 compiles with $build_py, which has no torch"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/snnc-wheel.XXXXXX")"
cleanup() {
  if [ "${SNNC_WHEEL_KEEP:-0}" = "1" ]; then echo "check_wheel: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
mkdir -p "$tmp/src" "$tmp/dist" "$tmp/work" "$tmp/log"
venv="$tmp/venv"
t_start=$EPOCHREALTIME
timings=()

# step NAME CMD...: runs CMD with its output in a log; on failure names the step and shows the log's tail.
step() {
  local name=$1 t0=$EPOCHREALTIME rc; shift
  # a subshell outside any `||` context, so `set -e` holds inside the step's functions too
  set +e
  (set -e; "$@") >"$tmp/log/$name.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    echo "check_wheel: FAIL: step '$name' exited $rc; last lines of its output:" >&2
    grep -v "is ignored: it is neither a file nor a directory" "$tmp/log/$name.log" | tail -n 40 | sed 's/^/  | /' >&2
    exit 1
  fi
  timings+=("$name $(elapsed "$t0")s")
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# In the fresh venv, from outside the checkout, with nothing of the caller's Python path. Bytecode
# is written (into the throwaway venv): with PYTHONDONTWRITEBYTECODE every command would compile
# torch's sources again (installed with --no-compile, below).
in_venv() {
  (cd "$tmp/work" && env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP -u PYTHONUSERBASE -u PYTHONDONTWRITEBYTECODE "$@")
}

# 1. Build from a copy of the files git knows (tracked, plus untracked ones that are not ignored):
#    building in the checkout would write build/ and *.egg-info into a tree others work in, and a
#    stale build/lib could put a file into the wheel that the tree no longer provides.
copy_tree() {
  git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && while IFS= read -r -d '' f; do
         if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
       done) >"$tmp/files0"
  tr '\0' '\n' <"$tmp/files0" >"$tmp/files"
  tar -C "$root" --null -T "$tmp/files0" -cf - | tar -C "$tmp/src" -xf -
}
step copy copy_tree
step build bash -c 'cd "$1" && "$2" -m pip wheel --no-deps --no-build-isolation -w "$3" .' _ "$tmp/src" "$build_py" "$tmp/dist"
shopt -s nullglob
wheels=("$tmp/dist"/*.whl)
[ "${#wheels[@]}" = 1 ] || die "expected one wheel in the build output, found ${#wheels[@]}"
whl="${wheels[0]}"

# 2. The wheel's file list against the checkout's.
check_contents() {
  "$build_py" - "$whl" "$tmp/files" <<'EOF'
import sys, zipfile
whl, listing = sys.argv[1], sys.argv[2]
names = set(zipfile.ZipFile(whl).namelist())
files = [l for l in open(listing).read().splitlines() if l]
problems = []
expected = set()
for f in files:
    if f.endswith(".py") and f.startswith("snn_compiler/"):
        expected.add(f)
    elif f.endswith(".py") and f.startswith("backends/"):
        expected.add("snn_compiler/" + f)           # backends/ installs as snn_compiler.backends
profiles = {"snn_compiler/data/profiles/" + f.split("/", 1)[1] for f in files
            if f.startswith("configs/") and f.endswith(".yaml") and f.count("/") == 1}
if not profiles:
    problems.append("the checkout has no configs/*.yaml profiles to compare against")
for f in sorted((expected | profiles) - names):
    problems.append(f"missing from the wheel: {f}")
if not any(n.startswith("snn_compiler/data/profiles/") and n.endswith(".yaml") for n in names):
    problems.append("the wheel has no snn_compiler/data/profiles/*.yaml")
top = {n.split("/", 1)[0] for n in names}
dist_info = {t for t in top if t.endswith(".dist-info")}
for t in sorted(top - {"snn_compiler"} - dist_info):
    problems.append(f"unexpected top-level entry in the wheel: {t} (only snn_compiler/ should be installed)")
if len(dist_info) != 1:
    problems.append(f"expected one .dist-info, found {sorted(dist_info)}")
else:
    ep = zipfile.ZipFile(whl).read(dist_info.pop() + "/entry_points.txt").decode()
    if "snnc = snn_compiler.cli:main" not in ep:
        problems.append("entry_points.txt has no console script 'snnc = snn_compiler.cli:main'")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{len(names)} files; all {len(expected)} .py files and {len(profiles)} profiles present")
EOF
}
step contents check_contents

# 3. A fresh venv with the wheel (not editable) and its dependencies; torch through the `torch` extra.
step venv "$venv_base" -m venv "$venv"
spec="$whl"
[ "$with_torch" = 1 ] && spec="$whl[torch]"
# --no-compile: byte-compiling all of torch doubles the install time; the package's own files are
# byte-compiled (a syntax error in any of them fails) in the imports step.
step install "$venv/bin/python" -m pip install --no-compile --prefer-binary "$spec"
[ -x "$venv/bin/snnc" ] || die "the wheel installed no 'snnc' console script"

# 4. The installed copy is what gets imported.
check_imports() {
  in_venv "$venv/bin/python" - "$venv" "$root" <<'EOF'
import importlib, importlib.util, os, sys
venv, root = (os.path.realpath(p) for p in sys.argv[1:3])
inside = lambda p, d: os.path.commonpath([os.path.realpath(p), d]) == d
for p in sys.path:
    assert not (p and inside(p, root)), f"the checkout is on sys.path: {p}"
mods = ["snn_compiler", "snn_compiler.cli", "snn_compiler.sim.fast", "snn_compiler.backends",
        "snn_compiler.backends.lava.target", "snn_compiler.backends.truenorth", "snn_compiler.mapping"]
for name in mods:
    m = importlib.import_module(name)
    assert inside(m.__file__, venv) and not inside(m.__file__, root), f"{name} imported from {m.__file__}, not the fresh venv"
assert importlib.util.find_spec("backends") is None, "a bare 'backends' module is importable"
from importlib.metadata import distribution
d = distribution("snnc")
import json
direct = json.loads(d.read_text("direct_url.json") or "{}")
assert not direct.get("dir_info", {}).get("editable"), f"snnc is installed editable: {direct}"
assert inside(d.locate_file(""), venv), f"snnc's metadata is outside the fresh venv: {d.locate_file('')}"
from snn_compiler.backends import BACKENDS, TARGETS
assert {"reference", "float", "ann", "lava"} <= set(BACKENDS) and {"reference", "lava", "truenorth"} <= set(TARGETS)
from snn_compiler.mapping.profile import available_profiles, resolve_profile_path
assert {"loihi1", "loihi2", "truenorth"} <= set(available_profiles()), available_profiles()
p = resolve_profile_path("loihi2")
assert inside(p, venv), f"profile loihi2 resolved to {p}, not the installed package data"
print("imports from", os.path.dirname(importlib.import_module("snn_compiler").__file__))
EOF
  in_venv "$venv/bin/python" -c 'import compileall, os, sys, snn_compiler
sys.exit(not compileall.compile_dir(os.path.dirname(snn_compiler.__file__), quiet=1))'
}
step imports check_imports

# 5. Compile without torch through the Python API (the torch-free core), in the fresh venv.
api_compile() {
  in_venv "$venv/bin/python" - <<'EOF'
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
import numpy as np
from snn_compiler import artifact
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, ops as O
rng = np.random.default_rng(0)
g = new_graph()
add_op(g, "in", O.Input((1, 6, 6)))
add_op(g, "c", O.Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2)), ["in"])
add_op(g, "r", O.IF(), ["c"])
add_op(g, "p", O.AvgPool2d((2, 2), (2, 2)), ["r"])
add_op(g, "f", O.Flatten(), ["p"])
add_op(g, "d", O.Dense(rng.normal(size=(3, 8))), ["f"])
add_op(g, "out", O.Output(), ["d"])
q = compile_model(g, CompileConfig(calibration=rng.random((10, 1, 6, 6))))
artifact.save(q, "api.snnc")
np.savez("api_data.npz", x=rng.random((8, 1, 6, 6)).astype(np.float32))
print("compiled without torch -> api.snnc")
EOF
  in_venv "$venv/bin/snnc" simulate api.snnc --data api_data.npz --backend reference --timesteps 16 --no-progress
  in_venv "$venv/bin/snnc" inspect api.snnc
}
step api-compile api_compile

# 6. The CLI end to end on a small CNN (the layers of the demo's digits CNN: Conv, BatchNorm, ReLU,
#    AvgPool, Linear), trained for a few seconds on seeded synthetic 8x8 data (10 noisy binary
#    prototypes) and saved as TorchScript. Nothing is read from outside the checkout.
#    Without torch in the fresh venv (SNNC_WHEEL_TORCH=0) the model is made and compiled by the
#    build interpreter (.venv, which has torch) running the wheel's code: a --target copy of the
#    wheel on PYTHONPATH, ahead of .venv's own (editable) snnc.
if [ "$with_torch" = 1 ]; then
  torch_py="$venv/bin/python"; compiler=("$venv/bin/snnc")
else
  step wheel-copy "$build_py" -m pip install --no-deps --no-compile --target "$tmp/wheelcode" "$whl"
  torch_py="$build_py"
  compiler=(env PYTHONPATH="$tmp/wheelcode" "$build_py" -c 'import sys, snn_compiler.cli as c
assert c.__file__.startswith(sys.argv.pop(1)), f"compiling with {c.__file__}, not the wheel'"'"'s code"
sys.exit(c.main())' "$tmp/wheelcode/")
fi
make_model() {
  in_venv "$torch_py" - <<'EOF2'
import numpy as np, torch
from torch import nn
torch.manual_seed(0)
torch.set_num_threads(1)
rng = np.random.default_rng(0)
protos = (rng.random((10, 1, 8, 8)) < 0.4).astype(np.float32)
def draw(n):
    y = rng.integers(0, 10, n)
    return np.clip(0.7 * protos[y] + 0.5 * rng.random((n, 1, 8, 8)), 0, 1).astype(np.float32), y
x_tr, y_tr = draw(500)
x_te, y_te = draw(100)
model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
    nn.Flatten(), nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
for epoch in range(10):
    for idx in torch.randperm(len(xt), generator=torch.Generator().manual_seed(epoch)).split(50):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        opt.step()
model.eval()
with torch.no_grad():
    acc = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
assert acc >= 0.95, f"the ANN reached only {acc:.1%} on the synthetic data; the check's model is broken"
np.savez("calib.npz", x=x_tr[:200])
np.savez("test.npz", x=x_te, y=y_te)
torch.jit.save(torch.jit.script(model), "model.pt")
print(f"model.pt (ANN test accuracy {acc:.1%}), calib.npz, test.npz")
EOF2
}
step model make_model
step compile in_venv "${compiler[@]}" compile model.pt --input-shape 1,8,8 --calibration calib.npz --bits 8 --timesteps 64 -o net.snnc
simulate() {
  in_venv "$venv/bin/snnc" simulate net.snnc --data test.npz --backend reference --timesteps 64 --no-progress \
    --output ref.npz | tee "$tmp/simulate.out"
  grep -q "accuracy" "$tmp/simulate.out" || { echo "simulate printed no accuracy"; return 1; }
  in_venv "$venv/bin/python" -c '
import numpy as np
r, d = np.load("ref.npz"), np.load("test.npz")
assert r["scores"].shape == (100, 10) and r["predictions"].shape == (100,), (r["scores"].shape, r["predictions"].shape)
acc = float((r["predictions"] == d["y"]).mean())
assert acc >= 0.9, f"the int SNN (T=64) is right on only {acc:.1%} of the test samples (the ANN: >= 95%)"
print(f"int SNN (T=64) accuracy {acc:.1%}")'
}
step simulate simulate
inspect_net() {
  in_venv "$venv/bin/snnc" inspect net.snnc | tee "$tmp/inspect.out"
  grep -q "Conv2d" "$tmp/inspect.out" || { echo "inspect shows no Conv2d layer"; return 1; }
  in_venv "$venv/bin/snnc" inspect net.snnc --json | in_venv "$venv/bin/python" -c 'import json, sys; assert json.load(sys.stdin)["layer_info"]'
}
step inspect inspect_net
# A shipped profile by name: only the package data can provide it in an installed copy.
mapped() {
  in_venv "${compiler[@]}" compile model.pt --input-shape 1,8,8 --calibration calib.npz --profile loihi2 -o mapped.snnc
  in_venv "$venv/bin/snnc" inspect mapped.snnc | tee "$tmp/mapped.out"
  in_venv "$venv/bin/snnc" inspect mapped.snnc --json | in_venv "$venv/bin/python" -c '
import json, sys
info = json.load(sys.stdin)
assert info.get("profile") == "loihi2" and info.get("cores") and info.get("valid"), "inspect --json shows no valid loihi2 core map"
print(len(info["cores"]), "loihi2 cores")' 
}
step profile mapped

total=$(elapsed "$t_start")
summary="$(IFS=,; echo "${timings[*]}" | sed 's/,/, /g')"
echo "check_wheel: OK $(basename "$whl") built, installed (not editable$([ "$with_torch" = 1 ] && echo ', with torch' || echo ', no torch')) into a fresh venv and run from outside the checkout in ${total}s ($summary)"
