"""The workspace (`SN_HOME`, default `./sn-workspace`): stores, the database, artifacts, datasets and models."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("SN_HOME", "sn-workspace")).expanduser()


def subdir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
