"""Hostile text and links (AppTest): user text is shown as text on every page, every query
parameter a page reads falls back with a visible note, and a page that fails shows no traceback.
The browser side of the same (and the listening address, and the network) is
test_browser_safety.py."""

from __future__ import annotations

import html
import json
import logging
import re

import pytest

from analysis import schema
from dashboard.components import JOINER, safe

from .conftest import APP, assert_on_page, open_page
from .hostile import (
    CLASSES,
    HTML,
    LINK,
    META_COLUMN,
    RAW,
    html_sources,
    make_hostile_run,
    markdown_sources,
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return make_hostile_run(tmp_path_factory.mktemp("hostile"))


def _app(hostile, monkeypatch, **params):
    from streamlit.testing.v1 import AppTest

    run, db_path, _ = hostile
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(db_path))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run.run_id
    for k, v in params.items():
        at.query_params[k] = v
    return at


def _goto(at, page, params):
    for k in [k for k in at.query_params if k != "run"]:
        del at.query_params[k]
    for k, v in params.items():
        at.query_params[k] = v
    open_page(at, page).run()
    assert not at.exception, (page, [e.value for e in at.exception])
    assert_on_page(at, page)
    return at


def _unescape(md: str) -> str:
    """What a Markdown source shows: escapes resolved, word joiners (invisible) dropped."""
    return re.sub(r"\\(.)", r"\1", md).replace(JOINER, "")


def test_user_text_is_never_read_as_markdown(hostile, monkeypatch):
    """Class, file, column and model names, metadata values, queue, reviewer, tags, notes and
    corrected labels holding links and HTML: no page hands them to Markdown unescaped."""
    from dashboard.views import VIEWS

    run, _, qid = hostile
    s = run.samples
    tagged = s[schema.SAMPLE_ID].iloc[0]
    at = _app(hostile, monkeypatch).run()
    assert not at.exception, [e.value for e in at.exception]
    visits = [(v.url, {}) for v in VIEWS] + [
        ("detail", {"sample": tagged}),
        ("review", {"queue": qid, "pos": "0"}),
        ("gallery", {"where": json.dumps([[META_COLUMN, LINK]])}),
    ]
    seen, seen_html = [], []
    for page, params in visits:
        _goto(at, page, params)
        sources = markdown_sources(at)
        for raw in RAW:
            bad = [t for t in sources if raw in t]
            assert not bad, (page, params, raw, bad[:3])
        seen += sources
        for body in html_sources(at):  # HTML elements: user text escaped as HTML
            assert "<b>bold</b>" not in body and "<i>co</i>" not in body, (page, body[:300])
            seen_html.append(body)
    # the hostile strings were on screen, escaped (so the check above looked at them)
    for text in (LINK, CLASSES[1], "site", "heading"):
        assert any(safe(text) in t for t in seen), text
    # the detail page's top classes (HTML) showed the hostile class names, escaped
    assert any(html.escape(HTML) in t and html.escape(LINK) in t for t in seen_html)


def test_safe_escapes_every_markup_character():
    assert safe(LINK) == r"\[x\]\(http" + JOINER + r"\:\/\/phish\.example\)"
    assert safe("www.a.b ana@c.d") == "www" + JOINER + r"\.a\.b ana" + JOINER + r"\@c\.d"
    assert safe("a\n# b") == "a  \n\\# b"
    assert safe("**b** _i_ `c` $x$ :red[y] <u>") == (
        r"\*\*b\*\* \_i\_ \`c\` \$x\$ \:red\[y\] \<u\>"
    )
    assert _unescape(safe(LINK)) == LINK
    assert safe("wrong: clearly") == r"wrong\: clearly"  # no joiner where no link could start


