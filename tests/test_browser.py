"""JupyterLab in headless Chromium: a notebook showing an ftlib widget runs, the widget renders, and
moving its slider redraws the figure. Needs Debian's ``chromium`` (``make test`` installs it) driven
by playwright; the browser is never downloaded."""
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import nbformat
import pytest

# verified on this kind of machine: headless Chromium under root in a container, no network
pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDGET_CELL = """from ftlib import widgets
from ftlib.train import TrainConfig

panel = widgets.SchedulePreviewer(TrainConfig(steps=200, warmup_steps=20, lr=1e-3))
panel"""


def _chromium() -> str:
    """Path of the Chromium binary; the test fails (never skips) without it or without playwright."""
    path = os.environ.get("FTLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium binary: install Debian's with `apt-get install -y chromium` (make test does), "
                    "or point FTLIB_CHROMIUM at one")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]' (never `playwright install`: Chromium comes from apt)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, token: str, path: str):
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _wait(condition, timeout: float, what: str, log=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    tail = f"\n--- jupyter lab log ---\n{log.read_text()[-3000:]}" if log else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


@contextlib.contextmanager
def _jupyter_lab(tmp_path):
    """JupyterLab serving ``tmp_path/notebooks`` on a free localhost port; yields (base url, token, folder, log)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: "started" in _api(base, token, "/api/status"), 120, "the Jupyter server", log)
        yield base, token, folder, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_widget_renders_and_redraws_in_jupyterlab(tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(WIDGET_CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with _jupyter_lab(tmp_path) as (base, token, folder, log), sync_playwright() as playwright:
        nbformat.write(nb, str(folder / "widget.ipynb"))
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/widget.ipynb?token={token}")
        # JupyterLab says "Idle" before the kernel exists: wait for a kernel that is idle and connected
        _wait(lambda: any(k["execution_state"] == "idle" and k["connections"] >= 1
                          for k in _api(base, token, "/api/kernels")), 120, "an idle, connected kernel", log)
        page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first.click()
        page.keyboard.press("Shift+Enter")

        status, figure = page.locator(".ftlib-status"), page.locator("img.ftlib-figure")
        figure.wait_for(state="visible", timeout=120_000)
        _wait(lambda: "peak lr" in status.inner_text() and figure.get_attribute("src"), 60, "the first drawing", log)
        before = status.inner_text(), figure.get_attribute("src")
        assert "peak lr 0.001 at step 19" in before[0]
        assert figure.evaluate("img => img.naturalWidth") > 100, "the figure is a real image"

        page.locator(".widget-slider .noUi-handle").first.focus()  # the learning-rate slider
        page.keyboard.press("ArrowRight")
        # the label can update before the figure redraws: wait for both
        _wait(lambda: status.inner_text() != before[0] and figure.get_attribute("src") != before[1], 60,
              "the status line and the figure to change after the slider moved", log)
        peak = float(re.search(r"peak lr ([0-9.e-]+)", status.inner_text()).group(1))
        assert peak > 0.001, status.inner_text()
        browser.close()
