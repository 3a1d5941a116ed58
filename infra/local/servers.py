"""
Install, start and stop real Kafka, Cassandra, Redis and PostgreSQL servers.

Each server listens on 127.0.0.1 only, on a non-default port, and keeps its
data, config, log and pid file under one folder (``var/local/<name>``, or
``$DUETTO_LOCAL_DIR/<name>``). Data is wiped on every start: these servers
exist for integration tests, not for keeping anything.

Only the standard library is imported here; the client libraries used by the
readiness checks are imported inside them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
LOG_TAIL_LINES = 40


class LocalServerError(Exception):
    """
    Root of the errors raised while installing, starting or stopping a server.
    """


class InstallError(LocalServerError):
    """
    A package or jar set could not be installed.
    """


class StartError(LocalServerError):
    """
    A server exited or did not become ready in time; the message has its log tail.
    """


class NotReadyError(LocalServerError):
    """
    A readiness probe found the server not (yet) answering.
    """


# Paths and settings


def local_dir() -> Path:
    """
    Return the folder that holds every server's data, log and pid file.
    """
    configured = os.environ.get("DUETTO_LOCAL_DIR")
    return Path(configured).resolve() if configured else REPO_ROOT / "var" / "local"


def env_port(name: str, default: int) -> int:
    """
    Read a port number from the environment, falling back to ``default``.
    """
    value = os.environ.get(name)
    return int(value) if value else default


def java_bin() -> Path:
    """
    Return the Java 17 launcher both JVM servers run on.
    """
    home = os.environ.get("DUETTO_JAVA_HOME")
    return (Path(home) if home else DEFAULT_JAVA_HOME) / "bin" / "java"


def port_open(port: int, timeout: float = 0.5) -> bool:
    """
    Tell whether something accepts TCP connections on 127.0.0.1:``port``.
    """
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """
    Return the last ``lines`` lines of a log file, or a note that it is missing.
    """
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


# Installing


@functools.cache
def _apt_update() -> None:
    logger.info("apt-get update")
    _run_apt(["update"])


def _run_apt(args: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        ["apt-get", "-q", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InstallError(f"apt-get {' '.join(args)} failed:\n{result.stderr}")


def apt_install(packages: Iterable[str]) -> None:
    """
    Install Debian packages, running ``apt-get update`` once first.
    """
    names = list(packages)
    _apt_update()
    logger.info("apt-get install %s", " ".join(names))
    _run_apt(["install", "-y", "--no-install-recommends", *names])


def ensure_binary(path: Path, package: str) -> None:
    """
    Install ``package`` with apt when ``path`` does not exist yet.
    """
    if path.exists():
        return
    apt_install([package])
    if not path.exists():
        raise InstallError(f"{package} installed, but {path} is still missing")


def ensure_java_and_maven() -> None:
    """
    Make sure Java 17 and Maven are present.
    """
    ensure_binary(java_bin(), "openjdk-17-jre-headless")
    if shutil.which("mvn") is None:
        apt_install(["maven"])


def resolve_classpath(pom: Path, cache_file: Path) -> str:
    """
    Return the runtime classpath of ``pom``, asking Maven only when it changed.

    The classpath is cached next to a hash of the pom. While both match and
    every jar is still in the local Maven repository, Maven is not run at all,
    so a second start downloads nothing.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = cache_file.with_name(cache_file.name + ".sha256")
    if _classpath_cached(cache_file, stamp, digest):
        return cache_file.read_text(encoding="utf-8").strip()

    logger.info("resolving jars for %s with Maven", pom)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    _run_maven_build_classpath(pom, cache_file)
    stamp.write_text(digest, encoding="utf-8")
    return cache_file.read_text(encoding="utf-8").strip()


def _classpath_cached(cache_file: Path, stamp: Path, digest: str) -> bool:
    if not (cache_file.exists() and stamp.exists()):
        return False
    if stamp.read_text(encoding="utf-8").strip() != digest:
        return False
    jars = cache_file.read_text(encoding="utf-8").strip().split(os.pathsep)
    return all(Path(jar).is_file() for jar in jars)


def _run_maven_build_classpath(pom: Path, cache_file: Path) -> None:
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:build-classpath",
        f"-Dmdep.outputFile={cache_file}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise InstallError(f"Maven failed for {pom}:\n{output}")