def _cases(hostile):
    run, _, qid = hostile
    sid = run.samples[schema.SAMPLE_ID].iloc[0]
    return [
        ("gallery", {"page": "abc"}, "page='abc' was ignored"),
        ("gallery", {"page": "999"}, "page=999 is out of range"),
        ("gallery", {"slice": '{"bad'}, "slice="),
        ("gallery", {"slice": '[["nocol","==","x"]]'}, "columns this run does not have"),
        ("gallery", {"true": "abc"}, "true='abc' was ignored"),
        ("gallery", {"pred": "99"}, "this run has classes 0 to 2"),
        ("gallery", {"conf": "2,3"}, "conf='2,3' was ignored"),
        ("gallery", {"correct": "maybe"}, "correct='maybe' was ignored"),
        ("gallery", {"sort": "evil"}, "sort='evil' was ignored"),
        ("gallery", {"desc": "maybe"}, "desc='maybe' was ignored"),
        ("gallery", {"where": "notjson"}, "where='notjson' was ignored"),
        ("gallery", {"where": '[["nocol","x"]]'}, "this run has no column 'nocol'"),
        ("gallery", {"where": json.dumps([[META_COLUMN, "nope"]])}, "no image has this value"),
        ("gallery", {"sel": "../../etc"}, "not a selection id"),
        ("gallery", {"sel": "deadbeef"}, "no saved selection"),
        ("gallery", {"cluster": "x"}, "cluster='x' was ignored"),
        ("gallery", {"issue": "bogus"}, "issue='bogus' was ignored"),
        ("review", {"queue": qid, "pos": "abc"}, "pos='abc' was ignored"),
        ("review", {"queue": qid, "pos": "99"}, "pos=99 is out of range"),
        ("review", {"queue": "nope"}, "is not a queue of this run"),
        ("review", {"sel": "deadbeef"}, "no saved selection"),
        ("confusion", {"norm": "<script>"}, "norm='<script>' was ignored"),
        ("detail", {"sample": "nope"}, "'nope' from the link is not in this run"),
        ("detail", {"sample": sid, "origin": "evil"}, "origin='evil' was ignored"),
        ("detail", {"sample": sid, "cam": "evil"}, "cam='evil' was ignored"),
        ("detail", {"sample": sid, "layer": "evil"}, "layer='evil' was ignored"),
        ("detail", {"sample": sid, "true": "x"}, "true='x' was ignored"),
        ("compare", {"b": "nope"}, "b='nope' was ignored"),
        ("overview", {"run": "nope"}, "'nope' from the link is not in"),
    ]


N_CASES = 29
CHANCE_BANNER_ICON = ":material/gpp_bad:"  # dashboard/views/run_banner.py


def test_case_list_is_complete(hostile):
    assert len(_cases(hostile)) == N_CASES


@pytest.mark.parametrize("case", range(N_CASES))
def test_malformed_deep_link_falls_back_with_a_note(case, hostile, monkeypatch):
    page, params, note = _cases(hostile)[case]
    at = _app(hostile, monkeypatch)
    at.run()
    _goto(at, page, params)
    # the hostile run's random model is at chance: the Overview says so (its banner), nothing else
    errors = [e for e in at.error if e.icon != CHANCE_BANNER_ICON]
    assert not errors, (page, params, [e.value for e in errors])
    assert at.title and at.title[0].value, page
    warnings = [_unescape(w.value) for w in at.warning] + [
        _unescape(w.value) for w in at.sidebar.warning
    ]
    assert any(note in w for w in warnings), (page, params, warnings)


def test_a_failing_page_shows_no_traceback_and_logs_it(hostile, monkeypatch):
    """Without ERRORSCOPE_RAISE (as when a person runs it), an unexpected error becomes a plain
    message; the traceback goes to the server's log."""
    import dashboard.views.confusion as confusion

    def broken(run):
        raise RuntimeError("secret detail /srv/errorscope/internal.py")

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logging.getLogger("errorscope.dashboard").addHandler(handler)
    try:
        monkeypatch.delenv("ERRORSCOPE_RAISE", raising=False)
        monkeypatch.setattr(confusion, "render", broken)
        at = _app(hostile, monkeypatch).run()
        open_page(at, "confusion").run()
    finally:
        logging.getLogger("errorscope.dashboard").removeHandler(handler)
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(e.value for e in at.error)
    assert "unexpected problem" in shown and "secret" not in shown and "/srv" not in shown
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in records)


def test_dashboard_command_is_local_and_quiet_unless_told(monkeypatch):
    from analysis.cli import _parser, dashboard_command

    args = _parser().parse_args(["dashboard"])
    cmd, _, warning = dashboard_command(port=args.port, address=args.address)
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and warning is None
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--client.showErrorDetails"] == "none"
    # no full garbage collection after every script run (it held every session up)
    assert flags["--runner.postScriptGC"] == "false"
    import tomllib

    from analysis.cli import REPO_ROOT

    for conf in (REPO_ROOT / ".streamlit", REPO_ROOT / "dashboard" / ".streamlit"):
        with open(conf / "config.toml", "rb") as f:
            assert tomllib.load(f)["runner"]["postScriptGC"] is False
    for local in ("localhost", "::1", "127.0.0.2"):
        assert dashboard_command(address=local)[2] is None
    cmd, _, warning = dashboard_command(address="0.0.0.0", port=9000)
    assert "--server.address" in cmd and cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert warning.count("\n") == 0 and "no login" in warning and "0.0.0.0:9000" in warning
