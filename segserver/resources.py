"""Where the files shipped beside the code (`lua/`, `config/`, the SDK build) are.

In a built wheel they live in `segserver/_shipped/` (pyproject's force-include);
in a source checkout (editable install, tests) they are the repo's top-level
folders. Both layouts are supported so that the repo keeps DESIGN.md's layout and
an installed wheel is self-contained (tests/unit/test_packaging.py checks both).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_PACKAGE_ROOT = Path(str(resources.files("segserver")))


#: shipped name → its folder in a source checkout
_CHECKOUT = {"lua": "lua", "config": "config", "sdk": "sdk_js/dist"}


def shipped_dir(name: str) -> Path:
    """Return the directory of the shipped folder `name` ("lua", "config" or "sdk")."""
    installed = _PACKAGE_ROOT / "_shipped" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_ROOT.parent / _CHECKOUT[name]
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"segserver: shipped folder {name!r} is missing from the installation")
