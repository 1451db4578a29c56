"""Decision tokens: what impression / click / dismiss / conversion events carry."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from segserver.decide.policy import Decision


def make_token(secret: bytes, site: str, decision: Decision, visitor_id: str, now: float) -> str:
    """An opaque, signed reference to one served decision (no expiry: cached decisions
    are reported for as long as the SDK shows them)."""
    body = base64.urlsafe_b64encode(orjson.dumps(
        [site, decision.campaign, decision.variant, decision.placement, visitor_id, int(now)]
    )).rstrip(b"=")  # fmt: skip
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:12]
    return f"{body.decode()}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def read_token(secret: bytes, token: str) -> dict[str, Any] | None:
    """The decision a token names, or None if it is malformed or not signed by us."""
    body, _, mac = token.partition(".")
    try:
        want = base64.urlsafe_b64encode(hmac.new(secret, body.encode(), hashlib.sha256)
                                        .digest()[:12]).rstrip(b"=").decode()  # fmt: skip
        if not hmac.compare_digest(want, mac):
            return None
        site, campaign, variant, placement, visitor, issued = orjson.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # fmt: skip
    except (ValueError, TypeError):
        return None
    return {"site": site, "campaign": campaign, "variant": variant, "placement": placement,
            "visitor_id": visitor, "issued": issued}  # fmt: skip
