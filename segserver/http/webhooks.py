"""The HTTP client of trigger delivery: one pooled aiohttp session, `post_json` as
the `segserver.jobs.triggers.Sender`."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

import aiohttp

from segserver import __version__
from segserver.jobs.triggers import SendError

USER_AGENT = f"segserver-triggers/{__version__}"


class WebhookClient:
    """Open it with `async with` (or close it); the session is made on first use,
    inside the running loop."""

    def __init__(self, connections: int = 100) -> None:
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    # `timeout` is part of the Sender's signature; aiohttp applies it per request.
    async def post_json(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109
    ) -> int:
        """POST `body` and return the status code; SendError if none came back.

        Redirects are not followed (a 3xx is a failed delivery: a signed body must
        not be replayed to a URL nobody subscribed), proxies from the environment
        are not used, and the response body is not read."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        try:
            async with self._session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                return response.status
        except TimeoutError:
            raise SendError(f"no answer within {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
