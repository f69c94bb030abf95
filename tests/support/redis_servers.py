"""Throwaway Redis servers for the tests: one server, or a 3-node Redis Cluster, on free loopback ports.

Every process is daemonized with a pidfile in its own temporary directory and stopped by pid. Cleanup
happens three ways: the fixtures' finalizers, an ``atexit`` hook, and, on the next start, a sweep of
directories left by a test process that died without cleaning up (the owning pid is in the name).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redis.asyncio.cluster

DIR_PREFIX = "threadguard-redis-"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
CLUSTER_TIMEOUT = 10.0
MAX_PORT = 55_000  # a cluster node also listens on port + 10000


class RedisStartError(RuntimeError):
    """A test Redis did not come up; the message carries the tail of its log."""


class _PortTaken(RedisStartError):
    """Another process took the port between our check and redis-server's bind."""


_LISTEN_FAILED = "Could not create server TCP listening socket"


def redis_binary(name: str = "redis-server") -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisStartError(f"{name} not found on PATH (Debian: apt-get install redis-server)")
    return path


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False, exclude: frozenset[int] = frozenset()) -> int:
    """A loopback port nobody listens on (and, for a cluster node, whose bus port is free too)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in exclude or port > MAX_PORT:
            continue
        if cluster_bus and not _bindable(port + 10_000):
            continue
        return port
    raise RedisStartError("no free loopback port found")


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone: it no longer serves anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_redis(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_and_wait(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.01)
    raise RuntimeError(f"redis-server pid {pid} did not exit")


class _Registry:
    """The servers this process started; stops the leftovers at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[int, RedisServer] = {}
        atexit.register(self.stop_all)

    def add(self, server: RedisServer) -> None:
        with self._lock:
            self._servers[id(server)] = server

    def discard(self, server: RedisServer) -> None:
        with self._lock:
            self._servers.pop(id(server), None)

    def stop_all(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
        for server in servers:
            with contextlib.suppress(Exception):
                server.close()


_REGISTRY = _Registry()


def sweep_orphans(tmp_root: str | None = None) -> int:
    """Stop servers whose owning test process is gone; returns how many were stopped."""
    root = Path(tmp_root or tempfile.gettempdir())
    stopped = 0
    for directory in root.glob(f"{DIR_PREFIX}*"):
        try:
            owner = int(directory.name[len(DIR_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if _pid_alive(owner):
            continue
        for pidfile in directory.glob("**/redis.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                if _pid_alive(pid) and _is_redis(pid):
                    _kill_and_wait(pid)
                    stopped += 1
        shutil.rmtree(directory, ignore_errors=True)
    return stopped


def _new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; ``stop()`` then ``start()`` brings it back on the same port."""

    def __init__(self, port: int | None = None, *, workdir: Path | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self._pick_port = port is None  # we may move to another port until the first start succeeds
        self.port = port or free_port(cluster_bus="--cluster-enabled" in extra_args)
        self._own_workdir = workdir is None
        self.workdir = workdir or _new_workdir()
        self.extra_args = extra_args
        self.pid: int | None = None
        self._log_offset = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def running(self) -> bool:
        return self.pid is not None and _pid_alive(self.pid)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A short-lived synchronous client (setup and assertions only)."""
        kwargs.setdefault("socket_timeout", 2)
        kwargs.setdefault("decode_responses", True)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def start(self) -> RedisServer:
        """Starts (or restarts on the same port); a port lost to a race before the first start is replaced."""
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._launch()
            except _PortTaken:
                if not self._pick_port or attempt == 2:
                    raise
                self.port = free_port(cluster_bus="--cluster-enabled" in self.extra_args)
            else:
                self._pick_port = False
                return self
        return self

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        self._log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no",
            "--save", "", "--appendonly", "no", "--daemonize", "yes",
            "--pidfile", str(self.pidfile), "--dir", str(self.workdir), "--logfile", str(self.logfile),
            *self.extra_args,
        ]
        _REGISTRY.add(self)
        launched = subprocess.run(args, check=False, timeout=START_TIMEOUT, cwd=self.workdir,
                                  capture_output=True, text=True)
        if launched.returncode != 0:
            raise RedisStartError(f"redis-server exited with {launched.returncode}: "
                                  f"{launched.stderr or launched.stdout}\n{self._log_tail()}")
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.pid is None and _LISTEN_FAILED in self._new_log():
                raise _PortTaken(f"port {self.port} is taken:\n{self._log_tail()}")
            if self.pid is None and self.pidfile.exists():
                with contextlib.suppress(ValueError):
                    self.pid = int(self.pidfile.read_text().strip() or "0") or None
            if self.pid is not None and self._pings():
                return
            time.sleep(0.01)
        raise RedisStartError(f"redis-server on port {self.port} not ready:\n{self._log_tail()}")

    def _pings(self) -> bool:
        try:
            with self.client(socket_connect_timeout=0.2) as conn:
                return bool(conn.ping())
        except redis.RedisError:
            return False

    def _new_log(self) -> str:
        try:
            with self.logfile.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stops the process (by pid) and waits for it to exit; the directory and port are kept."""
        pid, self.pid = self.pid, None
        if pid is not None and _pid_alive(pid):
            _kill_and_wait(pid)
        self.pidfile.unlink(missing_ok=True)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stops the process and removes its directory."""
        try:
            self.stop()
        finally:
            _REGISTRY.discard(self)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid})"


class RedisCluster:
    """Three primaries, no replicas, every slot assigned; built with ``redis-cli --cluster create``.
    ``RedisCluster(6, replicas=1)``: three primaries with a replica each (for failover tests)."""

    def __init__(self, nodes: int = 3, *, replicas: int = 0) -> None:
        self.replicas = replicas
        self.workdir = _new_workdir()
        self.servers = [
            RedisServer(workdir=self.workdir / f"node{i}", extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "yes",
            ))
            for i in range(nodes)
        ]

    @property
    def startup_nodes(self) -> list[redis.asyncio.cluster.ClusterNode]:
        return [redis.asyncio.cluster.ClusterNode(s.host, s.port) for s in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def start(self) -> RedisCluster:
        try:
            for server in self.servers:
                server.start()
            self._create()
            self._wait_consistent()
            self._probe_async_client()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        result = subprocess.run(
            [redis_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=CLUSTER_TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise RedisStartError(f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}")

    def _wait_consistent(self) -> None:
        """Every node reports cluster_state:ok and the same full slot map."""
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            views: list[list[tuple[int, int, int]]] = []
            try:
                for server in self.servers:
                    with server.client() as conn:
                        info = conn.execute_command("CLUSTER INFO")
                        if not _cluster_ok(info):
                            last = f"node {server.port}: {info}"
                            break
                        slots = conn.execute_command("CLUSTER SLOTS")
                        views.append(sorted(_slot_ranges(slots)))
            except redis.RedisError as exc:
                last = repr(exc)
            else:
                full = len(views) == len(self.servers) and all(v == views[0] for v in views)
                if full and sum(end - start + 1 for start, end, _ in views[0]) == 16384:
                    return
            time.sleep(0.05)
        raise RedisStartError(f"cluster on {self.ports} not consistent: {last}")

    def _probe_async_client(self) -> None:
        """The asyncio cluster client can write and read keys in different slots (own loop, own thread)."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(_probe(self.startup_nodes))
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=run, name="redis-cluster-probe")
        worker.start()
        worker.join(CLUSTER_TIMEOUT)
        if worker.is_alive():
            raise RedisStartError("cluster probe timed out")
        if errors:
            raise RedisStartError(f"cluster probe failed: {errors[0]!r}")

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    close = stop

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisCluster(ports={self.ports})"


def _cluster_ok(info: Any) -> bool:
    """CLUSTER INFO says cluster_state:ok (redis-py parses it into a dict; raw replies are text)."""
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    return "cluster_state:ok" in str(info)


def _slot_ranges(slots: Any) -> list[tuple[int, int, int]]:
    """(start, end, primary port) for each range of a CLUSTER SLOTS reply (list or redis-py dict)."""
    if isinstance(slots, dict):
        return [(int(rng[0]), int(rng[1]), int(node["primary"][1])) for rng, node in slots.items()]
    return [(int(row[0]), int(row[1]), int(row[2][1])) for row in slots]


async def _probe(nodes: list[redis.asyncio.cluster.ClusterNode]) -> None:
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True)
    try:
        owners: set[int] = set()
        for i in range(12):
            key = f"threadguard:probe:{i}"
            await client.set(key, str(i), ex=5)
            if await client.get(key) != str(i):
                raise RedisStartError(f"probe key {key} did not read back")
            node = client.get_node_from_key(key)
            owners.add(int(node.port) if node else 0)
            await client.delete(key)
        if len(owners) < 2:
            raise RedisStartError(f"probe keys all landed on one node: {owners}")
    finally:
        await client.aclose()
