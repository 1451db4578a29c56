"""Findings of issue 10 on what leaves the server: webhooks to internal addresses,
dead letters as a port scanner, unsigned timestamps, formulas in CSV exports."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from segserver.http.webhooks import GuardedResolver, WebhookClient
from segserver.jobs.triggers import SendError, sign
from segserver.trust.netpolicy import networks
from tests.conftest import admin_headers
from tests.security.helpers import Client, admin_post, site_key

INTERNAL = ["http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x", "http://0x7f000001/", "http://2130706433/", "http://127.1/",
            "http://10.0.0.5/", "http://[::ffff:127.0.0.1]/", "http://localhost:8080/",
            "http://metadata.localhost/"]  # fmt: skip


@pytest.mark.parametrize("url", INTERNAL)
async def test_webhooks_to_internal_addresses_are_refused(
    client: Client, site: dict[str, Any], url: str
) -> None:
    resp = await client.post("/v1/admin/sites/shop/triggers", headers=admin_headers(),
                             json={"url": url})  # fmt: skip
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "internal_address"


async def test_a_site_may_allow_list_its_own_network(client: Client, site: dict[str, Any]) -> None:
    allow = await client.patch("/v1/admin/sites/shop", headers=admin_headers(),
                               json={"options": {"webhook_networks": ["10.0.0.0/8"]}})  # fmt: skip
    assert allow.status == 200
    await admin_post(client, "/v1/admin/sites/shop/triggers", {"url": "http://10.0.0.5/"})
    still = await client.post("/v1/admin/sites/shop/triggers", headers=admin_headers(),
                              json={"url": "http://169.254.169.254/"})  # fmt: skip
    assert still.status == 400


async def test_names_are_checked_when_connecting() -> None:
    """A name that resolves to loopback (DNS rebinding: checked on the address actually
    connected to, not on the name when saved)."""
    resolver = GuardedResolver(())
    with pytest.raises(OSError, match="internal addresses only"):
        await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    allowed = GuardedResolver(networks(["127.0.0.0/8", "::1/128"]))
    assert await allowed.resolve("localhost", 80, socket.AF_UNSPEC)
    await resolver.close()
    await allowed.close()


async def test_every_delivery_failure_looks_the_same() -> None:
    """Refused address, closed port, time-out: one SendError text (no port scanner)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with WebhookClient() as refusing, WebhookClient(allow=["127.0.0.0/8"]) as local:
        failures = []
        for client, url in ((refusing, "http://127.0.0.1:6379/"),
                            (local, f"http://127.0.0.1:{closed}/")):  # fmt: skip
            with pytest.raises(SendError) as caught:
                await client.post_json(url, b"{}", {}, 1.0)
            failures.append(str(caught.value))
    assert failures == ["delivery failed", "delivery failed"]


def test_the_signature_covers_the_timestamp() -> None:
    body = b'{"id": "x"}'
    assert sign("whsec_k", "1790000000", body) != sign("whsec_k", "1790000001", body)
    assert sign("whsec_k", "1790000000", body) == sign("whsec_k", "1790000000", body)


async def test_csv_exports_never_carry_a_formula(client: Client, site: dict[str, Any]) -> None:
    ids = ["=1+2", "@SUM", "+cmd", "-2+3", "plain"]
    for vid in ids:
        resp = await client.post("/v1/context", headers=site_key(site), json={
            "visitor_id": vid, "events": [{"type": "page_view", "properties": {
                "utm_source": "=HYPERLINK(\"http://evil\",\"x\")"}}]})  # fmt: skip
        assert resp.status == 200
    base = "/v1/admin/sites/shop/segments"
    await admin_post(client, base, {"id": "st", "type": "static", "status": "active"})
    await admin_post(client, f"{base}/st/members", {"visitor_ids": ids}, status=200)
    resp = await client.get(f"{base}/st/members.csv?attrs=utm_source", headers=admin_headers())
    assert resp.status == 200
    lines = (await resp.text()).splitlines()
    rows = dict(line.split(",", 1) for line in lines[1:])
    assert set(rows) == {"'=1+2", "'@SUM", "'+cmd", "'-2+3", "plain"}
    assert {v for v in rows.values()} == {'"\'=HYPERLINK(""http://evil"",""x"")"'}
