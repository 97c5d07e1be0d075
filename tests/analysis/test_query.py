"""ImageQuery: URL round trip and the row filters every gallery link relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.present.query import (
    ImageQuery,
    apply_query,
    describe_where,
    parse_between,
    where_mask,
)


def _samples() -> pd.DataFrame:
    return pd.DataFrame(
        {
            schema.SAMPLE_ID: [f"s{i}" for i in range(6)],
            schema.LABEL: [0, 1, 0, 1, 0, 1],
            schema.PRED: [0, 0, 0, 1, 1, 1],
            schema.CORRECT: [True, False, True, True, False, True],
            schema.CONFIDENCE: [0.9, 0.6, 0.8, 0.7, 0.55, 0.99],
            schema.LOSS: [0.1, 2.0, 0.2, 0.3, 1.5, 0.01],
            "camera": ["a", "b", "a", "b", "c", "a"],
            "site": ["North-1", "north-2", "South", "NORTH-3", "west", None],
            "hour": [1.0, 5.5, 9.0, 13.0, np.nan, 23.0],
        }
    )


def test_where_kinds_value_range_contains():
    s = _samples()
    assert where_mask(s, "camera", "a").tolist() == [True, False, True, False, False, True]
    assert where_mask(s, "hour", "between:5,13").tolist() == [0, 1, 1, 1, 0, 0]  # NaN dropped
    assert where_mask(s, "site", "contains:north").tolist() == [1, 1, 0, 1, 0, 0]
    assert not where_mask(s, "nope", "a").any()
    assert parse_between("between:2,1") is None and parse_between("between:x,1") is None
    assert parse_between("between:-1.5,2") == (-1.5, 2.0)
    assert describe_where("hour", "between:5,13") == "hour in [5, 13]"
    assert describe_where("site", "contains:north") == "site contains 'north'"
    assert describe_where("camera", "a") == "camera = a"


def test_query_round_trips_through_the_url_and_filters():
    s = _samples()
    q = ImageQuery(
        correct="correct",
        where=(("hour", "between:0,20"), ("site", "contains:n")),
        sort="loss",
        desc=False,
    )
    back = ImageQuery.from_params(q.to_params())
    assert back == q
    rows = apply_query(s, back)
    # correct, hour in [0, 20], site contains "n" (case-insensitive): rows 0 and 3; loss ascending
    assert rows.tolist() == [0, 3]
    assert "hour in [0, 20]" in q.describe(["x", "y"])


@pytest.mark.parametrize("desc", [True, False])
def test_sort_order(desc):
    s = _samples()
    rows = apply_query(s, ImageQuery(sort="loss", desc=desc))
    loss = s[schema.LOSS].to_numpy()[rows]
    assert (np.diff(loss) <= 0).all() if desc else (np.diff(loss) >= 0).all()


def test_filter_options_pick_a_widget_per_metadata_column():
    from analysis.present.query import MAX_LISTED, filter_options

    s = pd.DataFrame(
        {
            "camera": ["b", "a", None, "a"] * 5,
            "hour": list(range(20)),
            "few_numbers": [1, 2] * 10,
            "id": [f"x{i}" for i in range(20)],
        }
    )
    s = pd.concat([s] * 3, ignore_index=True)
    s.loc[:, "id"] = [f"x{i}" for i in range(len(s))]  # more than MAX_LISTED distinct values
    assert len(s) > MAX_LISTED
    opts = filter_options(s, ["camera", "hour", "few_numbers", "id"])
    assert opts["camera"].kind == "value" and opts["camera"].values == ("a", "b")
    assert opts["hour"].kind == "range" and (opts["hour"].low, opts["hour"].high) == (0, 19)
    assert opts["few_numbers"].kind == "value" and opts["few_numbers"].values == ("1", "2")
    assert opts["id"].kind == "text"
