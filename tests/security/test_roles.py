"""Admin tokens with roles: a viewer reads everything of its site and changes nothing,
an editor changes the catalogue, a site admin also keys and tokens; a site's token
never reaches another site; tokens are stored hashed and revocable; configured
secrets have a minimum strength."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from segserver.config import load_settings
from segserver.errors import ConfigError
from tests.conftest import ADMIN_TOKEN, admin_headers
from tests.security.helpers import Client, admin_post, make_site

BASE = "/v1/admin/sites/shop"


async def token(client: Client, role: str, site: str = "shop") -> dict[str, str]:
    made = await admin_post(client, f"/v1/admin/sites/{site}/tokens",
                            {"name": f"{role} token", "role": role})  # fmt: skip
    assert made["role"] == role and made["token"].startswith(f"sat_{site}.")
    return {"Authorization": f"Bearer {made['token']}"}


async def status(client: Client, method: str, path: str, headers: dict[str, str],
                 body: Any = None) -> int:  # fmt: skip
    resp = await client.request(method, path, headers=headers, json=body)
    return resp.status


async def test_each_role_may_do_what_it_should(client: Client, site: dict[str, Any]) -> None:
    await make_site(client, "other", prebuilt=False)
    viewer, editor, admin = [await token(client, r) for r in ("viewer", "editor", "admin")]
    seg = {"id": "s1", "rule": {"attr": "orders", "op": "gt", "value": 0}}
    # a viewer reads everything of its site ...
    for path in ("", "/segments", "/campaigns", "/triggers", "/jobs"):
        assert await status(client, "GET", BASE + path, viewer) == 200, path
    who = await (await client.get("/v1/admin/whoami", headers=viewer)).json()
    assert (who["role"], who["site"]) == ("viewer", "shop")
    preview = {"rule": {"attr": "orders", "op": "gt", "value": 0}}
    assert await status(client, "POST", f"{BASE}/segments/preview", viewer, preview) == 200
    # ... and changes nothing
    assert await status(client, "POST", f"{BASE}/segments", viewer, seg) == 403
    query = {"expression": "everyone", "save_as": {"id": "x"}}
    assert await status(client, "POST", f"{BASE}/segments/query", viewer, query) == 403
    assert await status(client, "DELETE", f"{BASE}/visitors/v", viewer) == 403
    # an editor changes the catalogue, not the site's keys or tokens
    assert await status(client, "POST", f"{BASE}/segments", editor, seg) == 201
    assert await status(client, "POST", f"{BASE}/rotate-server-key", editor) == 403
    assert await status(client, "GET", f"{BASE}/tokens", editor) == 403
    # a site admin manages keys and tokens of its site
    assert await status(client, "POST", f"{BASE}/rotate-server-key", admin) == 200
    assert await status(client, "GET", f"{BASE}/tokens", admin) == 200
    # no site token reaches another site or creates sites
    for headers in (viewer, editor, admin):
        assert await status(client, "GET", "/v1/admin/sites/other", headers) == 403
        assert await status(client, "POST", "/v1/admin/sites", headers, {"id": "x"}) == 403
        listed = await (await client.get("/v1/admin/sites", headers=headers)).json()
        assert listed == {"sites": ["shop"]}
    resp = await client.get("/v1/admin/sites/other/segments", headers=editor)
    assert (await resp.json())["error"]["code"] == "insufficient_role"


async def test_tokens_are_hashed_listed_and_revocable(
    client: Client, site: dict[str, Any], settings: Any
) -> None:
    made = await admin_post(client, f"{BASE}/tokens", {"name": "ci", "role": "editor"})
    secret = made["token"]
    with redis.Redis.from_url(settings.redis_url) as r:
        stored = b"".join(r.dump(k) or b"" for k in r.scan_iter(f"{settings.key_prefix}:*"))
    assert secret.split(".")[-1].encode() not in stored
    listed = await (await client.get(f"{BASE}/tokens", headers=admin_headers())).json()
    assert [t["id"] for t in listed["tokens"]] == [made["id"]]
    assert "token" not in listed["tokens"][0] and "hash" not in listed["tokens"][0]
    headers = {"Authorization": f"Bearer {secret}"}
    assert await status(client, "GET", BASE, headers) == 200
    assert await status(client, "DELETE", f"{BASE}/tokens/{made['id']}", admin_headers()) == 204
    resp = await client.get(BASE, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_admin_token"
    forged = {"Authorization": f"Bearer sat_shop.{made['id']}.{'0' * 64}"}
    assert await status(client, "GET", BASE, forged) == 401


async def test_the_server_key_is_shown_once(client: Client, site: dict[str, Any]) -> None:
    assert site["server_key"].startswith("srv_shop_") and site["has_server_key"]
    read = await (await client.get(BASE, headers=admin_headers())).json()
    assert "server_key" not in read
    rotated = await admin_post(client, f"{BASE}/rotate-server-key", None, status=200)
    old = {"Authorization": f"Bearer {site['server_key']}"}
    new = {"Authorization": f"Bearer {rotated['server_key']}"}
    events = [{"visitor_id": "v", "type": "login"}]
    assert (await client.post("/v1/events", headers=old, json=events)).status == 401
    assert (await client.post("/v1/events", headers=new, json=events)).status == 202


@pytest.mark.parametrize("weak", ["short", "a" * 40, "password" * 4])
def test_weak_configured_secrets_are_refused(weak: str) -> None:
    for name in ("admin_token", "token_secret"):
        with pytest.raises(ConfigError, match=name):
            load_settings(**{name: weak})
    assert load_settings(admin_token=ADMIN_TOKEN).admin_token == ADMIN_TOKEN
