"""The profile schema: built-in and declared attributes, and the feature vector layout.

The layout places every attribute in the float64 **feature vector** the engine's
kernels read (engine/abi.py), fixed and little-endian:

    offset 0   header, 4 × float64: FORMAT, VERSION (event batches applied),
               ORDINAL (dense per-shard number), IDHASH (32-bit hash of the visitor id)
    then       one float64 slot per scalar attribute (tags: `tag_slots` slots of
               dictionary codes), in declaration order; NaN = missing
    and        for each windowed attribute, a daily window block of 36 × float32:
               [head_day, 35 ring slots]; the slot of day d is d % 35, valid when
               head_day - 35 < d <= head_day (days since the Unix epoch, UTC)

Every offset is a multiple of 8, so one float64 view addresses every scalar by
`offset // 8` and a float32 view every window slot by `offset // 4`.

Stored profiles (format 2, segserver/profile/packed.py) keep only the slots a visitor
has and are decoded into this vector; format 1 stored the vector itself (1,272 bytes
for the demo site whatever the visitor did) and still decodes.

The layout is append-only: attributes a site declares later are appended, so a
vector of an older schema is a prefix of the new one; readers pad it with
`Layout.template` (missing scalars NaN, empty windows).
"""

from __future__ import annotations

import enum
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.errors import ValidationError

FORMAT = 1.0
HEADER_SLOTS = 4
H_FORMAT, H_VERSION, H_ORDINAL, H_IDHASH = range(HEADER_SLOTS)
HEADER_BYTES = HEADER_SLOTS * 8
WINDOW_DAYS = 35
WINDOW_BYTES = (WINDOW_DAYS + 1) * 4  # head_day + ring, float32
DAY_SECONDS = 86400

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Kind(enum.StrEnum):
    NUMBER = "number"  # float64
    TIMESTAMP = "timestamp"  # epoch seconds, UTC
    DATE = "date"  # epoch seconds of 00:00 UTC of the day (birthday)
    CATEGORY = "category"  # dictionary code of a string
    FLAG = "flag"  # 0 or 1
    TAGS = "tags"  # `tag_slots` dictionary codes, NaN = empty slot


#: Kinds whose values are strings encoded with the site's dictionary.
STRING_KINDS = frozenset({Kind.CATEGORY, Kind.TAGS})


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """A declared attribute: name, kind, and whether a daily window is kept."""

    name: str
    kind: Kind
    window: bool = False
    settable: bool = True  # may `identify` set it directly?
    builtin: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind.value, "window": self.window}


def _b(name: str, kind: Kind, *, window: bool = False, settable: bool = False) -> AttributeSpec:
    return AttributeSpec(name, kind, window=window, settable=settable, builtin=True)


N, T, D, C, F, G = Kind.NUMBER, Kind.TIMESTAMP, Kind.DATE, Kind.CATEGORY, Kind.FLAG, Kind.TAGS

#: Built-in attributes, in layout order. Never reorder or remove: append only.
BUILTIN_ATTRIBUTES: tuple[AttributeSpec, ...] = (
    _b("first_seen", T),
    _b("last_seen", T),
    _b("sessions", N, window=True),
    _b("page_views", N, window=True),
    _b("product_views", N, window=True),
    _b("cart_items", N),
    _b("cart_value", N),
    _b("cart_updated_at", T),
    _b("checkout_started_at", T),
    _b("orders", N, window=True),
    _b("total_spent", N, window=True),
    _b("first_order_at", T),
    _b("last_order_at", T),
    _b("refunds", N),
    _b("refunded_total", N),
    _b("email_opens", N),
    _b("email_clicks", N),
    _b("emails_received", N),
    _b("last_email_open_at", T),
    _b("last_email_click_at", T),
    _b("support_tickets", N),
    _b("signup_at", T, settable=True),
    _b("last_login_at", T),
    _b("identified", F, settable=True),
    _b("birthday", D, settable=True),
    _b("country", C, settable=True),
    _b("region", C, settable=True),
    _b("device", C, settable=True),
    _b("language", C, settable=True),
    _b("source", C, settable=True),
    _b("utm_source", C),
    _b("utm_medium", C),
    _b("utm_campaign", C),
    _b("lifecycle_stage", C, settable=True),
    _b("last_product_category", C),
    _b("tags", G, settable=True),
)
BUILTIN_NAMES = frozenset(a.name for a in BUILTIN_ATTRIBUTES)


