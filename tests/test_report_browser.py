"""`snnc report`'s page as a reader sees it: headless Chromium renders the HTML the CLI wrote, a
screenshot must show a page (not blank, the figures' colours on it), and the DOM the browser built
must hold each section the report promises: accuracy against T with its intervals, energy against
T and the energy balance, the layer table with dead/saturated counts and the user's modules, the
figures (each PNG decoded by the browser), the spike raster, the inspect table; and nothing may
make the page scroll sideways.

Needs a Chromium (Debian: `apt-get install chromium`; SNNC_CHROMIUM names another binary). Without
one the test is skipped, except under CI (CI=true), where a skip would hide the check: it fails.
"""
import json
import os
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

WIDTH, HEIGHT = 1100, 7000
# As root and without a network: no sandbox, and none of the background connections Chromium makes
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}"]

# Runs in the page once everything (the base64 figures included) has loaded; writes what the test
# checks into <pre id="probe">, which --dump-dom then prints with the rest of the DOM.
PROBE = """<script>window.addEventListener("load", () => {
  const h2 = [...document.querySelectorAll("h2")].map(h => [h.textContent,
      h.nextElementSibling ? h.nextElementSibling.tagName : null]);
  const tables = [...document.querySelectorAll("table")].map(t => [...t.rows].map(r =>
      [...r.cells].map(c => c.textContent)));
  const p = document.createElement("pre");
  p.id = "probe";
  p.textContent = JSON.stringify({h2, tables, text: document.body.innerText,
      images: [...document.images].map(i => [i.naturalWidth, i.naturalHeight]),
      overflow: document.documentElement.scrollWidth - window.innerWidth});
  document.body.appendChild(p);
});</script></body>"""


def chromium():
    for name in (os.environ.get("SNNC_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI") == "true":
        pytest.fail("no Chromium on CI's machine: the report's browser check cannot run "
                    "(scripts/bootstrap.sh should install Debian's chromium)")
    pytest.skip("no headless Chromium on this machine (Debian: apt-get install chromium; or set SNNC_CHROMIUM)")


def _browser(exe, tmp_path, *args):
    r = subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"chromium exited {r.returncode}: {r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """report.html written by `snnc report` on a small CNN with a max pool (several IR layers of
    one user module), and the browser that reads it."""
    exe = chromium()
    from snn_compiler import artifact
    from snn_compiler.cli import main
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.frontend import from_module
    nn = torch.nn
    tmp = tmp_path_factory.mktemp("browser")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),
                          nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()
    x = np.random.default_rng(0).random((60, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    with warnings.catch_warnings():   # rate warnings of an untrained net are not what is checked here
        warnings.simplefilter("ignore")
        q = compile_model(from_module(model, (1, 8, 8)), CompileConfig(bits=8, calibration=x[:40], timesteps=16))
        artifact.save(q, tmp / "net.snnc")
        np.savez(tmp / "test.npz", x=x, y=y)
        assert main(["report", str(tmp / "net.snnc"), "--data", str(tmp / "test.npz"), "--samples", "40",
                     "--timesteps", "4,8,16", "-o", str(tmp / "report.html")]) == 0
    return exe, tmp


def test_the_screenshot_shows_the_page_and_its_figures(page, tmp_path):
    from PIL import Image
    exe, tmp = page
    shot = tmp_path / "report.png"
    _browser(exe, tmp_path, f"--screenshot={shot}", (tmp / "report.html").as_uri())
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (HEIGHT, WIDTH, 3)
    ink = (img.sum(axis=2) < 600).mean()          # anything not white-ish: text, lines, figures
    assert ink > 0.02, f"the screenshot is nearly blank ({ink:.2%} of it is not white)"
    # matplotlib's first two colours (the SNN curves, the bars): the figures were drawn into the page
    for rgb in ((31, 119, 180), (255, 127, 14)):
        near = (np.abs(img - np.array(rgb)).sum(axis=2) < 30).sum()
        assert near > 500, f"hardly any pixels of colour {rgb} ({near}): the figures did not render"
    # the top of the page is the title and the first figure, not empty space
    assert (img[:600].sum(axis=2) < 300).mean() > 0.005


def test_the_dom_has_every_section(page, tmp_path):
    exe, tmp = page
    probe = tmp_path / "probe.html"
    probe.write_text((tmp / "report.html").read_text().replace("</body>", PROBE, 1))
    dom = _browser(exe, tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, "the probe script did not run in the browser"
    import html
    got = json.loads(html.unescape(m.group(1)))
    heads = dict(got["h2"])
    for title in ("Accuracy against timesteps", "Synaptic operations and energy", "Spike raster",
                  "The compiled layers (snnc inspect)", "How these figures were made"):
        assert title in heads, f"no section {title!r} (sections: {list(heads)})"
    assert heads["Accuracy against timesteps"] == "IMG" and heads["Spike raster"] == "IMG"
    assert got["images"] and all(w > 100 and h > 100 for w, h in got["images"]), got["images"]
    assert len(got["images"]) == 5   # accuracy, rate errors, rate histograms, energy, raster (no core map)
    # accuracy against T, each with its interval; energy at every T
    acc = next(t for t in got["tables"] if t[0][0] == "T")
    assert [r[0] for r in acc] == ["T", "ANN (%)", "float SNN (%)", "integer SNN (%)", "SNN energy (nJ)"]
    assert acc[0][1:] == ["4", "8", "16"]
    assert all(re.fullmatch(r"\d+\.\d\d \(\d+\.\d-\d+\.\d\)", c) for r in acc[1:4] for c in r[1:]), acc
    assert all(float(c.replace(",", "")) > 0 for c in acc[4][1:])
    # the energy balance, in words
    assert re.search(r"Energy balance\. The SNN (costs more energy than|uses no more energy than) the fp32 ANN",
                     got["text"])
    # the layer table: dead and saturated counts, the user's modules beside the IR names
    layers = next(t for t in got["tables"] if t[0][:2] == ["layer", "from module"])
    head = layers[0]
    assert "dead neurons" in head and "saturated neurons" in head
    rows = {r[0]: r for r in layers[1:]}
    assert rows and all(r[head.index("dead neurons")].isdigit() for r in rows.values())
    assert any(r[1] == "2 (MaxPool2d)" for r in rows.values()), list(rows)
    assert "from module" in got["text"] and "2 (MaxPool2d)" in got["text"].split("(snnc inspect)")[-1]
    assert got["overflow"] <= 0, f"the page is {got['overflow']} px wider than a {WIDTH} px window"
