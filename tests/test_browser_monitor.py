"""Chapter 5 in a real browser: the loss explorer run in JupyterLab, and trackio's own dashboard (no JupyterLab: trackio
serves its page) for a stand-in run logged with report_to="trackio", checked to stay on this machine.

Select these alone with `pytest -m browser`. Screenshots are saved in test-artifacts/; with SFT_COURSE_UPDATE_PICTURES=1
the dashboard's screenshot also replaces nbs/images/trackio_dashboard.png, the picture chapter 5 shows.
"""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

from browser import ROOT, drag_slider, run_notebook, shot
from sft_course.monitor import STATUSES
from test_browser import browser, lab, page  # noqa: F401 (the shared JupyterLab, Chromium and page fixtures)

pytestmark = pytest.mark.browser


def _src(img): return img.get_attribute("src") or ""


def _shows(page, el, text, timeout=60_000):
    "Wait until `el` shows `text` (a widget may clear its output before it draws the new one), and return its text."
    page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[el.element_handle(), text], timeout=timeout)
    return el.inner_text()


def test_loss_explorer_slider_run_and_guess(lab, page):
    "Chapter 5: the smoothing slider and another run redraw the plot and the diagnosis; guess first, then reveal."
    explorer = run_notebook(page, lab, "05_monitoring.ipynb", ".sft-loss-explorer")
    plot, diagnosis = explorer.locator(".sft-loss-plot").first, explorer.locator(".sft-diagnosis").first
    plot.wait_for(timeout=60_000)
    shot(explorer, "loss_explorer_before.png")
    img0, diag0 = _src(plot), diagnosis.inner_text()
    assert diag0.split(":")[0].replace(" ", "_") in STATUSES, diag0[:200]  # wherever the chapter's code cells left it

    drag_slider(page, explorer.locator(".widget-slider", has_text="smoothing").first, 0.95)
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[plot.element_handle(), img0], timeout=60_000)
    diag1 = _shows(page, diagnosis, "trend 0.9")
    assert "trend 0.9" in diag1, diag1[-300:]

    img1 = _src(plot)
    explorer.locator(".widget-dropdown", has_text="run").locator("select").first.select_option(label="simulated diverging")
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[plot.element_handle(), img1], timeout=60_000)
    page.wait_for_function("el => el.innerText.startsWith('diverging')", arg=diagnosis.element_handle(), timeout=60_000)
    shot(explorer, "loss_explorer_diverging.png")

    explorer.get_by_text("guess first").click()
    assert "your turn" in _shows(page, diagnosis, "your turn")
    explorer.locator(".widget-dropdown", has_text="your guess").locator("select").first.select_option("diverging")
    explorer.get_by_role("button", name="Reveal").click()
    text = _shows(page, diagnosis, "You guessed")
    assert "You guessed diverging: right" in text and "simulated as diverging" in text, text[-400:]
    shot(page, "loss_explorer_revealed.png")


TRACKED_RUN = r'''
import json, socket, sys
attempts, _connect = [], socket.socket.connect
def _local_only(self, address):  # record (and refuse) any connection that would leave the machine
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
        attempts.append(str(address)); raise OSError(f"blocked by the test: {address}")
    return _connect(self, address)
socket.socket.connect = _local_only

from IPython.utils.capture import capture_output
from transformers import PrinterCallback
from trl import SFTConfig, SFTTrainer
from sft_course.data import sample_dataset
from sft_course.monitor import trackio_dashboard
from sft_course.offline import offline_model_and_tokenizer

ds = sample_dataset()
model, tok = offline_model_and_tokenizer()
args = SFTConfig(output_dir=sys.argv[1], max_steps=30, learning_rate=3e-3, per_device_train_batch_size=8, logging_steps=5,
                 eval_strategy="steps", eval_steps=10, save_strategy="no", max_length=256, bf16=False, use_cpu=True,
                 disable_tqdm=True, seed=0, report_to="trackio", project="sft-course", run_name="chapter-5")
trainer = SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"].select(range(32)), processing_class=tok)
trainer.remove_callback(PrinterCallback)
with capture_output(): trainer.train()
dash = trackio_dashboard("sft-course")
print(json.dumps({"url": dash.url, "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e]}), flush=True)
sys.stdin.read()  # serve the dashboard until the test closes stdin
dash.close()
print(json.dumps({"attempts": attempts}), flush=True)
'''

COUNT_RUN_PIXELS = """([plot, rgb]) => {
  const c = plot.querySelector('canvas');
  if (!c || !c.width) return 0;  // vega has not drawn yet
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i+1] - rgb[1]) < 40 && Math.abs(d[i+2] - rgb[2]) < 40 && d[i+3] > 100) n++;
  return n;
}"""


@pytest.fixture
def tracked_run(tmp_path, offline_dir):
    """A 30-step stand-in run logged to trackio in a private folder, its dashboard served by a child process that records any
    connection it tries beyond this machine (`stop()` closes the dashboard and returns those attempts)."""
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path/"trackio"), "SFT_COURSE_CACHE": str(Path(offline_dir).parent),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", TRACKED_RUN, str(tmp_path/"run")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    def stop():
        proc.stdin.close()
        return json.loads(proc.stdout.readline())["attempts"]
    try:
        line = proc.stdout.readline()
        assert line, f"the tracked run exited with {proc.wait(60)}"
        yield {**json.loads(line), "stop": stop}
    finally:
        if proc.poll() is None:
            if not proc.stdin.closed: proc.stdin.close()
            try: proc.wait(60)
            except subprocess.TimeoutExpired: proc.kill()


def test_trackio_dashboard_plots_the_run_offline(tracked_run, page):
    """trackio's page for a run logged with report_to='trackio' shows its loss; nothing it loads, and nothing the run or the
    server tries to reach, is outside this machine."""
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(tracked_run["url"])
    page.get_by_placeholder("e.g., loss|ndcg@10|gpu").fill("^(train|eval)/loss$")  # trackio's metric filter: the two losses
    plot = page.locator(".plot-container[data-metric='train/loss']").first
    plot.wait_for(timeout=120_000)
    plot.scroll_into_view_if_needed()
    assert plot.locator(".plot-title").inner_text() == "loss" and "chapter-5" in plot.locator(".custom-legend").inner_text()
    color = plot.locator(".legend-dot").first.evaluate("e => getComputedStyle(e).backgroundColor")
    rgb = [int(x) for x in color[color.index("(") + 1:color.index(")")].split(",")[:3]]
    page.wait_for_function(f"(args) => ({COUNT_RUN_PIXELS})(args) > 50", arg=[plot.element_handle(), rgb], timeout=60_000)
    assert len(tracked_run["losses"]) == 6 and tracked_run["losses"][-1] < tracked_run["losses"][0]
    path = shot(page, "trackio_dashboard.png")
    if os.environ.get("SFT_COURSE_UPDATE_PICTURES") == "1":
        (ROOT/"nbs"/"images").mkdir(exist_ok=True)
        shutil.copy(path, ROOT/"nbs"/"images"/"trackio_dashboard.png")
    outside = [u for u in requests if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert requests and not outside, outside[:5]
    assert tracked_run["stop"]() == []  # the training run, trackio's logging and its server: no connection beyond 127.0.0.1
