"""The one place where Redis client failures become segserver errors.

Every call into redis-py or redis-om goes through `wrapped(...)`: a time-out becomes
StorageTimeout, anything else the client raises becomes StorageError, so nothing
above `storage/` ever sees a foreign exception (and the HTTP layer never answers 500
for an outage). Besides `RedisError` and `OSError`, redis-py has been seen raising
plain `AttributeError` (`'NoneType' object has no attribute 'writelines'`) and
`IndexError` while a cluster node fails over; those are wrapped too, and logged with
their traceback once per distinct message so that a real bug stays visible. (The
writes of segserver's connections turn the torn-down-transport case into redis'
ConnectionError, which redis-py's cluster client retries: storage/client.py.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import hiredis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from segserver.errors import SegserverError, StorageError, StorageTimeout

log = logging.getLogger("segserver.storage")
_seen: set[str] = set()
_SEEN_MAX = 256


def to_storage_error(exc: BaseException, what: str) -> StorageError:
    """The segserver error for a failure of the Redis client while doing `what`."""
    if isinstance(exc, RedisTimeout | TimeoutError):
        return StorageTimeout(f"Redis did not answer in time ({what})")
    if isinstance(exc, hiredis.ReplyError):  # an error reply to the multiplexed client
        return StorageError(f"{what} failed: {exc}")
    if not isinstance(exc, RedisError | OSError):
        key = f"{type(exc).__name__}: {exc}"
        if key not in _seen and len(_seen) < _SEEN_MAX:
            _seen.add(key)
            log.warning("Redis client raised %s while %s", key, what, exc_info=exc)
    return StorageError(f"{what} failed: {exc}")


@contextmanager
def wrapped(what: str) -> Iterator[None]:
    """Run a Redis call; re-raise its failure as StorageError / StorageTimeout.

    Cancellation (a BaseException) and segserver's own errors pass through untouched."""
    try:
        yield
    except SegserverError:
        raise
    except Exception as exc:
        raise to_storage_error(exc, what) from exc
