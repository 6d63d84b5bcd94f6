"""The quickstart notebook as a UI, in a real browser: JupyterLab started here, headless Chromium
driven by Selenium runs every cell, changes the strategy dropdown of the Explore controls, clicks Run
and reads what the page shows (a playing <video>, plot images, no error output).

Needs Chromium and chromedriver (Debian: `apt-get install chromium chromium-driver`) and the
`selenium` package (the `dev` extra); skipped, naming what is missing, without them.
`VIDLAB_BROWSER_LOG=1` prints how long each step took; `VIDLAB_BROWSER_SCREENSHOT=page.png` saves the
page at the end.
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from vidlab.backends import ZOO_PATH
from vidlab.quickstart import lab_command

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_quickstart.ipynb"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
PARAMETERS = {"duration": 0.25}  # 4 frames at 16 fps: the notebook runs in seconds on a CPU
VIDEO_SRC = "data:video/mp4;base64,"


def missing() -> list[str]:
    out = [] if CHROMIUM else ["Chromium (apt-get install chromium)"]
    out += [] if CHROMEDRIVER else ["chromedriver (apt-get install chromium-driver)"]
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("the selenium package (pip install -e '.[dev]')")
    if not (ZOO_PATH / "controlnet").exists():
        out.append("the exported zoo")
    return out


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(missing()), reason=f"browser test needs {', '.join(missing())}")]


def log(step: str, t0: float) -> None:
    if os.environ.get("VIDLAB_BROWSER_LOG"):
        print(f"[browser] {step}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- fixtures: a copy of the notebook, JupyterLab, Chromium ------------------------------------------
@pytest.fixture
def notebook_dir(tmp_path):
    """The quickstart notebook with short parameters injected after its parameters cell (as papermill does)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    lines = [f"{name} = {value!r}" for name, value in {**PARAMETERS, "out_dir": str(tmp_path / "out")}.items()]
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join(["# injected by the browser test", *lines]),
                                                      metadata={"tags": ["injected-parameters"]}))
    root = tmp_path / "lab"
    root.mkdir()
    nbformat.write(nb, root / NOTEBOOK.name)
    return root


@pytest.fixture
def lab(notebook_dir, tmp_path):
    """JupyterLab started as the quickstart says, on a free port with a token, serving notebook_dir; its
    settings and workspaces kept in tmp."""
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    threads = os.environ.get("VIDLAB_TEST_THREADS", "2")
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    # the command the quickstart prints (vidlab.quickstart.lab_command), on a free port with a token
    command = [*lab_command(notebook_dir / NOTEBOOK.name), "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_dir}"]
    with open(tmp_path / "lab.log", "w") as lab_log:
        server = subprocess.Popen(command, env=env, stdout=lab_log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


# ---- reading the page ---------------------------------------------------------------------------------
def wait_for(driver, condition, seconds: float, what: str):
    """Poll condition until it is truthy. An element that the page replaced between finding it and reading it
    (a widget output redrawn mid-read) makes that poll count as not yet, not as a failure."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.5,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition(d))
    except TimeoutException:
        pytest.fail(f"timed out after {seconds} s waiting for {what}; page errors:\n{error_texts(driver)}")


def error_texts(driver) -> list[str]:
    """The text of every error or stderr output on the page (a traceback, a warning)."""
    from selenium.webdriver.common.by import By

    selector = ('[data-mime-type="application/vnd.jupyter.stderr"], '
                '[data-mime-type="application/vnd.jupyter.error"]')
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def prompts(driver) -> list[str]:
    """The execution prompt of every code cell: '[3]:', '[*]:' while running, '[ ]:' before."""
    from selenium.webdriver.common.by import By

    return [p.text for p in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")]


def video_sources(root) -> list[str]:
    """The source of every <video> under root (the element's own src or its <source> children's), read in one
    script call, so a video that the page replaces while it is read cannot leave a stale reference behind."""
    return root.parent.execute_script(
        "return Array.from(arguments[0].querySelectorAll('video')).flatMap(v => "
        "[v.getAttribute('src') || '', ...Array.from(v.querySelectorAll('source'), s => s.getAttribute('src') || '')])"
        ".filter(s => s);", root)


def plot_images(root) -> list[str]:
    """The source of every drawn PNG under root wider than 50 px (a plot, not an icon), read in one script call
    for the same reason as video_sources."""
    return root.parent.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.jp-RenderedImage img'))"
        ".filter(i => (i.getAttribute('src') || '').startsWith('data:image/png') && i.clientWidth > 50)"
        ".map(i => i.getAttribute('src'));", root)


# ---- the test -----------------------------------------------------------------------------------------
def test_quickstart_notebook_runs_and_its_controls_rerun_it_in_chromium(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, token = lab
    t0 = time.perf_counter()
    browser.get(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
    wait_for(browser, lambda d: len(prompts(d)) > 5 and d.find_elements(
        By.CSS_SELECTOR, '.jp-Notebook-ExecutionIndicator[data-status="idle"]'), 120, "the notebook and its kernel")
    log("notebook open, kernel idle", t0)

    # 1. run every cell from the Run menu
    menu = next(m for m in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text == "Run")
    menu.click()
    wait_for(browser, lambda d: next((i for i in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
                                      if i.text.startswith("Run All Cells")), None), 10,
             "the Run All Cells menu item").click()
    wait_for(browser, lambda d: error_texts(d) or all(p.strip("[]: ").isdigit() for p in prompts(d)), 600,
             "every cell to run")
    log("all cells run", t0)
    assert error_texts(browser) == []
    notebook = browser.find_element(By.CSS_SELECTOR, ".jp-Notebook")
    headless_videos = video_sources(notebook)
    assert len(headless_videos) == 1 and headless_videos[0].startswith(VIDEO_SRC)
    assert len(headless_videos[0]) > len(VIDEO_SRC) + 1000  # an MP4, not an empty URI
    assert len(plot_images(notebook)) >= 2  # the frame strip and the frame-similarity plot

    # 2. the controls: shown, nothing run yet
    panel = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".jp-OutputArea .widget-vbox"), 30,
                     "the controls")
    output = panel.find_element(By.CSS_SELECTOR, ".widget-output")
    assert video_sources(output) == [] and plot_images(output) == []
    strategy = Select(panel.find_element(By.CSS_SELECTOR, ".widget-dropdown select"))
    assert strategy.first_selected_option.text == "frame_chain"
    button = next(b for b in panel.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Run")

    def run_with(strategy_name: str) -> str:
        before = video_sources(output)
        strategy.select_by_visible_text(strategy_name)
        button.click()
        wait_for(browser, lambda d: "failed" in panel.text or video_sources(output) not in ([], before)
                 and plot_images(output) and "done" in panel.text, 300, f"the output of a run with {strategy_name}")
        log(f"controls run with {strategy_name}", t0)
        assert error_texts(browser) == []
        [source] = video_sources(output)
        return source

    # 3. a changed dropdown and a click: a new video and its plot in the panel; again: another video
    first = run_with("native")
    assert first.startswith(VIDEO_SRC) and len(first) > len(VIDEO_SRC) + 1000
    assert first not in headless_videos  # made with the dropdown's strategy, not the notebook's
    second = run_with("segment_chain")
    assert second.startswith(VIDEO_SRC) and second != first
    assert len(plot_images(output)) == 1
    if os.environ.get("VIDLAB_BROWSER_SCREENSHOT"):
        browser.save_screenshot(os.environ["VIDLAB_BROWSER_SCREENSHOT"])
