"""Bounds on what events carry (docs/security.md "Hostile input"): numbers finite
and in range, product ids of a safe charset (they are shown to other visitors in
recommendations), purchase items. Every message names the field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from segserver.errors import ValidationError

#: Product ids reach other visitors (recommendations): a conservative charset, so no
#: markup or formula can travel through them (docs/security.md).
PRODUCT_ID_RE = re.compile(r"[A-Za-z0-9_.:/+-]{1,128}")
ITEMS_MAX = 100
QUANTITY_MAX = 10_000.0
PRICE_MAX = 1e9


def number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{path}: must be a number")
    if not math.isfinite(value):
        raise ValidationError(f"{path}: must be a finite number")
    return float(value)


def bounded(value: float, spec: Mapping[str, Any], path: str) -> float:
    if "min" in spec and value < spec["min"]:
        raise ValidationError(f"{path}: must be at least {spec['min']:g}")
    if "max" in spec and value > spec["max"]:
        raise ValidationError(f"{path}: must be at most {spec['max']:g}", code="out_of_range")
    return value


def check_product_id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not PRODUCT_ID_RE.fullmatch(value):
        raise ValidationError(f"{path}: must be a product id: 1-128 of A-Z a-z 0-9 _ . : / + -",
                              code="invalid_product_id")  # fmt: skip
    return value


def check_items(value: Any, path: str) -> list[Any]:
    """A purchase's items: product ids or {product_id (or id), quantity?, price?}."""
    if not isinstance(value, list) or len(value) > ITEMS_MAX:
        raise ValidationError(f"{path}: must be a list of at most {ITEMS_MAX} items")
    out: list[Any] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            out.append(check_product_id(item, where))
            continue
        if not isinstance(item, dict):
            raise ValidationError(f"{where}: must be a product id or an object")
        unknown = set(item) - {"product_id", "id", "quantity", "price"}
        if unknown:
            raise ValidationError(f"{where}.{sorted(unknown)[0]}: unknown field")
        name = "product_id" if "product_id" in item else "id"
        checked: dict[str, Any] = {"product_id": check_product_id(item.get(name),
                                                                  f"{where}.{name}")}  # fmt: skip
        for field_, most in (("quantity", QUANTITY_MAX), ("price", PRICE_MAX)):
            if item.get(field_) is not None:
                at = f"{where}.{field_}"
                checked[field_] = bounded(number(item[field_], at), {"min": 0, "max": most}, at)
        out.append(checked)
    return out


def check_products(ops: Sequence[Any], props: Mapping[str, Any], path: str) -> None:
    """Every product of properties an op multiplies ("prop:a*prop:b") is finite:
    bounds make it so for the built-in types; this keeps a custom config honest."""
    for op in ops:
        if not isinstance(op.value, str) or "*" not in op.value:
            continue
        result = 1.0
        for part in op.value.split("*"):
            prop = props.get(part.removeprefix("prop:"))
            if not isinstance(prop, float):
                break
            result *= prop
        if not math.isfinite(result):
            raise ValidationError(f"{path}: {op.value.replace('prop:', '')} is not a finite "
                                  "number", code="out_of_range")  # fmt: skip
