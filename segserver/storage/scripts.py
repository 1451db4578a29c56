"""The Lua registry: every `lua/*.lua` shipped with the package, registered once as
a redis-py Script (EVALSHA → NOSCRIPT → SCRIPT LOAD → retry); failures wrapped by
`storage.errors.wrapped`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segserver.errors import StorageError
from segserver.resources import shipped_dir
from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.multiplex import Multiplexer


def lua_sources() -> dict[str, str]:
    """name → source of every shipped script."""
    directory: Path = shipped_dir("lua")
    return {p.stem: p.read_text() for p in sorted(directory.glob("*.lua"))}


class Scripts:
    """Registered scripts, called by name: through `fast` (the multiplexed client) when
    given, else through redis-py (`client`)."""

    def __init__(self, client: Client, fast: Multiplexer | None = None) -> None:
        self.client = client
        self.fast = fast
        self.sources = lua_sources()
        self.scripts = {name: client.register_script(src) for name, src in self.sources.items()}

    async def load_all(self) -> None:
        """SCRIPT LOAD every script (on every primary of a cluster); for /readyz."""
        with wrapped("loading Lua scripts"):
            for src in self.sources.values():
                await self.client.script_load(src)

    async def loaded(self) -> bool:
        shas = [s.sha for s in self.scripts.values()]
        try:
            with wrapped("checking Lua scripts"):
                exists = await self.client.script_exists(*shas)
        except StorageError:
            return False
        return all(exists)

    async def call(
        self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None
    ) -> Any:
        with wrapped(f"running {name}"):
            if self.fast is not None and client is None:
                script = self.scripts[name]
                return await self.fast.evalsha(script.sha, script.script, keys, args)
            return await self.scripts[name](keys=keys, args=args, client=client)
