"""Who is calling (DESIGN.md "Trust boundaries"), pure: roles, the admin principal,
the format of secrets and their constant-time checks. No I/O.

Credentials:
* site key `sk_<site>_<32 hex>`: public (in every page); behavioural events and the
  visitor's own page view.
* server key `srv_<site>_<64 hex>`: the site's secret for its shop back end (every
  event type, identify, attributes, reading a visitor's segments). Stored as SHA-256.
* admin tokens: the root token (settings.admin_token) may do everything; a per-site
  token `sat_<site>.<12 hex id>.<64 hex secret>` has one role on one site, stored as
  SHA-256 of the secret, created and revoked through the admin API.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Each role may do what the ones below it may."""

    VIEWER = 1  # read everything of its site, change nothing
    EDITOR = 2  # change the catalogue: segments, content, placements, campaigns, triggers
    ADMIN = 3  # the site itself: keys, tokens, settings, erasing visitors
    ROOT = 4  # every site, creating sites (settings.admin_token only)

    @property
    def label(self) -> str:
        return self.name.lower()


SITE_ROLES = (Role.VIEWER, Role.EDITOR, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated admin caller: root (site None) or a per-site token."""

    role: Role
    site: str | None = None
    token_id: str | None = None

    def may(self, role: Role, site: str | None) -> bool:
        """May this caller act with `role` on `site`? Without a site (None) a site's
        token may only read what is filtered to its own site (whoami, the site list)."""
        if self.role is Role.ROOT:
            return True
        if site is None:
            return role is Role.VIEWER
        return site == self.site and self.role >= role


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings."""
    return hmac.compare_digest(a.encode(), b.encode())


_SERVER_KEY = re.compile(r"srv_([a-z0-9][a-z0-9-]{0,62})_[0-9a-f]{64}")
_ADMIN_TOKEN = re.compile(r"sat_([a-z0-9][a-z0-9-]{0,62})\.([0-9a-f]{12})\.[0-9a-f]{64}")


def new_server_key(site: str) -> str:
    return f"srv_{site}_{secrets.token_hex(32)}"


def site_of_server_key(key: str) -> str | None:
    match = _SERVER_KEY.fullmatch(key)
    return match.group(1) if match else None


def new_admin_token(site: str) -> tuple[str, str]:
    """(token id, token)."""
    token_id = secrets.token_hex(6)
    return token_id, f"sat_{site}.{token_id}.{secrets.token_hex(32)}"


def parse_admin_token(token: str) -> tuple[str, str] | None:
    """(site, token id) of a per-site admin token, or None if it is not one."""
    match = _ADMIN_TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def bearer(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, given = header.partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None
