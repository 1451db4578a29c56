"""Events: validation and compilation to profile update ops.

What each built-in event does is data (config/events.toml); `identify` sets the
attributes named in its properties; a site's declared custom events count into
`<name>_count` (and its daily window) and stamp `<name>_at`. Validation is strict
and names the field; compilation happens in two steps because strings become
dictionary codes, which may need one round trip to assign:

    events = [validate_event(raw, ...)]            # ValidationError naming the field
    plan = plan_ops(event, catalog)                # ops, strings still as strings
    plan.strings()                                 # (attr, value) pairs to encode
    plan.pack(codes)                               # bytes for lua/apply_events.lua
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from segserver.errors import ValidationError
from segserver.profile.bounds import (
    bounded,
    check_items,
    check_product_id,
    check_products,
    number,
)
from segserver.profile.identity import check_visitor_id
from segserver.profile.ops import FLAG_WHEN_GAP, Op, Opcode, pack_ops
from segserver.profile.schema import DAY_SECONDS, NAME_RE, Attribute, Kind, Schema
from segserver.resources import shipped_dir

_OPCODES = {
    "set": Opcode.SET,
    "add": Opcode.ADD,
    "sub_floor": Opcode.SUB_FLOOR,
    "max": Opcode.MAX,
    "min": Opcode.MIN,
    "set_if_missing": Opcode.SET_IF_MISSING,
    "unset": Opcode.UNSET,
    "window_add": Opcode.WINDOW_ADD,
    "check_gap": Opcode.CHECK_GAP,
}
_PROP_TYPES = {"string", "number", "integer", "timestamp", "list", "product_id", "items"}
_EVENT_ID_MAX = 128
_LIST_MAX = 1000
#: What a public site key may not send (config/events.toml `trusted = true`), and
#: the code of the per-event rejection.
SERVER_KEY_REQUIRED = "server_key_required"


@dataclass(frozen=True, slots=True)
class Limits:
    """The settings validation depends on (from Settings, passed in by the caller)."""

    max_string_length: int = 256
    max_event_age_seconds: float = 400 * 86400
    max_event_skew_seconds: float = 300
    session_gap_seconds: float = 1800


@dataclass(frozen=True, slots=True)
class OpSpec:
    opcode: Opcode
    attr: str
    value: float | str | None  # number, "ts", "prop:a" or "prop:a*prop:b"
    default: float | None = None
    when_gap: bool = False


# (opcode, byte offset (the window block's for WINDOW_ADD), flags, the spec)
Step = tuple[Opcode, int, int, OpSpec]


@dataclass(frozen=True)
class EventType:
    name: str
    properties: Mapping[str, Mapping[str, Any]]
    ops: tuple[OpSpec, ...]
    trusted: bool = False  # only the site's server key may send it


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event. `ts` is epoch seconds (UTC)."""

    visitor_id: str
    type: str
    ts: float
    event_id: str | None
    properties: Mapping[str, Any]


def _parse_value(raw: Any, where: str) -> float | str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"{where}: value must be a number, 'ts' or 'prop:...'")
    if (
        isinstance(raw, str)
        and raw != "ts"
        and not all(p.startswith("prop:") for p in raw.split("*"))
    ):
        raise ValueError(f"{where}: value {raw!r} must be a number, 'ts' or 'prop:...'")
    return float(raw) if not isinstance(raw, str) else raw


def _load_builtin_types(path: Any = None) -> dict[str, EventType]:
    path = path or shipped_dir("config") / "events.toml"
    data = tomllib.loads(path.read_text())
    groups = data.pop("groups", {})
    types: dict[str, EventType] = {}
    for name, spec in data.items():
        raw_ops = [op for g in spec.get("include", []) for op in groups[g]["ops"]]
        raw_ops += spec.get("ops", [])
        ops = []
        for i, raw in enumerate(raw_ops):
            where = f"events.toml [{name}] op {i}"
            ops.append(
                OpSpec(
                    _OPCODES[raw["op"]],
                    raw.get("attr", ""),
                    _parse_value(raw.get("value"), where),
                    raw.get("default"),
                    raw.get("when") == "gap",
                )
            )
        props = spec.get("properties", {})
        for pname, pspec in props.items():
            if pspec.get("type") not in _PROP_TYPES:
                raise ValueError(f"events.toml [{name}] property {pname}: bad type")
        types[name] = EventType(name, props, tuple(ops), bool(spec.get("trusted", False)))
    return types


