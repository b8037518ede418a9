"""Drive the course's notebooks in a real browser: JupyterLab on 127.0.0.1, headless Chromium through Playwright.

Used by tests/test_browser.py. JupyterLab serves a temporary copy of nbs/ (its autosave never touches the
repository); every screenshot lands in test-artifacts/ so a failing run can be looked at.
"""
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT/"test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def chromium_path():
    "A Chromium to drive: $SFT_COURSE_CHROMIUM, /usr/bin/chromium, or None for Playwright's own download."
    for p in (os.environ.get("SFT_COURSE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if p and Path(p).exists(): return p
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


class Lab:
    "A JupyterLab server on 127.0.0.1 serving a copy of nbs/, stopped with `close()`."
    def __init__(self, workdir:Path, token="sft-course-test"):
        self.dir, self.token, self.port = Path(workdir), token, free_port()
        shutil.copytree(ROOT/"nbs", self.dir, dirs_exist_ok=True)
        settings = self.dir/".lab-settings"/"@jupyterlab"/"apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings/"notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
        docmanager = self.dir/".lab-settings"/"@jupyterlab"/"docmanager-extension"
        docmanager.mkdir(parents=True, exist_ok=True)
        (docmanager/"plugin.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
        tracker = self.dir/".lab-settings"/"@jupyterlab"/"notebook-extension"
        tracker.mkdir(parents=True, exist_ok=True)  # keep every cell in the page: no virtual scrolling
        (tracker/"tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
        (self.dir/".lab-workspaces").mkdir(exist_ok=True)
        env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(self.dir/".lab-settings"), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.log = open(self.dir/"jupyterlab.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={self.dir}", "--allow-root",
             "--ServerApp.open_browser=False", f"--LabApp.workspaces_dir={self.dir/'.lab-workspaces'}"], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None: raise RuntimeError(f"JupyterLab exited: see {self.dir/'jupyterlab.log'}")
            try:
                urllib.request.urlopen(f"{self.base}/api/status?token={token}", timeout=2); return
            except OSError: time.sleep(0.5)
        raise TimeoutError("JupyterLab did not start within 120 s")

    @property
    def base(self): return f"http://127.0.0.1:{self.port}"

    def url(self, notebook):
        "The notebook in a workspace of its own (reset), so tabs from earlier tests are not restored."
        return f"{self.base}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?reset&token={self.token}"

    def close(self):
        self.proc.terminate()
        try: self.proc.wait(20)
        except subprocess.TimeoutExpired: self.proc.kill()
        self.log.close()


def open_notebook(page, lab:Lab, notebook:str, timeout=180_000):
    "Open `notebook` in JupyterLab and wait until its kernel is idle."
    page.goto(lab.url(notebook))
    page.wait_for_selector(".jp-Notebook:visible", timeout=timeout)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
    deadline = time.time() + timeout/1000
    while time.time() < deadline: # the kernel starts on its own; accept the kernel dialog if JupyterLab still asks
        if select.count(): select.first.click()
        status = page.locator(".jp-Notebook-ExecutionIndicator:visible").first
        if status.count() and status.get_attribute("data-status") == "idle" and \
           "No Kernel" not in page.locator(".jp-KernelName:visible").first.inner_text(): return
        time.sleep(0.5)
    raise TimeoutError(f"the kernel of {notebook} did not become idle")


def run_all(page, timeout=600):
    "Run > Run All Cells, through the menu bar as a learner would, and wait until every cell has run."
    page.locator(".jp-Notebook:visible").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    deadline, quiet = time.time() + timeout, 0
    while time.time() < deadline:
        busy = page.locator(".jp-InputPrompt", has_text="[*]").count() or \
               page.locator(".jp-Notebook-ExecutionIndicator:visible").first.get_attribute("data-status") != "idle"
        quiet = 0 if busy else quiet + 1
        if quiet >= 4: break
        time.sleep(0.5)
    else: raise TimeoutError(f"the notebook was still running after {timeout} s")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Traceback")
    assert not errors.count(), errors.first.inner_text()[-2000:]


def run_notebook(page, lab:Lab, notebook:str, selector:str, timeout=300_000):
    "Open `notebook`, run all its cells, and return the first element matching `selector` once it is there."
    open_notebook(page, lab, notebook)
    run_all(page)
    el = page.locator(selector).first
    el.wait_for(timeout=timeout)
    el.scroll_into_view_if_needed()
    return el


def drag_slider(page, slider, fraction:float):
    "Drag the handle of an ipywidgets slider (`slider` locates its widget) to `fraction` of the track."
    slider.scroll_into_view_if_needed()
    track, handle = slider.locator(".noUi-target").first.bounding_box(), slider.locator(".noUi-handle").first.bounding_box()
    y = handle["y"] + handle["height"]/2
    page.mouse.move(handle["x"] + handle["width"]/2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction*track["width"], y, steps=12)
    page.mouse.up()


def shot(page_or_locator, name):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS/name
    page_or_locator.screenshot(path=str(path))
    return path
