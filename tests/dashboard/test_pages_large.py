"""Issue 16 §4 on the page: what the Embeddings page draws of a large run and says about it, and
the gallery's last page. The sample stands in for a million images by lowering the drawn-points
cap (the same code path a run above 40,000 images takes); the times at 1M are in
bench/bench_dashboard.py and bench/bench_map_browser.py."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from analysis import schema
from analysis.present import map_points as mp
from tests.dashboard.conftest import assert_on_page, open_page


def _length(values) -> int:
    """Points in a Plotly data array: a list, or Plotly's typed array ({dtype, bdata})."""
    if isinstance(values, dict):
        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values or [])


def _drawn_points(at) -> int:
    charts = at.get("plotly_chart")
    assert charts, "no chart on the page"
    spec = json.loads(charts[0].proto.spec)
    return sum(_length(t.get("x")) for t in spec["data"])


@pytest.fixture
def fresh_caches():
    """The drawn points and the chart are cached per process (every session shares them): a
    test that changes the cap must neither see nor leave another test's."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def test_embeddings_page_draws_every_error_and_says_which_correct_images(
    app_test, sample_run, monkeypatch, fresh_caches
):
    cap = 300
    monkeypatch.setitem(mp.map_points.__kwdefaults__, "max_points", cap)
    s = sample_run.samples
    n, n_wrong = len(s), int((~s[schema.CORRECT]).sum())
    assert n_wrong < cap < n  # every error fits, the correct ones are sampled
    at = app_test
    at.run()
    open_page(at, "embeddings").run()
    assert_on_page(at, "embeddings")
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert _drawn_points(at) == cap
    captions = " ".join(c.value for c in at.caption)
    assert f"Drawn: all {n_wrong:,} wrong images and a random {cap - n_wrong:,}" in captions
    assert f"({cap:,} of {n:,} points" in captions
    assert "selects every image in the region, drawn or not" in captions
    how = sample_run.json(schema.EMBEDDING_MAP)["how"]
    assert how in captions  # how the map was made (all images here; a sample at 1M)


def test_embeddings_page_draws_every_image_of_a_small_run(app_test, sample_run, fresh_caches):
    at = app_test
    at.run()
    open_page(at, "embeddings").run()
    assert _drawn_points(at) == len(sample_run.samples)
    assert "Drawn:" not in " ".join(c.value for c in at.caption)


def test_gallery_opens_its_last_page(app_test, sample_run):
    from dashboard.views.gallery import PER_PAGE

    s = sample_run.samples
    n = len(s)
    last = -(-n // PER_PAGE)
    at = app_test
    at.run()
    at.query_params["page"] = str(last)
    open_page(at, "gallery").run()
    assert_on_page(at, "gallery")
    assert not at.exception and not at.error and not at.warning
    assert f"{n:,} images" in " ".join(m.value for m in at.markdown)
    # the last page holds the rest of the images, in the gallery's order (highest loss first):
    # the lowest losses
    losses = [c.value.split("loss ")[1] for c in at.caption if c.value.startswith("conf ")]
    shown = n - (last - 1) * PER_PAGE
    assert len(losses) == shown
    lowest = np.sort(s[schema.LOSS].to_numpy())[:shown]
    assert sorted(losses) == sorted(f"{v:.2f}" for v in lowest)