# Processes


def _proc_stat(pid: int) -> list[str] | None:
    """
    Return the fields of /proc/<pid>/stat after the command name, or None.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _alive(pid: int, ticks: str) -> bool:
    """
    Tell whether ``pid`` is still the process that started at ``ticks``.
    """
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z" and fields[19] == ticks


def _process_tree(root: int) -> dict[int, str]:
    """
    Return ``root``, its process group and all its descendants, with start ticks.

    PostgreSQL's children call setsid(), so the group alone misses them; the
    start ticks keep a later stop from signalling a recycled pid.
    """
    table: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        fields = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[0] != "Z":
            table[int(entry.name)] = fields

    tree = {pid for pid, fields in table.items() if fields[2] == str(root)}
    tree.add(root)
    grew = True
    while grew:
        children = {pid for pid, f in table.items() if int(f[1]) in tree} - tree
        tree |= children
        grew = bool(children)
    return {pid: table[pid][19] for pid in tree if pid in table}


class LocalServer(ABC):
    """
    One server process on 127.0.0.1, with its files under ``<root>/<name>``.
    """

    name: ClassVar[str]
    ready_timeout: ClassVar[float] = 60.0
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else local_dir()
        self.home = self.root / self.name
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched_at = 0.0

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.home / "server.pid"

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """
        Every TCP port the server listens on; all must be free before a start.
        """

    @abstractmethod
    def install(self) -> None:
        """
        Install what the server needs; does nothing when it is already there.
        """

    @abstractmethod
    def settings(self) -> dict[str, str]:
        """
        Connection settings for clients, as environment variables.
        """

    @abstractmethod
    def _prepare(self) -> None:
        """
        Write fresh data folders and config files before a launch.
        """

    @abstractmethod
    def _command(self) -> list[str]:
        """
        The command line that runs the server in the foreground.
        """

    @abstractmethod
    def _probe(self) -> None:
        """
        Check once that the server answers; raise any error when it does not.
        """

    def _on_ready(self) -> None:  # noqa: B027 - optional hook, empty by default
        """
        Run once after the first successful probe (e.g. create users).
        """

    def _run_as(self) -> str | None:
        return None

    # Start

    def start(self, timeout: float | None = None) -> float:
        """
        Launch the server and wait until it answers; return the seconds waited.
        """
        self.launch()
        return self.wait_ready(timeout)

    def restart(self, timeout: float | None = None) -> float:
        """
        Stop the server and start it again on the data it has, for outage tests.

        Return the seconds from the new launch until it answered.
        """
        self.stop()
        self.install()
        self._check_ports_free()
        self._launched_at = time.monotonic()
        self._proc = self._spawn()
        self._write_pid(self._proc.pid)
        logger.info("%s: relaunched pid %s on its old data", self.name, self._proc.pid)
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """
        Start the server process in its own session without waiting for it.
        """
        running = self.running_pid()
        if running is not None:
            logger.info("%s: already running, pid %s", self.name, running)
            self._launched_at = time.monotonic()
            return
        self._check_ports_free()
        self._prepare()
        self._launched_at = time.monotonic()
        self._proc = self._spawn()
        self._write_pid(self._proc.pid)
        logger.info(
            "%s: launched pid %s, log %s", self.name, self._proc.pid, self.log_path
        )

    def _check_ports_free(self) -> None:
        busy = [port for port in self.ports if port_open(port)]
        if busy:
            raise StartError(
                f"{self.name}: port(s) {busy} on {HOST} are already in use by "
                "a process this tool did not start"
            )

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
                user=self._run_as(),
                group=self._run_as(),
                extra_groups=[] if self._run_as() else None,
            )

    def wait_ready(self, timeout: float | None = None) -> float:
        """
        Poll the readiness probe until it passes; return the seconds waited.

        On timeout, or when the process exits, the server is stopped and a
        ``StartError`` carrying the tail of its log is raised.
        """
        limit = timeout if timeout is not None else self.ready_timeout
        deadline = time.monotonic() + limit
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self._fail_if_exited()
            try:
                self._probe()
            except Exception as error:  # any failure here means "not yet"
                last_error = error
                time.sleep(0.5)
                continue
            self._finish_setup()
            return time.monotonic() - self._launched_at

        self.stop()
        raise StartError(
            f"{self.name}: not ready after {limit:.0f} s (last probe error: "
            f"{last_error!r}); log tail of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _finish_setup(self) -> None:
        try:
            self._on_ready()
        except Exception as error:
            self.stop()
            raise StartError(
                f"{self.name}: setup after start failed: {error}"
            ) from error

    def _fail_if_exited(self) -> None:
        if self._proc is None:
            if self.running_pid() is None:
                raise StartError(f"{self.name}: not running (no live recorded pid)")
            return
        if self._proc.poll() is None:
            return
        code = self._proc.returncode
        self._remove_pid()
        raise StartError(
            f"{self.name}: exited with code {code} during start; log tail of "
            f"{self.log_path}:\n{log_tail(self.log_path)}"
        )

    # Stop and status

    def running_pid(self) -> int | None:
        """
        Return the recorded pid when that very process is still alive.
        """
        record = self._read_pid()
        if record is None:
            return None
        pid, ticks = record
        return pid if _alive(pid, ticks) else None

    def stop(self, timeout: float = 30.0) -> bool:
        """
        Stop the recorded process tree; return False when nothing was running.

        Sends ``stop_signal`` to the recorded pid, waits up to ``timeout``
        seconds for it, its process group and its descendants to exit, then
        sends SIGKILL to whatever is left of them. Never signals any process
        it did not start itself.
        """
        pid = self.running_pid()
        if pid is None:
            self._remove_pid()
            return False
        tree = _process_tree(pid)
        logger.info("%s: sending %s to pid %s", self.name, self.stop_signal.name, pid)
        os.kill(pid, self.stop_signal)
        if not self._wait_gone(tree, timeout):
            logger.warning(
                "%s: still running after %.0f s, SIGKILL", self.name, timeout
            )
            self._kill(tree)
            self._wait_gone(tree, 10.0)
        self._remove_pid()
        return True

    def _wait_gone(self, tree: dict[int, str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()  # reap our own child so it is not a zombie
            if not any(_alive(pid, ticks) for pid, ticks in tree.items()):
                return True
            time.sleep(0.2)
        return False

    def _kill(self, tree: dict[int, str]) -> None:
        for pid, ticks in tree.items():
            if _alive(pid, ticks):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _write_pid(self, pid: int) -> None:
        ticks = _start_ticks(pid) or "0"
        self.pid_path.write_text(f"{pid} {ticks}\n", encoding="ascii")

    def _read_pid(self) -> tuple[int, str] | None:
        try:
            pid, ticks = self.pid_path.read_text(encoding="ascii").split()
        except (FileNotFoundError, ValueError):
            return None
        return int(pid), ticks

    def _remove_pid(self) -> None:
        self.pid_path.unlink(missing_ok=True)

    def _fresh_dir(self, path: Path) -> Path:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


def _write_config(path: Path, lines: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Kafka


class KafkaServer(LocalServer):
    """
    One Kafka 4.x node in KRaft combined mode (broker and controller).
    """

    name = "kafka"
    ready_timeout = 120.0
    probe_topic = "duetto-readiness-probe"

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root)
        self.port = env_port("DUETTO_LOCAL_KAFKA_PORT", 19092)
        self.controller_port = env_port("DUETTO_LOCAL_KAFKA_CONTROLLER_PORT", 19093)
        self.classpath = ""

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def install(self) -> None:
        ensure_java_and_maven()
        self.classpath = resolve_classpath(
            PACKAGE_DIR / "kafka" / "pom.xml",
            self.root / "cache" / "kafka.classpath",
        )

    def settings(self) -> dict[str, str]:
        return {"DUETTO_KAFKA_BOOTSTRAP": self.bootstrap}

    def _prepare(self) -> None:
        if not self.classpath:
            self.install()
        self._fresh_dir(self.home)
        self._write_properties()
        self._write_log4j()
        self._format_storage()

    def _write_properties(self) -> None:
        listeners = (
            f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}"
        )
        _write_config(
            self.home / "server.properties",
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{HOST}:{self.controller_port}",
                f"listeners={listeners}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                "inter.broker.listener.name=PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map="
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.home / 'data'}",
                "num.partitions=1",
                # One broker: every internal topic gets a single replica, and
                # few partitions so the first consumer-group join is quick.
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
            ],
        )

    def _write_log4j(self) -> None:
        _write_config(
            self.home / "log4j2.properties",
            [
                "status = warn",
                "appender.console.type = Console",
                "appender.console.name = console",
                "appender.console.layout.type = PatternLayout",
                "appender.console.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.console.ref = console",
            ],
        )

    def _java(self, heap: list[str], main: str, *args: str) -> list[str]:
        return [
            str(java_bin()),
            *heap,
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            self.classpath,
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        command = self._java(
            ["-Xmx256m"],
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.home / "server.properties"),
        )
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise StartError(
                f"kafka: storage format failed:\n{log_tail(self.log_path)}"
            )

    def _command(self) -> list[str]:
        heap = [
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
        ]
        return self._java(heap, "kafka.Kafka", str(self.home / "server.properties"))

    def _probe(self) -> None:
        if not port_open(self.port):
            raise NotReadyError(f"kafka: port {self.port} closed")
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = NewTopic(self.probe_topic, num_partitions=1, replication_factor=1)
        created = admin.create_topics([topic], operation_timeout=10, request_timeout=10)
        try:
            created[self.probe_topic].result(timeout=15)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        deleted = admin.delete_topics([self.probe_topic], operation_timeout=10)
        deleted[self.probe_topic].result(timeout=15)


# Cassandra

_CASSANDRA_JDK17_EXPORTS = (
    "java.base/jdk.internal.misc",
    "java.base/java.lang.ref",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.management/com.sun.jmx.remote.security",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.sql/java.sql",
    "jdk.unsupported/sun.misc",
    "jdk.attach/sun.tools.attach",
    "jdk.compiler/com.sun.tools.javac.file",
)
_CASSANDRA_JDK17_OPENS = (
    "java.base/java.io",
    "java.base/java.lang",
    "java.base/java.lang.module",
    "java.base/java.lang.reflect",
    "java.base/java.nio",
    "java.base/java.util",
    "java.base/jdk.internal.loader",
    "java.base/jdk.internal.math",
    "java.base/jdk.internal.module",
    "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.util.jar",
    "java.base/sun.nio.ch",
    "jdk.compiler/com.sun.tools.javac",
    "jdk.management/com.sun.management.internal",
)
_CASSANDRA_JVM_FLAGS = (
    "-Xms1G",
    "-Xmx1G",
    "-Xss256k",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-XX:+UseThreadPriorities",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+PerfDisableSharedMem",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dchronicle.analytics.disable=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Dcassandra-foreground=yes",
    "-Dcassandra.libjemalloc=-",
    # Test-only fast start: a lone seed need not wait for gossip to settle,
    # schema changes skip their flush, and shutdown skips the 2 s announce.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.unsafesystem=true",
    "-Dcassandra.shutdown_announce_in_ms=0",
)


class CassandraServer(LocalServer):
    """
    One Cassandra 5.0 node from the Maven ``cassandra-all`` jars, on Java 17.
    """

    name = "cassandra"
    ready_timeout = 240.0

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root)
        self.port = env_port("DUETTO_LOCAL_CASSANDRA_PORT", 19042)
        self.storage_port = env_port("DUETTO_LOCAL_CASSANDRA_STORAGE_PORT", 17000)
        self.classpath = ""
        self.release_version = ""

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.storage_port)

    def install(self) -> None:
        ensure_java_and_maven()
        self.classpath = resolve_classpath(
            PACKAGE_DIR / "cassandra" / "pom.xml",
            self.root / "cache" / "cassandra.classpath",
        )

    def settings(self) -> dict[str, str]:
        return {
            "DUETTO_CASSANDRA_HOSTS": HOST,
            "DUETTO_CASSANDRA_PORT": str(self.port),
        }

    def _prepare(self) -> None:
        if not self.classpath:
            self.install()
        self._fresh_dir(self.home)
        self._fresh_dir(self.home / "tmp")
        self._fresh_dir(self.home / "triggers")
        self._write_yaml()
        self._write_logback()

    def _write_yaml(self) -> None:
        data = self.home / "data"
        _write_config(
            self.home / "cassandra.yaml",
            [
                "cluster_name: duetto_local",
                "num_tokens: 1",
                "partitioner: org.apache.cassandra.dht.Murmur3Partitioner",
                "endpoint_snitch: SimpleSnitch",
                "seed_provider:",
                "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider",
                f'    parameters: [{{seeds: "{HOST}:{self.storage_port}"}}]',
                f"listen_address: {HOST}",
                f"rpc_address: {HOST}",
                f"storage_port: {self.storage_port}",
                f"native_transport_port: {self.port}",
                f"data_file_directories: [{data / 'data'}]",
                f"commitlog_directory: {data / 'commitlog'}",
                f"saved_caches_directory: {data / 'saved_caches'}",
                f"hints_directory: {data / 'hints'}",
                f"cdc_raw_directory: {data / 'cdc_raw'}",
                "commitlog_sync: periodic",
                "commitlog_sync_period: 10000ms",
                "authenticator: AllowAllAuthenticator",
                "authorizer: AllowAllAuthorizer",
                "auto_snapshot: false",
                "hinted_handoff_enabled: false",
                "concurrent_reads: 4",
                "concurrent_writes: 4",
                "concurrent_counter_writes: 4",
                "concurrent_compactors: 1",
                "memtable_flush_writers: 1",
            ],
        )

    def _write_logback(self) -> None:
        _write_config(
            self.home / "logback.xml",
            [
                "<configuration>",
                '  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">',
                "    <encoder>",
                "      <pattern>%-5level [%thread] %date{ISO8601} %logger{0} %msg%n"
                "</pattern>",
                "    </encoder>",
                "  </appender>",
                '  <root level="INFO">',
                '    <appender-ref ref="OUT"/>',
                "  </root>",
                "</configuration>",
            ],
        )

    def _command(self) -> list[str]:
        jamm = next(
            (jar for jar in self.classpath.split(os.pathsep) if "/jamm-" in jar), None
        )
        return [
            str(java_bin()),
            *_CASSANDRA_JVM_FLAGS,
            *(f"--add-exports={name}=ALL-UNNAMED" for name in _CASSANDRA_JDK17_EXPORTS),
            *(f"--add-opens={name}=ALL-UNNAMED" for name in _CASSANDRA_JDK17_OPENS),
            *([f"-javaagent:{jamm}"] if jamm else []),
            f"-Djna.tmpdir={self.home / 'tmp'}",
            f"-Djava.io.tmpdir={self.home / 'tmp'}",
            f"-Dcassandra.config=file://{self.home / 'cassandra.yaml'}",
            f"-Dcassandra.logdir={self.home / 'logs'}",
            f"-Dcassandra.storagedir={self.home / 'data'}",
            f"-Dcassandra.triggers_dir={self.home / 'triggers'}",
            f"-Dlogback.configurationFile={self.home / 'logback.xml'}",
            "-cp",
            self.classpath,
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def _probe(self) -> None:
        if not port_open(self.port):
            raise NotReadyError(f"cassandra: port {self.port} closed")
        from cassandra.cluster import Cluster

        cluster = Cluster([HOST], port=self.port, connect_timeout=5)
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            self.release_version = str(row[0])
        finally:
            cluster.shutdown()


# Redis


class RedisServer(LocalServer):
    """
    A private redis-server from Debian's package, without persistence.
    """

    name = "redis"
    ready_timeout = 30.0
    binary = Path("/usr/bin/redis-server")

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root)
        self.port = env_port("DUETTO_LOCAL_REDIS_PORT", 16390)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def install(self) -> None:
        ensure_binary(self.binary, "redis-server")

    def settings(self) -> dict[str, str]:
        return {"DUETTO_REDIS_URL": self.url}

    def _prepare(self) -> None:
        self.install()
        self._fresh_dir(self.home)
        self._fresh_dir(self.home / "data")

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.home / "data"),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]

    def _probe(self) -> None:
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_timeout=2)
        try:
            if not client.ping():
                raise NotReadyError("redis: PING was not answered with PONG")
        finally:
            client.close()


# PostgreSQL


class PostgresServer(LocalServer):
    """
    A private PostgreSQL cluster from Debian's package, run as the postgres user.

    PostgreSQL refuses to run as root, so initdb and the server run as the
    ``postgres`` OS user on a data folder it owns. After start, the password
    user ``duetto`` owns a database ``duetto`` reachable over TCP.
    """

    name = "postgres"
    ready_timeout = 60.0
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for clients.
    stop_signal = signal.SIGINT
    os_user = "postgres"
    db_user = "duetto"
    db_password = "duetto"
    db_name = "duetto"

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root)
        self.port = env_port("DUETTO_LOCAL_POSTGRES_PORT", 15432)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def dsn(self) -> str:
        return (
            f"postgresql://{self.db_user}:{self.db_password}"
            f"@{HOST}:{self.port}/{self.db_name}"
        )

    def install(self) -> None:
        if self._bin_dir() is None:
            apt_install(["postgresql"])
        if self._bin_dir() is None:
            raise InstallError("postgresql installed, but no postgres binary found")

    def settings(self) -> dict[str, str]:
        return {
            "DUETTO_POSTGRES_DSN": self.dsn,
            "DUETTO_POSTGRES_HOST": HOST,
            "DUETTO_POSTGRES_PORT": str(self.port),
            "DUETTO_POSTGRES_USER": self.db_user,
            "DUETTO_POSTGRES_PASSWORD": self.db_password,
            "DUETTO_POSTGRES_DB": self.db_name,
        }

    def _bin_dir(self) -> Path | None:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda path: int(path.parent.parent.name),
        )
        return found[-1].parent if found else None

    def _binary(self, name: str) -> str:
        bin_dir = self._bin_dir()
        if bin_dir is None:
            raise InstallError("postgres is not installed; run install() first")
        return str(bin_dir / name)

    def _run_as(self) -> str | None:
        return self.os_user

    def _prepare(self) -> None:
        self.install()
        self._fresh_dir(self.home)
        for path in (self.home, self._fresh_dir(self.socket_dir)):
            shutil.chown(path, self.os_user, self.os_user)
        self._initdb()

    def _initdb(self) -> None:
        command = [
            self._binary("initdb"),
            "-D",
            str(self.home / "data"),
            "-U",
            self.os_user,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                check=False,
                user=self.os_user,
                group=self.os_user,
                extra_groups=[],
            )
        if result.returncode != 0:
            raise StartError(f"postgres: initdb failed:\n{log_tail(self.log_path)}")

    def _command(self) -> list[str]:
        return [
            self._binary("postgres"),
            "-D",
            str(self.home / "data"),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            f"listen_addresses={HOST}",
            # Test-only speed: nothing here must survive a crash.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def _probe(self) -> None:
        with self._admin_connection() as connection:
            connection.execute("SELECT 1")

    def _admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.os_user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )

    def _on_ready(self) -> None:
        self._create_user_and_database()
        self._check_password_login()

    def _create_user_and_database(self) -> None:
        from psycopg import sql

        with self._admin_connection() as connection:
            has_role = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", [self.db_user]
            ).fetchone()
            if has_role is None:
                connection.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(self.db_user), sql.Literal(self.db_password)
                    )
                )
            has_db = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.db_name]
            ).fetchone()
            if has_db is None:
                connection.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.db_name), sql.Identifier(self.db_user)
                    )
                )

    def _check_password_login(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as connection:
            connection.execute("SELECT 1")


SERVER_TYPES: Mapping[str, type[LocalServer]] = {
    server.name: server
    for server in (RedisServer, PostgresServer, KafkaServer, CassandraServer)
}


def all_settings(servers: Iterable[LocalServer]) -> dict[str, str]:
    """
    Merge the connection settings of several servers.
    """
    merged: dict[str, str] = {}
    for server in servers:
        merged.update(server.settings())
    return merged


def write_env_file(servers: Iterable[LocalServer], root: Path | None = None) -> Path:
    """
    Write ``servers.env`` (KEY=value lines) with every server's settings.
    """
    path = (root if root is not None else local_dir()) / "servers.env"
    settings = all_settings(servers)
    return _write_config(path, (f"{key}={value}" for key, value in settings.items()))
