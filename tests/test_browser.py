"""What a user sees, in a real browser: the report and the MLflow UI's runs table of a small store, rendered by
headless Chromium at 1280 px. Screenshots are kept as test artifacts (the folder is printed); the assertions read the
rendered DOM (`--dump-dom`).

Without Chromium these tests skip with the reason; under CI (which installs Debian's `chromium`) they fail instead.
The printed URLs are checked against the server's REST API whether or not a browser is present.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.report.report_job import report_job
from sustainable_ipa.tracking.links import (EXPERIMENT_KIND, KEY_FIGURES, KEY_FIGURES_VIEW, SHARED_VIEW_TAG,
                                            ids_from_url)
from mlflow_server import MlflowServer
from test_report import CONFIGS, log_synthetic, synthetic_store

pytestmark = pytest.mark.slow
WIDTH_PX, HEIGHT_PX = 1280, 900
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts")) / "browser"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path; asked for before the store and the server, so that a skip costs nothing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("no Chromium on a CI machine: .ci/run installs Debian's `chromium`; browser tests must not skip")
    pytest.skip("no Chromium here (apt-get install chromium): the report and the MLflow UI are not checked in a browser")


def render(chromium: str, url: str, name: str, tmp_path: Path, budget_ms: int) -> str:
    """The DOM of `url` after `budget_ms` of virtual time, in a 1280 × 900 window; its screenshot saved as
    ARTIFACTS/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars=false",
            f"--user-data-dir={tmp_path / ('profile-' + name)}", f"--window-size={WIDTH_PX},{HEIGHT_PX}",
            f"--virtual-time-budget={budget_ms}", f"--screenshot={shot}", "--dump-dom", url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=180)
    print(f"screenshot: {shot}")
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(config, URL) of `mlflow server` on a free loopback port, serving the small store of tests/test_report.py (six
    configurations, three repetitions each); stopped after the module's tests."""
    tmp_path = tmp_path_factory.mktemp("browser-store")
    cfg, _, _ = synthetic_store(tmp_path)  # the database exists before the server opens it
    log_synthetic(tmp_path)
    server = MlflowServer(cfg.tracking.uri, tmp_path / "served", tmp_path / "server.log").start()
    try:
        yield cfg, server.url
    finally:
        server.kill()


@pytest.fixture(scope="module")
def reported(served):
    """The report job run against the tracking server: its folder and the lines it printed."""
    cfg, server = served
    cfg.tracking.uri = server
    out = io.StringIO()
    folder = report_job(cfg, Console(file=out, width=100))
    return folder, out.getvalue()


def printed(output: str, label: str) -> str:
    [url] = re.findall(rf"^{re.escape(label)}: (\S+)$", output, flags=re.M)
    return url


def rest(base: str, path: str, **query) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def test_the_printed_urls_resolve_on_the_server(reported, served):
    """The run page's URL names a run the UI's REST API finds in the URL's experiment; the runs table's URL names
    the experiment, tagged as model training and holding the saved view the URL opens."""
    (_, output), (_, server) = reported, served
    run_page, runs_table = printed(output, "this run"), printed(output, "runs table (key figures)")
    assert run_page.startswith(f"{server}/#/experiments/") and runs_table.startswith(f"{server}/#/experiments/")
    experiment_id, run_id = ids_from_url(run_page)
    run = rest(server, "runs/get", run_id=run_id)["run"]
    assert run["info"]["experiment_id"] == experiment_id and run["info"]["run_name"].startswith("report-")
    table_experiment, no_run = ids_from_url(runs_table)
    assert (table_experiment, no_run) == (experiment_id, None)
    tags = {t["key"]: t["value"] for t in rest(server, "experiments/get", experiment_id=experiment_id)
            ["experiment"]["tags"]}
    assert all(tags[k] == v for k, v in EXPERIMENT_KIND.items())
    assert f"viewStateShareKey={KEY_FIGURES_VIEW}" in runs_table and SHARED_VIEW_TAG + KEY_FIGURES_VIEW in tags


def test_the_mlflow_ui_opens_the_runs_table_with_the_key_figures(chromium, reported, tmp_path):
    _, output = reported
    dom = render(chromium, printed(output, "runs table (key figures)"), "mlflow-ui-runs", tmp_path, 8000)
    assert 'role="grid"' in dom or "ag-root" in dom, "no runs table rendered"
    for name in CONFIGS:  # the job runs, by name (their repetitions are nested under them)
        assert re.search(rf">\s*{name}\s*<", dom), f"run {name} not listed"
    # the model-training view (its side bar lists Runs and Models), not the GenAI one (Traces overview, Judges)
    assert re.search(r">\s*Models\s*<", dom) and not re.search(r">\s*Judges\s*<", dom)
    # the saved view "Key figures" is open: its columns, and only those, are the table's metric columns (the table
    # renders the columns in sight, so at 1280 px the first few), the job runs' means in their cells
    assert re.search(r">\s*Key figures\s*<", dom), "the saved view is not open"
    headers = set(re.findall(r'role="columnheader"[^>]*col-id="metrics\.`([^`]+)`"', dom))
    figures = {f"{m}{suffix}" for m in KEY_FIGURES for suffix in ("", "_mean")}
    means = {h for h in headers if h.endswith("_mean")}
    assert headers <= figures and f"{KEY_FIGURES[0]}_mean" in means and len(means) >= 2, sorted(headers)
    for column in means:
        cells = re.findall(rf'role="gridcell"[^>]*col-id="metrics\.`{column}`".*?class="ag-cell-value">([^<]*)<', dom)
        assert sum(re.fullmatch(r"[0-9.]+", c.strip()) is not None for c in cells) >= len(CONFIGS), (column, cells)


WIDTH_CHECK = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const limit = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll("body *")]
    .map(e => [e, e.getBoundingClientRect()])  // wholly left of the page (plotly's text-measuring svg): unreachable
    .filter(([e, r]) => r.right > limit + 1 || (r.left < -1 && r.right > 0)).map(([e]) => e)
    .map(e => e.tagName + (e.className && e.className.baseVal === undefined ? "." + e.className : ""));
  const out = document.createElement("pre");
  out.id = "width-check";
  out.textContent = JSON.stringify({viewport: limit, page: document.documentElement.scrollWidth, wide: wide,
                                    plots: document.querySelectorAll(".plotly-graph-div .main-svg").length});
  document.body.appendChild(out);
}, 500));
</script>"""


def test_the_report_fits_1280_px_and_names_every_configuration(chromium, reported, tmp_path):
    folder, _ = reported
    page = (folder / "report.html").read_text()
    checked = tmp_path / "report-checked.html"  # a copy with the measuring script: the report itself stays as made
    checked.write_text(page.replace("</body>", WIDTH_CHECK + "</body>"))
    dom = render(chromium, checked.as_uri(), "report", tmp_path, 10000)
    found = re.search(r'<pre id="width-check">(.*?)</pre>', dom, flags=re.S)
    assert found, "the page's script did not run"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["viewport"] <= WIDTH_PX and check["page"] <= check["viewport"], check  # no horizontal scrollbar
    assert check["wide"] == [], f"elements wider than the viewport: {check['wide'][:10]}"
    assert check["plots"] >= 7, "the interactive figures did not render"
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script[^>]*>.*?</script>", " ", dom, flags=re.S))
    for name in CONFIGS:
        assert re.search(rf"\b{name}\b", text), f"the report does not name configuration {name}"
