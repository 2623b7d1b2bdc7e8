"""Where `aerolith login` keeps the API URL and key: a JSON file in the user's config
directory (platformdirs: $XDG_CONFIG_HOME/aerolith on Linux), readable by its owner only.

AEROLITH_URL and AEROLITH_API_KEY, when set, take precedence over the file, so that scripts
and CI can run without logging in.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_config_dir


@dataclass(frozen=True)
class Credentials:
    url: str
    key: str


def config_dir() -> Path:
    return Path(user_config_dir("aerolith"))


def config_path() -> Path:
    return config_dir() / "config.json"


def load() -> Credentials | None:
    url, key = os.environ.get("AEROLITH_URL"), os.environ.get("AEROLITH_API_KEY")
    if url and key:
        return Credentials(url=url, key=key)
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("url") or not data.get("key"):
        return None
    return Credentials(url=url or data["url"], key=key or data["key"])


def save(credentials: Credentials) -> Path:
    """Write the file so that it is never readable by others, not even for a moment:
    created with mode 0600 inside a 0700 directory (chmod again, since umask and an
    older file could have left wider modes)."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = config_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"url": credentials.url, "key": credentials.key}, file, indent=2)
        file.write("\n")
    return path


def delete() -> bool:
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