@dataclass(frozen=True, slots=True)
class Attribute:
    """An attribute placed in the layout."""

    name: str
    kind: Kind
    offset: int  # byte offset of its first float64 slot
    slots: int  # 1, or tag_slots for tags
    window: int | None  # byte offset of its window block, or None
    builtin: bool
    settable: bool

    @property
    def index(self) -> int:
        """Index of the first slot in a float64 view of the profile."""
        return self.offset // 8

    @property
    def window_index(self) -> int | None:
        """Index of the window block's head_day in a float32 view of the profile."""
        return None if self.window is None else self.window // 4


@dataclass(frozen=True, slots=True)
class CustomEventSpec:
    """A site's own event type: counts into `<name>_count`, stamps `<name>_at`."""

    name: str
    window: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "window": self.window}

    @property
    def count_attr(self) -> str:
        return f"{self.name}_count"

    @property
    def at_attr(self) -> str:
        return f"{self.name}_at"


@dataclass(frozen=True)
class Schema:
    """A site's declared profile schema: custom attributes and custom events."""

    attributes: tuple[AttributeSpec, ...] = ()
    events: tuple[CustomEventSpec, ...] = ()
    tag_slots: int = 8

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, *, tag_slots: int = 8) -> Schema:
        """Validate a schema as the admin API takes it; raise ValidationError naming the path."""
        data = data or {}
        if not isinstance(data, Mapping):
            raise ValidationError("schema: must be an object")
        unknown = set(data) - {"attributes", "events"}
        if unknown:
            raise ValidationError(f"schema: unknown field {sorted(unknown)[0]!r}")
        attrs = [
            _attr_from_json(item, f"schema.attributes[{i}]")
            for i, item in enumerate(_list(data.get("attributes", []), "schema.attributes"))
        ]
        events = [
            _event_from_json(item, f"schema.events[{i}]")
            for i, item in enumerate(_list(data.get("events", []), "schema.events"))
        ]
        schema = cls(tuple(attrs), tuple(events), tag_slots)
        schema.layout  # noqa: B018 - builds the layout, raising on duplicate names
        return schema

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": [a.to_json() for a in self.attributes],
            "events": [e.to_json() for e in self.events],
        }

    def declared(self) -> Iterable[AttributeSpec]:
        """Every attribute in layout order: built-ins, then declarations in order."""
        yield from BUILTIN_ATTRIBUTES
        yield from self.attributes
        for ev in self.events:
            yield AttributeSpec(ev.count_attr, Kind.NUMBER, window=ev.window, settable=False)
            yield AttributeSpec(ev.at_attr, Kind.TIMESTAMP, settable=False)

    @cached_property
    def layout(self) -> Layout:
        return Layout.build(self.declared(), self.tag_slots)

    def check_extends(self, old: Schema) -> None:
        """A schema change may only append: raise ValidationError otherwise."""
        if self.attributes[: len(old.attributes)] != old.attributes:
            raise ValidationError(
                "schema.attributes: declared attributes can only be appended, "
                "never changed, reordered or removed"
            )
        if self.events[: len(old.events)] != old.events:
            raise ValidationError(
                "schema.events: declared events can only be appended, "
                "never changed, reordered or removed"
            )


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(f"{path}: must be a list")
    return value


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValidationError(
            f"{path}: {value!r} is not a valid name (a-z, 0-9, _; starting with a letter)"
        )
    return value


