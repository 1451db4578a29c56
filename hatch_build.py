"""Hatch build hook: the browser SDK's build goes into the wheel and the sdist.

The server serves the SDK (`sdk_js/dist`, built by npm from `sdk_js/src`) at /sdk/.
`sdk_js/dist` is not in git, so a wheel built from a fresh checkout needs the npm
build first: this hook runs it when it is missing (Node.js >= 18 on the PATH). The
sdist carries the built files, so a wheel built from an sdist needs no Node.js.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUILT = ("segserver.js", "segserver.esm.js")


class SdkBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":  # an editable install serves sdk_js/dist of the checkout
            return
        dist = Path(self.root) / "sdk_js" / "dist"
        if not all((dist / name).is_file() for name in BUILT):
            self._build_sdk(dist.parent)
        target = "segserver/_shipped/sdk" if self.target_name == "wheel" else "sdk_js/dist"
        for name in BUILT:
            build_data["force_include"][str(dist / name)] = f"{target}/{name}"

    def _build_sdk(self, sdk: Path) -> None:
        npm = shutil.which("npm")
        if npm is None or not (sdk / "package.json").is_file():
            raise RuntimeError(
                "segserver: the browser SDK is not built (sdk_js/dist is missing) and cannot "
                "be built here: install Node.js >= 18 (npm) or run ./scripts/setup first"
            )
        self.app.display_info("segserver: building the browser SDK (npm ci && npm run build)")
        quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run([npm, "ci", *quiet], cwd=sdk, check=True)
        subprocess.run([npm, "run", "--silent", "build"], cwd=sdk, check=True)
