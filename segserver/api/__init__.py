"""The HTTP contract as pydantic models: they validate request bodies (`validate`)
and the OpenAPI document (segserver.http.openapi) is generated from them, so the
spec cannot drift from what the server accepts. Nothing here knows aiohttp.

Models describe shape (types, ranges, unknown fields); what needs the catalogue
(rules compile, references exist, versions match) is checked by the services after.
The page view's body is the exception on the hot path: `PageViewRequest.parse` checks
it by hand (2.0 µs against 4.5 µs for the model on a 3-event body, then each event
is checked against the site's event types anyway) and the model only describes it;
tests/unit/test_api_models.py holds the two to agree on generated bodies.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic

from segserver.errors import ValidationError

M = TypeVar("M", bound=pydantic.BaseModel)

_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "finite_number": "must be a finite number",
}


def path_of(loc: tuple[int | str, ...]) -> str:
    """`("events", 2, "properties", "value")` → `events[2].properties.value`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        elif "[" in part or "-" in part or part.startswith("function-"):
            continue  # a union member's tag, not a field
        else:
            out += f".{part}"
    return out or "body"


def describe(err: Any) -> str:
    """One pydantic error as `<field path>: <what it must be>`."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _MESSAGES:
        msg = _MESSAGES[kind]
    elif kind == "string_pattern_mismatch":
        msg = f"must match {ctx.get('pattern')}"
    elif kind in ("too_long", "too_short"):
        what = "characters" if isinstance(err.get("input"), str) else "items"
        most = ctx.get("max_length") if kind == "too_long" else ctx.get("min_length")
        msg = f"must have {'at most' if kind == 'too_long' else 'at least'} {most} {what}"
    elif kind == "string_too_long":
        msg = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "string_too_short":
        msg = f"must be at least {ctx.get('min_length')} characters"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than_equal": "at least", "greater_than": "more than",
                "less_than_equal": "at most", "less_than": "less than"}[kind]  # fmt: skip
        msg = f"must be {word} {bound}"
    elif kind in ("literal_error", "enum"):
        msg = f"must be {ctx.get('expected')}"
    else:
        msg = str(err.get("msg", "is invalid")).lower().removeprefix("value error, ")
    return f"{path_of(tuple(err['loc']))}: {msg}"


def validate(model: type[M], body: Any) -> M:
    """`body` as `model`, or a ValidationError (400) whose message names the first bad
    field; every problem is in `details.errors`."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        problems = [describe(e) for e in exc.errors(include_url=False)]
        raise ValidationError(problems[0], details={"errors": problems[:20]}) from None
