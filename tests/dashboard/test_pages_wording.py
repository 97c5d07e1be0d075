"""What the pages say (AppTest): every sentence reads right with counts of 0, 1 and 2, a CAM
that cannot be read is explained (never "+nan"), every view worth sharing has a Copy link that
reopens it, and the Overview answers at /overview too."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from analysis import schema
from analysis.present import formatting as fmt

from .conftest import APP, assert_on_page, open_page
from .hostile import make_hostile_run, markdown_sources
from .test_safety import _unescape

#: what a sentence must never say
BAD = [
    r"\b1 (?:[a-z-]+ )?(?:images|files|pairs|slices|classes|candidates|queues)\b",
    r"(?<![\d,.])(?:0|[2-9]|\d{2,}|\d{1,3}(?:,\d{3})+) (?:[a-z-]+ )?(?:image|file|pair|slice|class|candidate)\b(?!s|es)",
    r"\(s\)",
    r"(?i)(?<![a-z])\+?nan(?![a-z])",
    r"\b1 of \d[\d,]* (?:images|slices)\b(?! [a-z])",
]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_hostile_run(tmp_path_factory.mktemp("small"))


def _app(small, monkeypatch):
    from streamlit.testing.v1 import AppTest

    run, db_path, _ = small
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(db_path))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run.run_id
    return at.run()


def _goto(at, page, **params):
    for k in [k for k in at.query_params if k != "run"]:
        del at.query_params[k]
    for k, v in params.items():
        at.query_params[k] = str(v)
    open_page(at, page).run()
    assert not at.exception, (page, [e.value for e in at.exception])
    assert_on_page(at, page)
    return [_unescape(t) for t in markdown_sources(at)]


def _bad(texts: list[str]) -> list[tuple[str, str]]:
    return [(p, t) for t in texts for p in BAD if re.search(p, t)]


def test_bad_patterns_catch_what_they_should():
    for wrong in (
        "1 images match",
        "5 of 1 images",
        "1 evaluation images are",
        "2 image",
        "3 skipped file",
        "1,200 image",
        "4 file(s) skipped",
        "drops p by +nan",
        "error rate nan",
    ):
        assert _bad([wrong]), wrong
    for right in (
        "1 image matches",
        "2 images",
        "0 images",
        "Image 3 of 40",
        "class 0",
        "1,200 images",
        "layer4 (2×2 map)",
        "financial",
    ):
        assert not _bad([right]), right


def test_plural():
    assert [fmt.plural(n, "image") for n in (0, 1, 2, 1200)] == [
        "0 images",
        "1 image",
        "2 images",
        "1,200 images",
    ]
    assert fmt.plural(1, "class", "classes") == "1 class"


def test_every_sentence_reads_right_with_small_counts(small, monkeypatch):
    """Pages of a 24-image, 3-class run, and image sets of exactly 0, 1 and 2 images."""
    from dashboard.views import VIEWS

    run, _, qid = small
    s = run.samples
    at = _app(small, monkeypatch)
    # a (given, predicted) pair with exactly one image, one with two, one with none
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (s[schema.LABEL], s[schema.PRED]), 1)
    sets = {}
    for n in (0, 1, 2):
        hits = np.argwhere(cm == n)
        if len(hits):
            sets[n] = {"true": int(hits[0][0]), "pred": int(hits[0][1])}
    assert 1 in sets, cm  # the run makes the one-image case
    visits = [(v.url, {}) for v in VIEWS]
    visits += [("gallery", p) for p in sets.values()]
    visits += [("detail", {"sample": s[schema.SAMPLE_ID].iloc[0], **sets[1]})]
    visits += [("review", {"queue": qid, "pos": 0})]
    problems = []
    for page, params in visits:
        texts = _goto(at, page, **params)
        problems += [(page, params, *b) for b in _bad(texts)]
        if page == "gallery" and params in sets.values():
            n = next(k for k, v in sets.items() if v == params)
            want = f"{fmt.plural(n, 'image')} {'matches' if n == 1 else 'match'}"
            assert any(t.replace("**", "").startswith(want) for t in texts), (n, texts[:20])
    assert not problems, problems


def test_a_flat_cam_is_explained_and_coarse_layers_are_marked(small, monkeypatch):
    """resnet18 at 32 px: layer4 is 1×1, so its map is the same everywhere."""
    run, _, _ = small
    at = _app(small, monkeypatch)
    texts = _goto(at, "detail", sample=run.samples[schema.SAMPLE_ID].iloc[0], layer="layer4")
    assert not _bad(texts), _bad(texts)
    infos = [_unescape(i.value) for i in at.info]
    assert any("No map to show" in i and "only 1×1" in i for i in infos), infos
    options = at.selectbox(key="cam_layer").options
    assert "layer4 (1×1 map) — too coarse to say where" in options, options
    assert "layer1 (8×8 map) — default" in options, options
    assert not any("removing a same-size region" in t for t in texts)  # no "+nan" sentence
    assert any("too coarse to say where" in t for t in texts)


def _copied(at) -> list[str]:
    return [c.value for c in at.code if "://" in c.value or c.value.startswith("/")]


@pytest.mark.parametrize(
    "page,params,expect",
    [
        ("overview", {}, {}),
        ("confusion", {"norm": "row %"}, {"norm": "row %"}),
        (
            "slices",
            {"tab": "By column", "column": "score"},
            {"tab": "By column", "column": "score"},
        ),
        ("embeddings", {"colour": "cluster"}, {"colour": "cluster"}),
        ("gallery", {"correct": "wrong"}, {"correct": "wrong"}),
        ("data_issues", {"section": "Outliers"}, {"section": "Outliers"}),
        ("review", {"queue": None, "pos": "1"}, {"pos": "1"}),
        (  # the image, the selection it steps through, the CAM method on screen
            "detail",
            {"sample": "FIRST", "correct": "wrong", "cam": "gradcam++"},
            {"sample": "FIRST", "correct": "wrong", "cam": "gradcam++"},
        ),
    ],
)
def test_copy_link_reopens_the_view(small, monkeypatch, page, params, expect):
    run, _, qid = small
    first = run.samples[schema.SAMPLE_ID].iloc[0]
    params = {k: (qid if v is None else v) for k, v in params.items()}
    params = {k: (first if v == "FIRST" else v) for k, v in params.items()}
    expect = {k: (first if v == "FIRST" else v) for k, v in expect.items()}
    at = _app(small, monkeypatch)
    _goto(at, page, **params)
    (link,) = _copied(at)
    u = urlsplit(link)
    assert u.path == ("/" if page == "overview" else f"/{page}"), link
    got = {k: v[0] for k, v in parse_qs(u.query).items()}
    assert got["run"] == run.run_id
    for k, v in expect.items():
        assert got.get(k) == v, (page, link)
    if page == "review":
        assert got["queue"] == qid


def test_the_overview_answers_at_its_own_path_too(small, monkeypatch):
    at = _app(small, monkeypatch)
    assert at.title[0].value == "Overview"  # "/" (the default page)
    _goto(at, "overview")  # the /overview page (an alias: Streamlit serves a default page at /)
    assert at.title[0].value == "Overview"


def test_robustness_link_keeps_the_cell_and_the_choices(small, monkeypatch):
    from analysis.stats.robustness import run_robustness

    run = small[0]
    run_robustness(run, perturbations=["brightness_down", "gaussian_blur"], subset=24, seed=0)
    at = _app(small, monkeypatch)
    texts = _goto(at, "robustness", cell="gaussian_blur:3", under="gaussian_blur")
    assert not _bad(texts), _bad(texts)
    assert any("flipped under gaussian_blur, severity 3" in h.value for h in at.subheader)
    (link,) = _copied(at)
    got = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert got["cell"] == "gaussian_blur:3" and got["under"] == "gaussian_blur", link