_BUILTIN_TYPES = _load_builtin_types()
BUILTIN_EVENT_TYPES = frozenset(_BUILTIN_TYPES)
#: Event types only a server key may send: purchases, refunds, sign-ups, logins,
#: identify (attributes), e-mail and support events (config/events.toml).
TRUSTED_EVENT_TYPES = frozenset(n for n, t in _BUILTIN_TYPES.items() if t.trusted)


def builtin_event_types() -> Mapping[str, EventType]:
    """Every built-in event type (config/events.toml), by name."""
    return _BUILTIN_TYPES


@dataclass
class EventCatalog:
    """The event types of one site: built-ins plus the schema's custom events."""

    schema: Schema
    types: dict[str, EventType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.types = dict(_BUILTIN_TYPES)
        for ev in self.schema.events:
            if ev.name in self.types:
                continue
            ops = [OpSpec(Opcode.ADD, ev.count_attr, 1.0), OpSpec(Opcode.MAX, ev.at_attr, "ts")]
            if ev.window:
                ops.insert(1, OpSpec(Opcode.WINDOW_ADD, ev.count_attr, 1.0))
            self.types[ev.name] = EventType(ev.name, {}, tuple(ops))
        layout = self.schema.layout
        for et in self.types.values():  # the config must name real attributes
            for op in et.ops:
                if op.attr not in layout:
                    raise ValueError(f"event {et.name}: unknown attribute {op.attr!r}")
        self._steps: dict[str, tuple[Step, ...]] = {}

    def steps(self, type_: str) -> tuple[Step, ...]:
        """An event type's ops with their byte offsets and flags resolved once (the
        layout lookups cost more than the rest of planning a page view's event)."""
        found = self._steps.get(type_)
        if found is None:
            layout = self.schema.layout
            out = []
            for spec in self.types[type_].ops:
                attr = layout[spec.attr]
                offset = attr.offset
                if spec.opcode is Opcode.WINDOW_ADD:
                    assert attr.window is not None, attr.name
                    offset = attr.window
                out.append((spec.opcode, offset, FLAG_WHEN_GAP if spec.when_gap else 0, spec))
            found = self._steps[type_] = tuple(out)
        return found


# --- validation -------------------------------------------------------------------


def parse_time(value: Any, path: str) -> float:
    """Epoch seconds from a number or an ISO 8601 string with a UTC offset."""
    if isinstance(value, bool):
        raise ValidationError(f"{path}: must be epoch seconds or an ISO 8601 time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValidationError(f"{path}: must be a finite number")
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"{path}: {value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise ValidationError(f"{path}: {value!r} needs a UTC offset (e.g. Z or +02:00)")
        return parsed.timestamp()
    raise ValidationError(f"{path}: must be epoch seconds or an ISO 8601 time")


def parse_date(value: Any, path: str) -> float:
    """Epoch seconds of 00:00 UTC of a YYYY-MM-DD date."""
    if not isinstance(value, str):
        raise ValidationError(f"{path}: must be a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{path}: {value!r} is not a date YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _string(value: Any, path: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{path}: must be a string")
    if len(value) > limits.max_string_length:
        raise ValidationError(
            f"{path}: longer than {limits.max_string_length} characters", code="too_long"
        )
    return value


def _check_any(value: Any, path: str, limits: Limits, depth: int = 0) -> None:
    """Undeclared properties are not stored, but still must be sane JSON."""
    if depth > 4:
        raise ValidationError(f"{path}: nested too deeply")
    if isinstance(value, str):
        _string(value, path, limits)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{path}: must be a finite number")
    elif isinstance(value, list):
        if len(value) > _LIST_MAX:
            raise ValidationError(f"{path}: more than {_LIST_MAX} items")
        for i, item in enumerate(value):
            _check_any(item, f"{path}[{i}]", limits, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_any(item, f"{path}.{key}", limits, depth + 1)


def _check_property(value: Any, spec: Mapping[str, Any], path: str, limits: Limits) -> Any:
    kind = spec["type"]
    if kind == "string":
        return _string(value, path, limits)
    if kind == "product_id":
        return check_product_id(value, path)
    if kind == "items":
        return check_items(value, path)
    if kind in ("number", "integer"):
        amount = number(value, path)
        if kind == "integer" and not amount.is_integer():
            raise ValidationError(f"{path}: must be a whole number")
        return bounded(amount, spec, path)
    if kind == "timestamp":
        return parse_time(value, path)
    if not isinstance(value, list):  # "list"
        raise ValidationError(f"{path}: must be a list")
    _check_any(value, path, limits)
    return value


def validate_event(
    raw: Any,
    path: str,
    catalog: EventCatalog,
    limits: Limits,
    now: float,
    visitor_id: str | None = None,
    trusted: bool = True,
) -> Event:
    """Check one event (`path` prefixes every message); raise ValidationError. With
    `trusted` False (a public site key), trusted event types are refused."""
    if not isinstance(raw, dict):
        raise ValidationError(f"{path}: must be an object")
    vid = (
        visitor_id
        if visitor_id is not None
        else check_visitor_id(raw.get("visitor_id"), f"{path}.visitor_id")
    )
    etype = raw.get("type")
    if not isinstance(etype, str) or etype not in catalog.types:
        raise ValidationError(
            f"{path}.type: unknown event type {etype!r}", code="unknown_event_type"
        )
    if not trusted and catalog.types[etype].trusted:
        raise ValidationError(
            f"{path}.type: {etype!r} events need the site's server key "
            "(Authorization: Bearer <server key>); a public site key cannot send them",
            code=SERVER_KEY_REQUIRED,
        )
    ts = now if raw.get("ts") is None else parse_time(raw["ts"], f"{path}.ts")
    if ts > now + limits.max_event_skew_seconds:
        raise ValidationError(f"{path}.ts: is in the future", code="invalid_time")
    if ts < now - limits.max_event_age_seconds:
        raise ValidationError(f"{path}.ts: is too far in the past", code="invalid_time")
    event_id = raw.get("event_id")
    if event_id is not None and (
        not isinstance(event_id, str)
        or not 1 <= len(event_id) <= _EVENT_ID_MAX
        or not event_id.isprintable()
    ):
        raise ValidationError(f"{path}.event_id: must be 1-{_EVENT_ID_MAX} printable characters")
    props = raw.get("properties", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise ValidationError(f"{path}.properties: must be an object")
    unknown = set(raw) - {"visitor_id", "type", "ts", "event_id", "properties"}
    if unknown:
        raise ValidationError(f"{path}.{sorted(unknown)[0]}: unknown field")
    spec = catalog.types[etype]
    checked: dict[str, Any] = {}
    if etype == "identify":
        checked = _check_identify(props, f"{path}.properties", catalog, limits)
    else:
        for name, pspec in spec.properties.items():
            if props.get(name) is not None:
                checked[name] = _check_property(
                    props[name], pspec, f"{path}.properties.{name}", limits
                )
            elif pspec.get("required"):
                raise ValidationError(f"{path}.properties.{name}: is required")
            elif pspec.get("default") is not None:  # e.g. a cart line's quantity: 1
                checked[name] = pspec["default"]
        for name, value in props.items():
            if name not in spec.properties:
                _check_any(value, f"{path}.properties.{name}", limits)
        check_products(spec.ops, checked, f"{path}.properties")
    return Event(vid, etype, ts, event_id, checked)


def _check_identify(
    props: Mapping[str, Any], path: str, catalog: EventCatalog, limits: Limits
) -> dict[str, Any]:
    layout = catalog.schema.layout
    out: dict[str, Any] = {}
    for name, value in props.items():
        where = f"{path}.{name}"
        if name not in layout:
            raise ValidationError(f"{where}: unknown attribute (declare it in the site schema)")
        attr = layout[name]
        if not attr.settable:
            raise ValidationError(f"{where}: is maintained by events and cannot be set")
        if value is None:
            out[name] = None
        elif attr.kind is Kind.NUMBER:
            out[name] = number(value, where)
        elif attr.kind is Kind.TIMESTAMP:
            out[name] = parse_time(value, where)
        elif attr.kind is Kind.DATE:
            out[name] = parse_date(value, where)
        elif attr.kind is Kind.FLAG:
            if not isinstance(value, bool):
                raise ValidationError(f"{where}: must be true or false")
            out[name] = 1.0 if value else 0.0
        elif attr.kind is Kind.CATEGORY:
            out[name] = _string(value, where, limits) or None
        else:
            out[name] = _check_tags(value, where, attr, limits)
    return out


def _check_tags(value: Any, where: str, attr: Attribute, limits: Limits) -> dict[str, list[str]]:
    """Tags: a list (the whole set) or {"add": [...], "remove": [...]}."""
    if isinstance(value, list):
        value = {"set": value}
    if not isinstance(value, dict) or not set(value) <= {"set", "add", "remove"}:
        raise ValidationError(f"{where}: must be a list of tags or {{add, remove}}")
    out: dict[str, list[str]] = {}
    for key, tags in value.items():
        if not isinstance(tags, list):
            raise ValidationError(f"{where}.{key}: must be a list of strings")
        if key != "remove" and len(tags) > attr.slots:
            raise ValidationError(f"{where}.{key}: at most {attr.slots} tags")
        out[key] = [_string(t, f"{where}.{key}[{i}]", limits) for i, t in enumerate(tags)]
    return out


# --- compilation ------------------------------------------------------------------


@dataclass
class Plan:
    """An event's ops; ops whose value is a string wait for its dictionary code."""

    ops: list[tuple[Op, tuple[str, str] | None]] = field(default_factory=list)

    def strings(self) -> Iterable[tuple[str, str]]:
        return (s for _, s in self.ops if s is not None)

    def pack(self, code_of: Callable[[str, str], int]) -> bytes:
        resolved = []
        for op, string in self.ops:
            if string is None:
                resolved.append(op)
                continue
            value = float(code_of(*string))
            if op.opcode in (Opcode.TAG_ADD, Opcode.TAG_REMOVE):
                resolved.append(Op(op.opcode, op.offset, op.a, value, op.flags))
            else:
                resolved.append(Op(op.opcode, op.offset, value, op.b, op.flags))
        return pack_ops(resolved)


def _resolve(spec: OpSpec, event: Event) -> float | str | None:
    if spec.value is None or isinstance(spec.value, float):
        return spec.value
    if spec.value == "ts":
        return event.ts
    result: float | str | None = 1.0
    for part in spec.value.split("*"):
        prop = event.properties.get(part.removeprefix("prop:"))
        if prop is None:
            return spec.default
        if isinstance(prop, str):
            return prop  # a string property goes to a category attribute
        result = float(prop) * float(result)  # type: ignore[arg-type]
    return result


def plan_ops(event: Event, catalog: EventCatalog, limits: Limits) -> Plan:
    plan = Plan()
    ops = plan.ops
    if event.type == "identify":
        _plan_identify(event, catalog.schema.layout, plan)
    ts = event.ts
    for opcode, offset, flags, spec in catalog.steps(event.type):
        if opcode is Opcode.CHECK_GAP:
            ops.append((Op(opcode, offset, ts, limits.session_gap_seconds, flags), None))
            continue
        given = spec.value  # constants and the event time inline: most ops of a page view
        value = given if given is None or given.__class__ is float else (
            ts if given == "ts" else _resolve(spec, event))  # fmt: skip
        if value is None or value == "":  # an empty string is no value
            continue
        if opcode is Opcode.WINDOW_ADD:
            ops.append((Op(opcode, offset, float(ts // DAY_SECONDS), float(value), flags), None))
        elif isinstance(value, str):
            ops.append((Op(opcode, offset, 0.0, 0.0, flags), (spec.attr, value)))
        else:
            ops.append((Op(opcode, offset, value, 0.0, flags), None))
    return plan


def _plan_identify(event: Event, layout: Any, plan: Plan) -> None:
    for name, value in event.properties.items():
        attr: Attribute = layout[name]
        if attr.kind is Kind.TAGS:
            slots = float(attr.slots)
            if value is None or "set" in value:
                plan.ops.append((Op(Opcode.TAG_CLEAR, attr.offset, slots), None))
            for key, opcode in (
                ("set", Opcode.TAG_ADD),
                ("add", Opcode.TAG_ADD),
                ("remove", Opcode.TAG_REMOVE),
            ):
                for tag in (value or {}).get(key, []):
                    plan.ops.append((Op(opcode, attr.offset, slots), (name, tag)))
        elif value is None:
            plan.ops.append((Op(Opcode.UNSET, attr.offset), None))
        elif isinstance(value, str):
            plan.ops.append((Op(Opcode.SET, attr.offset), (name, value)))
        else:
            plan.ops.append((Op(Opcode.SET, attr.offset, value), None))


def is_custom_event_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))
