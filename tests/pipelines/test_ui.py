"""`posttrain ui` over a real tune run on tiny-random: served on 127.0.0.1, read over HTTP, and
rendered by a real headless Chromium (DOM after the page's script ran, and a screenshot).

Chromium comes from Debian's `chromium` package (`.ci/run` installs it). Without it the
browser tests skip with the reason, except under CI (`CI` or `POSTTRAIN_REQUIRE_BROWSER` set),
where they fail: CI always runs them.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_cli

BROWSERS = ("chromium", "chromium-browser")


@pytest.fixture(scope="module")
def runs_dir(tiny_spec, tmp_path_factory) -> Path:
    """A real three-episode tune run (rules agents, SEAL refine, QA) in its own folder."""
    cwd = tmp_path_factory.mktemp("ui")
    out = run_cli("tune", "--preset", "tune_test", "--name", "agentic", "--output-dir", "runs", cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return cwd


@pytest.fixture(scope="module")
def ui_url(runs_dir: Path):
    """`posttrain ui --port 0` in its own process; the URL is the first line it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "ui", "--runs", "runs", "--port", "0"],
        cwd=runs_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "NO_PROXY": "127.0.0.1,localhost"},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("posttrain ui: http://127.0.0.1:"), line + proc.stderr.read()
        yield line.split()[2]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_pages_list_the_run_and_its_decisions(ui_url):
    status, home = _get(ui_url)
    assert status == 200 and 'href="/runs/1"' in home and "agentic" in home and "tune" in home
    status, page = _get(ui_url + "runs/agentic")
    assert status == 200
    assert [f'data-episode="{i}"' in page for i in range(3)] == [True, True, True]
    for text in ("Decision timeline", 'data-role="judge"', 'data-role="reward-penalty"', 'data-role="tuner"'):
        assert text in page
    assert page.count('class="rationale"') == 3 and page.count('<svg class="chart"') >= 1
    assert "recomputed" not in page  # the run recorded its own rationale
    status, by_id = _get(ui_url + "runs/1")
    assert status == 200 and by_id == page
    status, api = _get(ui_url + "api/runs/agentic")
    assert status == 200 and '"rationale"' in api
    status, missing = _get(ui_url + "runs/nosuch")
    assert status == 404 and "no run named" in missing


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI") or os.environ.get("POSTTRAIN_REQUIRE_BROWSER"):
            pytest.fail("CI must run the browser test: install Debian's chromium package (.ci/run does)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs this test")
    return found


def _chromium(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run(
        [_browser(), *flags, *mode, url], capture_output=True, text=True, timeout=120, env=env
    )


def test_chromium_renders_the_timeline_after_the_script_ran(ui_url, tmp_path):
    out = _chromium(ui_url + "runs/agentic", tmp_path / "profile", "--dump-dom")
    dom = out.stdout
    assert out.returncode == 0 and "<html" in dom, out.stderr[-2000:]
    assert 'data-ready="' in dom and 'data-ready="0"' not in dom  # the script ran and counted the charts
    assert '<h1 id="run-name">agentic</h1>' in dom
    assert "Episode 2" in dom and "Trained:" in dom and "value from" in dom
    assert "tuner proposed lr" in dom and "reward-penalty set it to" in dom  # the override of the issue
    home = _chromium(ui_url, tmp_path / "profile2", "--dump-dom").stdout
    assert 'data-ready="0"' in home and 'href="/runs/1"' in home


def test_chromium_screenshot_is_a_real_picture_of_the_page(ui_url, tmp_path):
    from PIL import Image

    shot = tmp_path / "run.png"
    out = _chromium(
        ui_url + "runs/agentic", tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000"
    )
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (1280, 2000)
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables, chart colours: not a blank page
    top = max(count for count, _ in colors)
    assert top < 0.9 * 1280 * 2000  # no single colour fills the page
