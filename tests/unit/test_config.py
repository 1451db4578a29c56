"""Settings: sources, precedence and errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from segserver.config import load_settings
from segserver.errors import ConfigError


def test_defaults_come_from_default_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGSERVER_PORT", raising=False)
    settings = load_settings()
    assert settings.port == 8080
    assert settings.embedded
    assert settings.max_body_bytes == 256 * 1024
    assert settings.session_gap_seconds == 1800


def test_precedence_flags_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('port = 9000\nhost = "0.0.0.0"\nshards = 4\n')
    monkeypatch.setenv("SEGSERVER_PORT", "9100")
    settings = load_settings(conf, host=None)
    assert settings.port == 9100  # env beats the file
    assert settings.host == "0.0.0.0"  # file beats the default
    assert settings.shards == 4
    assert load_settings(conf, port=9200).port == 9200  # flags beat env


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("SEGSERVER_PORT", "http", "setting port (SEGSERVER_PORT)"),
        ("SEGSERVER_PORT", "70000", "setting port"),
        ("SEGSERVER_REDIS_URL", "mysql://x", "setting redis_url"),
        ("SEGSERVER_SHARDS", "0", "setting shards"),
        ("SEGSERVER_KEY_PREFIX", "a b", "setting key_prefix"),
        ("SEGSERVER_LOG_LEVEL", "loud", "setting log_level"),
        ("SEGSERVER_EMBEDDED_APPENDFSYNC", "sometimes", "setting embedded_appendfsync"),
        ("SEGSERVER_LOOP_STALE_SECONDS", "0", "setting loop_stale_seconds"),
        ("SEGSERVER_LOOP_BACKOFF_MAX_SECONDS", "0.01", "setting loop_backoff_max_seconds"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in err.value.message


def test_durability_and_loop_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMBEDDED_APPENDFSYNC", "LOOP_STALE_SECONDS", "LOOP_BACKOFF_MAX_SECONDS"):
        monkeypatch.delenv(f"SEGSERVER_{name}", raising=False)
    settings = load_settings()
    assert settings.embedded_appendfsync == "everysec"  # a power loss costs at most ~1 s
    assert (settings.loop_stale_seconds, settings.loop_backoff_max_seconds) == (30, 5)
    for policy in ("always", "no"):
        monkeypatch.setenv("SEGSERVER_EMBEDDED_APPENDFSYNC", policy)
        assert load_settings().embedded_appendfsync == policy
    monkeypatch.setenv("SEGSERVER_LOOP_STALE_SECONDS", "2.5")
    assert load_settings(loop_backoff_max_seconds=0.5).loop_stale_seconds == 2.5


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(conf)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_settings(tmp_path / "nope.toml")


def test_every_setting_is_documented_in_default_toml() -> None:
    from segserver.config import Settings, default_config_file

    text = default_config_file().read_text()
    for name in Settings.model_fields:
        assert f"\n{name} = " in text, name
