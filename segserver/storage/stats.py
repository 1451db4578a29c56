"""Redis' own statistics for the benchmarks (`INFO commandstats`): the time Redis spent
in scripts, counted by Redis itself, not by the client."""

from __future__ import annotations

import redis


class CommandStats:
    """A blocking connection to one Redis (a unix socket URL or host:port) that reads
    and resets its command statistics."""

    def __init__(self, url: str) -> None:
        if url.startswith("unix://"):
            self._client = redis.Redis(unix_socket_path=url.removeprefix("unix://"))
        else:
            self._client = redis.Redis.from_url(url)

    def reset(self) -> None:
        self._client.config_resetstat()

    def scripts(self) -> tuple[int, float]:
        """(calls, µs) of EVALSHA and EVAL since the last reset: the scripts' Redis time
        including the commands they run."""
        stats = self._client.info("commandstats")
        names = ("cmdstat_evalsha", "cmdstat_eval")
        calls = sum(int(stats.get(k, {}).get("calls", 0)) for k in names)
        return calls, float(sum(stats.get(k, {}).get("usec", 0) for k in names))

    def close(self) -> None:
        self._client.close()
