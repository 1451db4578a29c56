"""The decision-token secret when none is configured: generated once and kept in the
data directory (`<data_dir>/token_secret`, mode 0600), so restarts and the workers of
one machine share it. Several machines must configure `token_secret` themselves."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from segserver.errors import ConfigError

FILE_NAME = "token_secret"


def stored_secret(data_dir: Path) -> str:
    """The secret in `data_dir`, made (atomically, first writer wins) if missing."""
    path = data_dir / FILE_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
            os.link(path.with_suffix(".tmp"), path)  # fails if another process won
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(".tmp").unlink()
        secret = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"token_secret: none configured and {path} is not usable: {exc}"
                          ) from exc  # fmt: skip
    if len(secret) < 32:
        raise ConfigError(f"token_secret: {path} holds fewer than 32 characters")
    return secret
