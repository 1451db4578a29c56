"""Settings: one object, loaded and validated once at start-up.

Sources, highest precedence first: explicit overrides (command-line flags),
`SEGSERVER_*` environment variables, the `--config FILE`, `config/default.toml`.
No other module reads the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from segserver.errors import ConfigError
from segserver.resources import shipped_dir

_URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
#: Configured secrets (admin token, decision-token secret): 32 characters hold 192 bits
#: as token_urlsafe makes them; a repeated character or a word is refused.
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10


class Settings(BaseSettings):
    """Every setting, with its unit. Documented in config/default.toml."""

    model_config = SettingsConfigDict(env_prefix="SEGSERVER_", extra="forbid", frozen=True)

    redis_url: str = ""
    data_dir: Path = Path(".segserver")
    cache_dir: Path | None = None
    key_prefix: str = "ss"
    shards: int = Field(16, ge=1, le=16384)
    redis_max_connections: int = Field(64, ge=1, le=10000)
    redis_timeout_ms: int = Field(2000, ge=1, le=600_000)
    redis_budget_ms: int = Field(50, ge=1, le=60_000)
    redis_multiplex: bool = True
    embedded_appendfsync: Literal["always", "everysec", "no"] = "everysec"

    host: str = "127.0.0.1"
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    port: int = Field(8080, ge=0, le=65535)
    admin_token: str = ""
    token_secret: str = ""
    decision_token_ttl_seconds: int = Field(30 * 86400, ge=60, le=400 * 86400)
    # quotas (docs/security.md): per process, per site key / visitor, in a moving minute
    quota_key_requests_per_minute: int = Field(1_200_000, ge=0, le=100_000_000)
    quota_visitor_requests_per_minute: int = Field(120, ge=0, le=1_000_000)
    quota_visitor_events_per_minute: int = Field(600, ge=0, le=1_000_000)
    # site-wide, over every process (counted in Redis, synced off the request path)
    quota_site_events_per_minute: int = Field(600_000, ge=0, le=1_000_000_000)
    quota_site_new_visitors_per_minute: int = Field(60_000, ge=0, le=100_000_000)
    quota_sync_seconds: float = Field(1.0, ge=0, le=60)
    max_dictionary_codes: int = Field(10_000, ge=16, le=10_000_000)
    expired_sweep_per_second: int = Field(5_000, ge=0, le=1_000_000)
    expired_sweep_rest_seconds: float = Field(300.0, ge=0, le=86400)
    max_body_bytes: int = Field(262144, ge=1024, le=64 * 1024 * 1024)
    max_events_per_request: int = Field(100, ge=1, le=10_000)
    max_string_length: int = Field(256, ge=8, le=65536)
    catalogue_cache_seconds: float = Field(2.0, ge=0, le=3600)

    session_gap_seconds: int = Field(1800, ge=1, le=7 * 86400)
    dedup_window_seconds: int = Field(86400, ge=1, le=30 * 86400)
    max_event_age_days: int = Field(400, ge=1, le=3650)
    max_event_skew_seconds: int = Field(300, ge=0, le=86400)
    profile_ttl_days: int = Field(400, ge=0, le=36500)
    tag_slots: int = Field(8, ge=1, le=64)
    change_stream_max_length: int = Field(100_000, ge=100, le=100_000_000)
    visitor_history_length: int = Field(50, ge=1, le=10_000)
    expiry_interval_seconds: float = Field(0.25, ge=0, le=60)
    expiry_lease_seconds: float = Field(30, ge=1, le=3600)
    recompute_chunk: int = Field(10_000, ge=10, le=100_000)
    recompute_lease_seconds: float = Field(15, ge=1, le=3600)
    recompute_retry_seconds: float = Field(30, ge=0.1, le=86_400)
    jobs_poll_seconds: float = Field(5, ge=0, le=3600)
    loop_stale_seconds: float = Field(30, gt=0, le=86400)
    loop_backoff_max_seconds: float = Field(5, ge=0.1, le=3600)

    trigger_retries: int = Field(5, ge=0, le=100)
    trigger_backoff_seconds: float = Field(1.0, gt=0, le=3600)
    trigger_backoff_max_seconds: float = Field(600.0, gt=0, le=86400)
    trigger_timeout_seconds: float = Field(5.0, gt=0, le=300)
    trigger_lease_seconds: float = Field(60.0, gt=0, le=3600)
    trigger_poll_seconds: float = Field(0.5, ge=0, le=60)
    trigger_dead_letters_max: int = Field(1000, ge=1, le=1_000_000)
    trigger_batch: int = Field(32, ge=1, le=10_000)
    trigger_concurrency: int = Field(16, ge=1, le=1000)

    recently_viewed_length: int = Field(20, ge=1, le=1000)
    recommendation_purchase_weight: float = Field(5.0, ge=0, le=1000)
    recommendation_cache_seconds: float = Field(60.0, ge=0, le=3600)

    history_interval_seconds: float = Field(300.0, ge=0, le=86400)
    history_retention_days: int = Field(90, ge=1, le=3650)

    log_level: str = "info"
    bench_ceiling_route: bool = False

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and not value.startswith(_URL_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_URL_SCHEMES)} (or be empty)")
        return value

    @field_validator("admin_token", "token_secret")
    @classmethod
    def _check_strength(cls, value: str) -> str:
        if value and (len(value) < MIN_SECRET_LENGTH or len(set(value)) < MIN_SECRET_DISTINCT):
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters with at least "
                f"{MIN_SECRET_DISTINCT} different ones (or empty: generated); "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX_RE.fullmatch(value):
            raise ValueError("must be 1-32 characters of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @property
    def kernel_cache_dir(self) -> Path | None:
        """Where compiled rule kernels are cached: cache_dir, or None for the engine's
        per-user cache (~/.cache/segserver) that every data dir and checkout shares."""
        return self.cache_dir

    @property
    def embedded(self) -> bool:
        """True when segserver must start its own redis-server."""
        return not self.redis_url


def default_config_file() -> Path:
    return shipped_dir("config") / "default.toml"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from every source, or raise ConfigError naming the bad setting."""
    files = [default_config_file()]
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"--config: {config_file} is not a readable file")
        files.append(config_file)

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=files)
            return (init_settings, env_settings, toml)

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return _Loaded(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"settings: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        env = f"SEGSERVER_{name.upper()}"
        parts.append(f"setting {name} ({env}): {err['msg']} (got {err.get('input')!r})")
    return "invalid settings: " + "; ".join(parts)