def _attr_from_json(item: Any, path: str) -> AttributeSpec:
    if not isinstance(item, Mapping):
        raise ValidationError(f"{path}: must be an object")
    name = _name(item.get("name"), f"{path}.name")
    if name in BUILTIN_NAMES:
        raise ValidationError(f"{path}.name: {name!r} is a built-in attribute")
    try:
        kind = Kind(str(item.get("kind")))
    except ValueError:
        kinds = ", ".join(k.value for k in Kind)
        raise ValidationError(f"{path}.kind: {item.get('kind')!r} is not one of {kinds}") from None
    window = item.get("window", False)
    if not isinstance(window, bool):
        raise ValidationError(f"{path}.window: must be true or false")
    if window and kind is not Kind.NUMBER:
        raise ValidationError(f"{path}.window: only number attributes keep a daily window")
    return AttributeSpec(name, kind, window=window, settable=True)


def _event_from_json(item: Any, path: str) -> CustomEventSpec:
    if not isinstance(item, Mapping):
        raise ValidationError(f"{path}: must be an object")
    name = _name(item.get("name"), f"{path}.name")
    window = item.get("window", False)
    if not isinstance(window, bool):
        raise ValidationError(f"{path}.window: must be true or false")
    return CustomEventSpec(name, window)


@dataclass(frozen=True)
class Layout:
    """Byte offsets of every attribute, the total size and the empty-profile template."""

    attributes: Mapping[str, Attribute]
    size: int
    tag_slots: int
    windowed: tuple[str, ...] = field(default=())

    @classmethod
    def build(cls, specs: Iterable[AttributeSpec], tag_slots: int) -> Layout:
        attrs: dict[str, Attribute] = {}
        offset = HEADER_BYTES
        for spec in specs:
            if spec.name in attrs:
                raise ValidationError(f"schema: attribute {spec.name!r} is declared twice")
            slots = tag_slots if spec.kind is Kind.TAGS else 1
            at = offset
            offset += 8 * slots
            window = None
            if spec.window:
                window = offset
                offset += WINDOW_BYTES
            attrs[spec.name] = Attribute(
                spec.name, spec.kind, at, slots, window, spec.builtin, spec.settable
            )
        windowed = tuple(a.name for a in attrs.values() if a.window is not None)
        return cls(attrs, offset, tag_slots, windowed)

    def __getitem__(self, name: str) -> Attribute:
        return self.attributes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.attributes

    @cached_property
    def template(self) -> bytes:
        """The feature vector (as bytes) of a profile nobody has written to: scalars
        NaN, windows empty."""
        buf = bytearray(self.size)
        struct.pack_into("<dddd", buf, 0, FORMAT, 0.0, math.nan, math.nan)
        nan = struct.pack("<d", math.nan)
        for attr in self.attributes.values():
            for i in range(attr.slots):
                buf[attr.offset + 8 * i : attr.offset + 8 * i + 8] = nan
            # window blocks stay zero: head_day 0, every day counted 0
        return bytes(buf)

    def pad(self, blob: bytes) -> bytes:
        """Extend a feature vector of an older (shorter) layout to this one."""
        if len(blob) >= self.size:
            return blob
        return blob + self.template[len(blob) :]

    @cached_property
    def features_template(self) -> npt.NDArray[np.float64]:
        """`template` as a read-only float64 vector (what decoding starts from)."""
        return np.frombuffer(self.template, np.float64)

    @cached_property
    def slot_kinds(self) -> npt.NDArray[np.uint8]:
        """Per float64 slot: 1 a scalar, 2 the start of a window block, 0 otherwise."""
        kinds = np.zeros(self.size // 8, np.uint8)
        for attr in self.attributes.values():
            kinds[attr.index : attr.index + attr.slots] = 1
            if attr.window is not None:
                kinds[attr.window // 8] = 2
        kinds.flags.writeable = False
        return kinds

    @cached_property
    def window_slots(self) -> bytes:
        """The float64 slots where window blocks start, as "7,26,..." (lua/apply_events.lua
        needs them to read a format-1 profile)."""
        return ",".join(str(a.window // 8) for a in self.attributes.values()
                        if a.window is not None).encode()  # fmt: skip
