"""Decision tokens: what impression / click / dismiss / conversion events carry.

A token is `<base64url JSON>.<base64url 12-byte HMAC-SHA256>` over [site, campaign,
variant, placement, visitor, issued, expires]; the MAC part is also its id (feedback
is counted once per token and kind, lua/finish_visitor.lua). The key is its own secret
(settings.token_secret, or generated into the data directory), never derived from an
admin credential: tokens are public, so anything they are keyed with can be attacked
offline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from segserver.decide.policy import Decision

#: How long a token counts feedback unless the caller says (decision_token_ttl_seconds).
TOKEN_TTL = 30 * 86400


def make_token(secret: bytes, site: str, decision: Decision, visitor_id: str, now: float,
               ttl: float = TOKEN_TTL) -> str:  # fmt: skip
    """An opaque, signed reference to one served decision, counting feedback until
    `now + ttl`."""
    body = base64.urlsafe_b64encode(orjson.dumps(
        [site, decision.campaign, decision.variant, decision.placement, visitor_id, int(now),
         int(now + ttl)]
    )).rstrip(b"=")  # fmt: skip
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:12]
    return f"{body.decode()}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def read_token(secret: bytes, token: str) -> dict[str, Any] | None:
    """The decision a token names (with `id`, its MAC), or None if it is malformed or
    not signed by us. Expiry is the caller's: `expires` (epoch seconds)."""
    body, _, mac = token.partition(".")
    try:
        want = base64.urlsafe_b64encode(hmac.new(secret, body.encode(), hashlib.sha256)
                                        .digest()[:12]).rstrip(b"=").decode()  # fmt: skip
        if not hmac.compare_digest(want, mac):
            return None
        site, campaign, variant, placement, visitor, issued, expires = orjson.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # fmt: skip
    except (ValueError, TypeError):
        return None
    return {"site": site, "campaign": campaign, "variant": variant, "placement": placement,
            "visitor_id": visitor, "issued": issued, "expires": expires, "id": mac}  # fmt: skip
