"""The page view's hand-written check (hot path) and the model the spec shows agree:
a body passes one exactly when it passes the other."""

from __future__ import annotations

from typing import Any

import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from segserver.api import describe, path_of, validate
from segserver.api.public import MAX_EVENTS, PageViewBody
from segserver.errors import ValidationError
from segserver.flows.pageview import PageViewRequest

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(["v1", "hero", "a-b", "", "X"]),
)
bodies = st.one_of(
    values,
    st.fixed_dictionaries({}, optional={
        "visitor_id": values, "events": st.one_of(values, st.lists(values, max_size=3)),
        "placements": st.one_of(values, st.lists(values, max_size=3)),
        "explain": values, "site": values, "colour": values}),
)  # fmt: skip


def model_accepts(body: Any) -> bool:
    try:
        PageViewBody.model_validate(body)
    except pydantic.ValidationError:
        return False
    return True


def parse_accepts(body: Any) -> bool:
    try:
        PageViewRequest.parse(body, MAX_EVENTS)
    except ValidationError:
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(bodies)
def test_hand_check_and_model_agree(body: Any) -> None:
    assert parse_accepts(body) == model_accepts(body), body


def test_messages_name_the_field() -> None:
    assert path_of(("events", 2, "properties", "value")) == "events[2].properties.value"
    try:
        validate(PageViewBody, {"visitor_id": "v", "placements": ["ok", 3]})
    except ValidationError as exc:
        assert exc.message == "placements[1]: must be a string"
    else:
        raise AssertionError("not refused")
    err = {"type": "less_than_equal", "loc": ("holdout",), "ctx": {"le": 100}, "input": 101}
    assert describe(err) == "holdout: must be at most 100"
