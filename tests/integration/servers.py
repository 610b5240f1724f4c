"""Private servers for fault tests: a PostgreSQL cluster a test may freeze, kill or restart
without disturbing the shared stack that other tests use.
"""

from __future__ import annotations

import asyncio
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

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now, and never handed out before in this process.

    The kernel may give the same ephemeral port to two binds in a row once the first socket
    is closed, so two calls for one server (its listener and its controller) could collide:
    remembering what was handed out keeps every port of a test distinct.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        raise RuntimeError("PostgreSQL server binaries are missing: run `make up` first")
    return versions[-1].parent


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, superuser ``weir``, trust auth."""

    def __init__(self, settings: str = "") -> None:
        """``settings``: more server options (``-c wal_level=logical``)."""
        self.settings = settings
        # Under /tmp rather than pytest's tmp_path: the postgres account must be able to
        # reach it when the tests run as root, and pytest's folders are private to root.
        self.dir = Path(tempfile.mkdtemp(prefix="weir-pg-"))
        self.port = free_port()
        self.bin = _pg_bin()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres")
        self.dsn = f"postgresql://weir@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PrivatePostgres:
        """initdb (first time) and start; returns when it accepts connections."""
        data = self.dir / "data"
        if not data.exists():
            self._run("initdb", "-D", str(data), "-U", "weir", "--auth=trust", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(data), *self._server_args(), "-w", "-t", "60", "start")
        return self

    def _server_args(self) -> list[str]:
        # -l: the server must not inherit (and hold open) the pipes of the test process.
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                f"-c fsync=off -c max_connections=100 {self.settings}").strip()
        return ["-o", opts, "-l", str(self.dir / "log")]

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is dropped."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", *self._server_args(),
                  "-w", "-t", "60", "restart")

    def ensure_started(self) -> None:
        """Start it again if a test halted it (``pg_ctl status`` exits 3 when stopped)."""
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "status"]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        if subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 3:
            self.start()

    def halt(self) -> None:
        """``pg_ctl stop -m fast``, keeping the data for a later :meth:`start`."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster first, then its children."""
        first = (self.dir / "data" / "postmaster.pid").read_text().split()[0]
        master = int(first)
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                                  text=True, check=False).stdout.split()
        return [master, *map(int, children)]

    def freeze(self) -> None:
        """SIGSTOP every process: connections stay open, nothing answers."""
        for pid in self.pids():  # the postmaster first, so it forks no new backend
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT every process."""
        for pid in reversed(self.pids()):
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop (thawing first, in case a test froze it) and delete everything."""
        with contextlib.suppress(OSError, ValueError):  # not running: nothing to thaw
            self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        time.sleep(0.1)


class TcpProxy:
    """A TCP forwarder on a free port to ``target``, in a thread of its own, that a test can
    open and close: closed, connections are refused, as from a server that is not up."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def open(self) -> None:
        """Start accepting connections."""
        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    def close(self) -> None:
        """Stop accepting (connections already made stay)."""
        server, self._server = self._server, None
        if server is not None:
            async def shut() -> None:
                server.close()
                await server.wait_closed()
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)

    def stop(self) -> None:
        """Close, drop every connection and end the thread."""
        self.close()

        async def drop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _kafka_libs() -> Path:
    libs = Path(os.environ.get("WEIR_STACK_DIR", Path(__file__).resolve().parents[2]
                               / ".stack")) / "kafka" / "libs"
    if not any(libs.glob("*.jar")):
        raise RuntimeError(f"no Kafka jars in {libs}: run `make up` first")
    return libs


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


class PrivateKafka:
    """A brand-new single-node Kafka (KRaft) on free ports, from the stack's own jars and
    template: what a first run on a fresh machine meets (no ``__consumer_offsets`` yet)."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[2]
        self.dir = Path(tempfile.mkdtemp(prefix="weir-kafka-"))
        self.port, controller = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._libs = _kafka_libs()
        self._log4j = root / "deploy/kafka/log4j2.yaml"
        template = (root / "deploy/kafka/server.properties.in").read_text()
        for name, value in (("KAFKA_PORT", str(self.port)),
                            ("CONTROLLER_PORT", str(controller)),
                            ("KAFKA_DATA_DIR", str(self.dir / "data"))):
            template = template.replace(f"@{name}@", value)
        self.config = self.dir / "server.properties"
        self.config.write_text(template)
        self._proc: subprocess.Popen[bytes] | None = None

    def _java(self, *args: str, level: str = "WARN") -> list[str]:
        return ["java", "-cp", f"{self._libs}/*", f"-Dlog4j2.configurationFile={self._log4j}",
                f"-Dweir.kafka.log.level={level}", *args]

    def start(self, timeout: float = 90) -> PrivateKafka:
        """Format the storage, start the broker; returns once it serves metadata."""
        cluster = subprocess.run(self._java("kafka.tools.StorageTool", "random-uuid"),
                                 capture_output=True, text=True, check=True, timeout=120)
        subprocess.run(self._java("kafka.tools.StorageTool", "format", "--config",
                                  str(self.config), "--cluster-id", cluster.stdout.strip()),
                       capture_output=True, check=True, timeout=120)
        with (self.dir / "kafka.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [*self._java("-Xms128m", "-Xmx512m", level="INFO"), "kafka.Kafka",
                 str(self.config)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the private Kafka exited; see {self.dir / 'kafka.log'}")
            if _listening(self.port) and asyncio.run(self._serves()):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the private Kafka did not serve within {timeout}s")

    async def _serves(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                    request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
        except Exception:  # noqa: BLE001 - not up yet, whatever the way
            return False
        else:
            return True
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    def stop(self) -> None:
        """Kill the broker and delete everything."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)
