"""Event validation and compilation to ops (pure)."""

from __future__ import annotations

import pytest

from segserver.errors import ValidationError
from segserver.profile.events import (
    BUILTIN_EVENT_TYPES,
    EventCatalog,
    Limits,
    parse_time,
    plan_ops,
    validate_event,
)
from segserver.profile.ops import FLAG_WHEN_GAP, Opcode, unpack_ops
from segserver.profile.schema import DAY_SECONDS, Schema

NOW = 1_790_000_000.0
LIMITS = Limits()
CATALOG = EventCatalog(Schema.from_json({"events": [{"name": "quiz_done", "window": True}]}))

ISSUE_TYPES = {
    "page_view", "session_start", "product_view", "add_to_cart", "remove_from_cart",
    "checkout_start", "purchase", "refund", "email_open", "email_click", "signup", "login",
    "identify", "support_ticket",
}  # fmt: skip


def test_every_event_type_of_the_issue_exists() -> None:
    assert ISSUE_TYPES <= BUILTIN_EVENT_TYPES
    assert "quiz_done" in CATALOG.types


def test_iso_times_with_offset_become_utc() -> None:
    assert parse_time("2026-09-21T12:00:00+02:00", "ts") == parse_time("2026-09-21T10:00:00Z", "ts")
    with pytest.raises(ValidationError, match="UTC offset"):
        parse_time("2026-09-21T10:00:00", "ts")


def test_page_view_plan() -> None:
    ev = validate_event(
        {"visitor_id": "v", "type": "page_view", "properties": {"country": "DE"}},
        "e",
        CATALOG,
        LIMITS,
        NOW,
    )
    assert ev.ts == NOW
    plan = plan_ops(ev, CATALOG, LIMITS)
    layout = CATALOG.schema.layout
    assert list(plan.strings()) == [("country", "DE")]
    ops = unpack_ops(plan.pack(lambda attr, value: 7))
    by_offset = {(op.opcode, op.offset): op for op in ops}
    assert by_offset[(Opcode.SET, layout["country"].offset)].a == 7
    gap = by_offset[(Opcode.CHECK_GAP, layout["last_seen"].offset)]
    assert (gap.a, gap.b) == (NOW, 1800)
    sessions = by_offset[(Opcode.ADD, layout["sessions"].offset)]
    assert sessions.flags == FLAG_WHEN_GAP
    window = by_offset[(Opcode.WINDOW_ADD, layout["page_views"].window)]
    assert window.a == NOW // DAY_SECONDS
    assert ops[0].opcode is Opcode.CHECK_GAP  # the gap is checked before last_seen moves


def test_cart_value_is_price_times_quantity() -> None:
    ev = validate_event(
        {
            "visitor_id": "v",
            "type": "add_to_cart",
            "properties": {"product_id": "p", "price": 12.5, "quantity": 3},
        },
        "e",
        CATALOG,
        LIMITS,
        NOW,
    )
    ops = unpack_ops(plan_ops(ev, CATALOG, LIMITS).pack(lambda a, v: 0))
    value = [o for o in ops if o.offset == CATALOG.schema.layout["cart_value"].offset]
    assert value[0].a == 37.5


@pytest.mark.parametrize("etype", ["add_to_cart", "remove_from_cart"])
def test_a_cart_line_without_quantity_is_one_item_at_its_price(etype: str) -> None:
    raw = {"visitor_id": "v", "type": etype, "properties": {"product_id": "p", "price": 30}}
    ev = validate_event(raw, "e", CATALOG, LIMITS, NOW)
    assert ev.properties["quantity"] == 1
    ops = unpack_ops(plan_ops(ev, CATALOG, LIMITS).pack(lambda a, v: 0))
    layout = CATALOG.schema.layout
    value = [o for o in ops if o.offset == layout["cart_value"].offset]
    items = [o for o in ops if o.offset == layout["cart_items"].offset]
    assert (value[0].a, items[0].a) == (30, 1)


def test_custom_event_counts_and_stamps() -> None:
    ev = validate_event({"visitor_id": "v", "type": "quiz_done"}, "e", CATALOG, LIMITS, NOW)
    ops = unpack_ops(plan_ops(ev, CATALOG, LIMITS).pack(lambda a, v: 0))
    layout = CATALOG.schema.layout
    assert {(o.opcode, o.offset) for o in ops} == {
        (Opcode.ADD, layout["quiz_done_count"].offset),
        (Opcode.WINDOW_ADD, layout["quiz_done_count"].window),
        (Opcode.MAX, layout["quiz_done_at"].offset),
    }


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"visitor_id": "v", "type": "page_view", "colour": 1}, "e.colour"),
        ({"visitor_id": "v", "type": "page_view", "event_id": ""}, "e.event_id"),
        ({"visitor_id": "v", "type": "page_view", "properties": []}, "e.properties"),
        ({"visitor_id": "v", "type": "purchase", "properties": {"value": True}}, "value"),
        ({"visitor_id": "v", "type": "identify",
          "properties": {"birthday": "1990-13-01"}}, "birthday"),
        ({"visitor_id": "v", "type": "identify",
          "properties": {"identified": "yes"}}, "identified"),
        ({"visitor_id": "v", "type": "identify", "properties": {"tags": ["a"] * 9}}, "tags.set"),
        ({"visitor_id": "v", "type": "page_view", "ts": float("nan")}, "e.ts"),
        ("not an object", "e: must be an object"),
    ],
)  # fmt: skip
def test_invalid_events_name_the_field(event: object, path: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_event(event, "e", CATALOG, LIMITS, NOW)
    assert path in err.value.message
