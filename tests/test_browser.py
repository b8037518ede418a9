"""The course's widgets in a real browser: JupyterLab on 127.0.0.1, the chapter notebooks run in headless Chromium.

Select these alone with `pytest -m browser`. Screenshots are saved in test-artifacts/.
"""
import pytest

from browser import CHROMIUM_FLAGS, Lab, chromium_path, run_notebook, shot

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


