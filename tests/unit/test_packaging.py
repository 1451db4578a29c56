"""The Lua scripts and config ship inside the wheel, and every script is registered."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from segserver.resources import shipped_dir
from segserver.storage.scripts import lua_sources

ROOT = Path(__file__).resolve().parents[2]


def test_every_lua_file_is_a_registered_script() -> None:
    files = {p.stem for p in (ROOT / "lua").glob("*.lua")}
    assert files == set(lua_sources())
    for name, source in lua_sources().items():
        header = source.split("\n\n")[0]
        assert header.startswith(f"-- {name}:"), name
        assert "KEYS[1]" in header and "Returns" in header, name


@pytest.mark.slow
def test_wheel_contains_lua_and_config(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("segserver-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for lua in (ROOT / "lua").glob("*.lua"):
        assert f"segserver/_shipped/lua/{lua.name}" in names
    assert "segserver/_shipped/config/default.toml" in names
    assert "segserver/_shipped/config/events.toml" in names
    assert shipped_dir("lua").is_dir()
