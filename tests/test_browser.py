"""The course's widgets in a real browser: JupyterLab on 127.0.0.1, the chapter notebooks run in headless Chromium.

Select these alone with `pytest -m browser`. Screenshots are saved in test-artifacts/.
"""
import pytest

from browser import CHROMIUM_FLAGS, Lab, chromium_path, drag_slider, run_notebook, shot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    exe = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS) if exe else pw.chromium.launch(args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield p
    p.close()


def test_assessment_widget_responds_to_a_click(lab, page):
    "Chapter 1: ticking a box in the assessment widget changes the verdict shown."
    result = run_notebook(page, lab, "01_when_to_use_sft.ipynb", ".sft-assessment-result")
    before = result.inner_text()
    assert "SFT not needed" in before or "not needed" in before.lower(), before
    widget = page.locator(".widget-vbox", has=result).first
    widget.get_by_text("Prompting was good enough (quality)").click()
    page.wait_for_function("([el, t]) => el.innerText !== t", arg=[result.element_handle(), before], timeout=30_000)
    after = result.inner_text()
    assert after != before and "recommended" in after.lower(), after
    shot(widget, "assessment_widget.png")


def _src(img): return img.get_attribute("src") or ""


def test_loss_explorer_slider_and_run_change_plot_and_diagnosis(lab, page):
    "Chapter 5: dragging the smoothing slider and picking another run redraw the plot and update the diagnosis."
    explorer = run_notebook(page, lab, "05_monitoring.ipynb", ".sft-loss-explorer")
    plot, diagnosis = explorer.locator(".sft-loss-plot").first, explorer.locator(".sft-diagnosis").first
    plot.wait_for(timeout=60_000)
    shot(explorer, "loss_explorer_before.png")
    img0, diag0 = _src(plot), diagnosis.inner_text()

    slider = explorer.locator(".widget-slider", has_text="smoothing").first
    drag_slider(page, slider, 0.95)
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[plot.element_handle(), img0], timeout=60_000)
    img1, diag1 = _src(plot), diagnosis.inner_text()
    assert img1 != img0 and diag1 != diag0
    shot(explorer, "loss_explorer_smoothed.png")

    run = explorer.locator(".widget-dropdown", has_text="run").locator("select").first
    status0 = diagnosis.locator(".sft-diagnosis-status").first.get_attribute("data-status")
    target = "simulated diverging" if status0 != "diverging" else "simulated healthy"
    run.select_option(label=target)
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[plot.element_handle(), img1], timeout=60_000)
    page.wait_for_function("([el, s]) => el.querySelector('.sft-diagnosis-status').dataset.status !== s",
                           arg=[diagnosis.element_handle(), status0], timeout=60_000)
    status1 = diagnosis.locator(".sft-diagnosis-status").first.get_attribute("data-status")
    assert status1 == target.split()[-1], status1
    shot(page, "loss_explorer_after.png")
