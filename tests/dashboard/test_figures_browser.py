"""The figure builders drawn by plotly.js in Chromium: every class axis shows every exact name."""

from __future__ import annotations

import pytest

from tests.analysis.test_figures import CASES

pytestmark = pytest.mark.browser


def test_drawn_tick_labels_are_the_exact_names(browser):
    """plotly.js draws every figure; each class axis shows every name, exactly, as text."""
    import plotly.io as pio

    shown = {b: CASES[b]() for b in sorted(CASES) if CASES[b]()[1]}
    divs = "".join(
        pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, div_id=f"f_{b}")
        for i, (b, (fig, _)) in enumerate(shown.items())
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.set_content(f"<html><body>{divs}</body></html>", wait_until="load")
        for b, (_, axes) in shown.items():
            for axis, expected in axes:
                sel = f"#f_{b} .{axis[0]}tick text"
                page.wait_for_selector(sel, state="attached")
                ticks = page.eval_on_selector_all(sel, "els => els.map(e => e.textContent)")
                assert sorted(ticks) == sorted(expected), (b, axis, ticks)
                # and never as markup: "<b>x</b> & y" is text, not a bold element
                assert not page.query_selector(f"#f_{b} .{axis[0]}tick text tspan[style*=bold]")
    finally:
        page.close()
