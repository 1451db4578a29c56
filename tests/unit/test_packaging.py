"""What ships: the Lua scripts, config and the browser SDK inside the wheel and the sdist
(pip installs from the source tree, an sdist and a wheel), every script registered, and an
installed wheel shares the compiled kernels of a checkout (same content key)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from segserver.engine import jitcache
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


def _build(kind: str, source: Path, outdir: Path, env: dict[str, str] | None = None) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", f"--{kind}", "--no-isolation", "--outdir", str(outdir)],
        cwd=source,
        check=True,
        capture_output=True,
        env=env,
    )
    (built,) = outdir.glob("segserver-*.whl" if kind == "wheel" else "segserver-*.tar.gz")
    return built


def _assert_wheel_ships_everything(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for lua in (ROOT / "lua").glob("*.lua"):
        assert f"segserver/_shipped/lua/{lua.name}" in names
    assert "segserver/_shipped/config/default.toml" in names
    assert "segserver/_shipped/config/events.toml" in names
    assert "segserver/_shipped/sdk/segserver.js" in names
    assert "segserver/_shipped/sdk/segserver.esm.js" in names
    assert "segserver/engine/kernels.py" in names


@pytest.mark.slow
def test_wheel_from_the_source_tree_ships_lua_config_and_the_sdk(tmp_path: Path) -> None:
    _assert_wheel_ships_everything(_build("wheel", ROOT, tmp_path))
    assert shipped_dir("lua").is_dir()


@pytest.mark.slow
def test_sdist_carries_the_built_sdk_and_builds_a_wheel_without_node(tmp_path: Path) -> None:
    sdist = _build("sdist", ROOT, tmp_path / "sdist")
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
        assert "segserver-0.1.0/sdk_js/dist/segserver.js" in names
        assert "segserver-0.1.0/hatch_build.py" in names
        assert not any("node_modules" in n or "/sdk_js/src/" in n for n in names)
        tar.extractall(tmp_path / "src", filter="data")
    # no npm on the PATH: the wheel is built from what the sdist carries
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    wheel = _build("wheel", tmp_path / "src" / "segserver-0.1.0", tmp_path / "wheel", env)
    _assert_wheel_ships_everything(wheel)


@pytest.mark.slow
def test_installed_wheel_finds_its_files_and_shares_the_kernel_cache(tmp_path: Path) -> None:
    wheel = _build("wheel", ROOT, tmp_path / "wheel")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    probe = (
        "from segserver.engine import jitcache; from segserver.resources import shipped_dir; "
        "print(jitcache.KERNEL_KEY, shipped_dir('sdk'), shipped_dir('lua'), shipped_dir('config'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0] == jitcache.KERNEL_KEY  # another path, other mtimes: the same compiled code
    for folder in out[1:]:
        assert folder.startswith(str(site / "segserver" / "_shipped")), folder
