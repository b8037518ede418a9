"""Chapter 3 in a real browser: the config explorer re-renders when a control changes. Select with `pytest -m browser`."""
import pytest

from browser import run_notebook, shot
from test_browser import browser, lab, page  # noqa: F401  (the shared JupyterLab and Chromium fixtures)

pytestmark = pytest.mark.browser


def test_config_explorer_updates_plan_and_memory(lab, page):
    "Chapter 3: choosing another profile in the config explorer re-renders the plan, issues and memory estimate."
    result = run_notebook(page, lab, "03_sft_config.ipynb", ".sft-config-explorer-result")
    before = result.inner_text()
    explorer = page.locator(".widget-vbox", has=result).first
    profile = explorer.locator("select").first
    assert profile.input_value() == "cpu-quick"
    profile.select_option("gpu-full")
    # the Output is cleared, then refilled: wait for the new profile's issues and the redrawn schedule
    page.wait_for_function("([el, t]) => el.innerText !== t && el.innerText.includes('A100') && el.querySelector('img')",
                           arg=[result.element_handle(), before], timeout=60_000)
    after = result.inner_text()
    assert after != before and "GiB" in after and "A100" in after, after  # issues checked for the A100 gpu-full is made for
    assert explorer.locator(".sft-config-explorer-result img").count() == 1  # the learning-rate schedule, redrawn
    shot(explorer, "config_explorer.png")
