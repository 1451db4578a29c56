"""The HTTP client of trigger delivery: pooled aiohttp sessions, `post_json` as the
`segserver.jobs.triggers.Sender`. It connects to public addresses only, unless the
site allow-lists a network (segserver.trust.netpolicy): every name is resolved and each
address checked at connect time (a resolver that drops internal addresses), IP
literals before the request. One session per allow-list, so a pooled connection made
under one site's allow-list never serves another site."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from segserver import __version__
from segserver.jobs.triggers import SendError
from segserver.trust import netpolicy

USER_AGENT = f"segserver-triggers/{__version__}"
log = logging.getLogger("segserver.triggers")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then keeps only permitted addresses."""

    def __init__(self, allowed: Sequence[netpolicy.Network]) -> None:
        self.allowed = allowed
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        ok = []
        for result in found:
            addr = netpolicy.literal_address(result["host"])
            if addr is not None and netpolicy.permitted(addr, self.allowed):
                ok.append(result)
        if not ok:
            raise OSError(f"{host} resolves to internal addresses only")
        return ok

    async def close(self) -> None:
        await self.inner.close()


class WebhookClient:
    """Open it with `async with` (or close it); sessions are made on first use, inside
    the running loop. `allow`: networks permitted for every site (tests)."""

    def __init__(self, connections: int = 100, allow: Sequence[str] = ()) -> None:
        self.connections = connections
        self.allow = netpolicy.networks(allow)
        self._sessions: dict[frozenset[netpolicy.Network], aiohttp.ClientSession] = {}

    def _session(self, allowed: tuple[netpolicy.Network, ...]) -> aiohttp.ClientSession:
        key = frozenset(allowed)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections,
                                               resolver=GuardedResolver(allowed)),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )  # fmt: skip
        return session

    # `timeout` is part of the Sender's signature; aiohttp applies it per request.
    async def post_json(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109
        networks: Sequence[str] = (),
    ) -> int:
        """POST `body` and return the status code; SendError if none came back.

        Redirects are not followed (a 3xx is a failed delivery: a signed body must
        not be replayed to a URL nobody subscribed), proxies from the environment
        are not used, and the response body is not read. Every failure is the same
        SendError to the caller (dead letters must not tell a closed port from a
        refused address); the reason is logged for the operator."""
        allowed = self.allow + netpolicy.networks(networks)
        host = URL(url).host or ""
        why = netpolicy.refused_host(host, allowed)
        if why is not None:
            log.warning("webhook %s refused: %s", url, why)
            raise SendError("delivery failed")
        try:
            async with self._session(allowed).post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                return response.status
        except TimeoutError:
            log.info("webhook %s: no answer within %g s", url, timeout)
            raise SendError("delivery failed") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.info("webhook %s: %s: %s", url, type(exc).__name__, exc)
            raise SendError("delivery failed") from None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
