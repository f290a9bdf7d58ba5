"""The embedded server: the ``tritonserver`` binary bundled with nvidia-pytriton (python backend
only), run as a child process on a model repository.

nvidia-pytriton (the ``serve`` extra) ships the server under ``pytriton/tritonserver`` with one
python-backend stub per Python version; the stub for this interpreter is linked into a backend
folder of our own. The stub embeds libpython: ``LD_LIBRARY_PATH`` names this interpreter's
library folder (else it may load the system's libpython), and ``PATH`` starts with this
interpreter's folder so the embedded interpreter finds this environment's packages (including
softmask and numpy < 2, which PyTriton's python backend needs).

The server listens on ``host`` only (127.0.0.1 by default), with model control off (no loading
or unloading over the API). Triton's administrative APIs (``ADMIN_APIS``: logging, trace,
shared memory, repository, statistics) answer only requests carrying the admin key
(``ADMIN_HEADER``), a random key made at each start that softmask writes to ``admin.key`` in
the work folder (owner-only) and never logs. A ``host`` beyond this machine is refused unless
remote clients are allowed, and then inference, model configuration and metadata need the
stream token (``TOKEN_HEADER``) too; health stays open for load balancers.

The server runs in its own session (a process group with its python-backend stubs), so a Ctrl-C
reaches softmask, which stops it, killing the whole group if it does not stop in time; it also
gets SIGTERM if softmask dies (Linux parent-death signal).
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from softmask.errors import BackendUnavailable, InputError
from softmask.serve.protocol import ADMIN_HEADER, STREAM_MODEL, TOKEN_HEADER

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
LOG_NAME = "tritonserver.log"
# The repository ``softmask.serve.embedded.embedded_repository`` writes, inside the work folder.
REPOSITORY_DIR = "repository"
PORT_FLAGS = {"http_port": "--http-port", "grpc_port": "--grpc-port",
              "metrics_port": "--metrics-port"}
_PR_SET_PDEATHSIG = 1
# Triton's API groups (--http-restricted-api / --grpc-restricted-protocol) closed to requests
# without the admin key, and those closed to remote clients without the stream token.
ADMIN_APIS = ("logging", "trace", "shared-memory", "model-repository", "statistics")
STREAM_APIS = ("inference", "model-config", "metadata")
ADMIN_KEY_FILE = "admin.key"


def is_loopback(host: str) -> bool | None:
    """Whether ``host`` (an address or name) reaches this machine only; None if it does not
    resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return None
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse to listen beyond this machine unless ``allow_remote`` (a host that does not resolve
    is left to ``EmbeddedServer.check_startable``, which says so).

    Raises:
        InputError: ``host`` is not a loopback address and remote clients are not allowed.
    """
    if not allow_remote and is_loopback(host) is False:
        raise InputError(
            f"--host {host}: would open the server to other machines; pass --allow-remote to "
            "do so (streams then need the token it prints), or keep the default 127.0.0.1"
        )


@dataclass(frozen=True)
class AccessKeys:
    """Secrets of one server start: ``admin`` for Triton's administrative APIs, ``token`` (remote
    clients allowed) for streams. Never logged: ``redacted`` hides them in a command line."""

    admin: str
    token: str | None = None

    @classmethod
    def generate(cls, remote: bool) -> AccessKeys:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24) if remote else None)

    def server_args(self) -> list[str]:
        """tritonserver's restricted-API flags for these keys."""
        groups = [(ADMIN_APIS, ADMIN_HEADER, self.admin)]
        if self.token is not None:
            groups.append((STREAM_APIS, TOKEN_HEADER, self.token))
        args = []
        for apis, header, value in groups:
            rule = f"{','.join(apis)}:{header}={value}"
            args += [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
        return args

    def redacted(self, text: str) -> str:
        for secret in (self.admin, self.token):
            if secret:
                text = text.replace(secret, "***")
        return text

    def write_admin_key(self, folder: Path) -> Path:
        """``folder/admin.key``, readable by its owner only."""
        path = folder / ADMIN_KEY_FILE
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as stream:
            stream.write(self.admin + "\n")
        return path


@dataclass(frozen=True)
class BundledServer:
    """Paths inside an installed nvidia-pytriton."""

    binary: Path
    python_backend: Path  # libtriton_python.so, triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this Python version
    libraries: Path  # the wheel's bundled shared libraries


def bundled_server() -> BundledServer:
    """Locate the tritonserver bundled with nvidia-pytriton for this interpreter.

    Raises:
        BackendUnavailable: nvidia-pytriton is missing, or has no stub for this Python.
    """
    try:
        import pytriton
    except ImportError as error:
        raise BackendUnavailable(
            f"the embedded server needs nvidia-pytriton (`import pytriton` failed: {error}); "
            "install the serve extra, `pip install 'softmask[serve]'`, in an environment with "
            "numpy < 2 (scripts/setup_env.sh serve makes .venv-serve)"
        ) from error
    root = Path(pytriton.__file__).resolve().parent
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    server = BundledServer(
        binary=dist / "bin" / "tritonserver",
        python_backend=dist / "backends" / "python",
        stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        libraries=root.parent / "nvidia_pytriton.libs",
    )
    for path in (server.binary, server.python_backend, server.stub):
        if not path.exists():
            raise BackendUnavailable(
                f"nvidia-pytriton at {root} lacks {path.relative_to(root)} (Python {version} "
                "stubs are shipped for 3.8-3.13 on Linux); reinstall it or use another Python"
            )
    return server


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_free(host: str, port: int) -> None:
    """Check that the server can listen on ``host:port``: something listening there already
    would make it fail to bind, and a readiness probe could be answered by that other server.

    Raises:
        InputError: ``host`` does not resolve, or is not an address of this machine (--host).
        BackendUnavailable: the port is in use, or may not be used (e.g. below 1024).
    """
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise InputError(f"--host {host}: cannot be resolved ({error.strerror})") from error
    with socket.socket(family, kind) as sock:
        # As servers do: closed connections lingering in TIME_WAIT do not block the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                raise InputError(
                    f"--host {host}: not an address of this machine ({error.strerror}); use "
                    "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
                ) from error
            why = "is in use" if error.errno == errno.EADDRINUSE else "cannot be used"
            raise BackendUnavailable(
                f"port {port} on {host} {why} ({error.strerror}); stop what listens there or "
                "choose other ports (--http-port/--grpc-port/--metrics-port, 0 picks a free one)"
            ) from error


def _backend_folder(server: BundledServer, work_dir: Path) -> Path:
    """``work_dir/backends`` with a python backend whose stub matches this interpreter."""
    python = work_dir / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in (*server.python_backend.iterdir(), server.stub):
        if source.name == "__pycache__":
            continue
        link = python / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return python.parent


def _environment(server: BundledServer) -> dict[str, str]:
    env = dict(os.environ)
    libraries = [sysconfig.get_config_var("LIBDIR") or "", str(server.libraries)]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [p for p in libraries if p] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The softmask this process runs (a source checkout or an installed package).
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return env


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux), so no server outlives
    softmask."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass(frozen=True)
class Endpoints:
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def _reach(self) -> str:
        """Where a client on this machine reaches the server."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        return f"http://{self._reach}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._reach}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._reach}:{self.metrics_port}/metrics"


class EmbeddedServer:
    """tritonserver on ``repo``; ``start`` returns once every model is ready.

    Args:
        repo: a model repository whose models need the python backend only.
        endpoints: address and ports (0 picks a free port).
        work_dir: gets the backend folder, ``tritonserver.log`` and ``admin.key``.
        extra_args: more tritonserver flags.
        keys: the start's secrets (default: a fresh admin key, no stream token).
    """

    def __init__(
        self,
        repo: str | Path,
        endpoints: Endpoints,
        work_dir: str | Path,
        extra_args: tuple[str, ...] = (),
        keys: AccessKeys | None = None,
    ) -> None:
        for name, flag in PORT_FLAGS.items():
            port = getattr(endpoints, name)
            if not 0 <= port <= 65535:
                raise InputError(f"{flag} {port}: a port is 0..65535 (0 picks a free one)")
        self.repo = Path(repo).resolve()
        pick = {p: getattr(endpoints, p) or free_port() for p in
                ("http_port", "grpc_port", "metrics_port")}
        self.endpoints = Endpoints(endpoints.host, **pick)
        self.work_dir = Path(work_dir)
        self.log_path = self.work_dir / LOG_NAME
        self.extra_args = tuple(extra_args)
        self.keys = keys or AccessKeys.generate(remote=False)
        self.process: subprocess.Popen | None = None

    def command(self, server: BundledServer) -> list[str]:
        e = self.endpoints
        return [
            str(server.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={_backend_folder(server, self.work_dir)}",
            f"--http-address={e.host}", f"--http-port={e.http_port}",
            f"--grpc-address={e.host}", f"--grpc-port={e.grpc_port}",
            f"--metrics-address={e.host}", f"--metrics-port={e.metrics_port}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            # Our configs are complete; auto-completion would start every python stub twice.
            "--disable-auto-complete-config",
            "--exit-timeout-secs=5",
            *self.keys.server_args(),
            *self.extra_args,
        ]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _ready(self) -> bool:
        url = f"{self.endpoints.http_url}/v2/models/{STREAM_MODEL}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def check_startable(self) -> BundledServer:
        """What ``start`` needs from the machine, checked before any other work (an export
        takes long): the bundled server, a resolvable ``host`` and free ports.

        Raises:
            InputError: ``host`` is not an address of this machine.
            BackendUnavailable: a port is in use, or nvidia-pytriton is missing.
        """
        e = self.endpoints
        for port in (e.http_port, e.grpc_port, e.metrics_port):
            _check_free(e.host, port)
        return bundled_server()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until softmask_stream is ready.

        Raises:
            BackendUnavailable: nvidia-pytriton is missing, a port is in use, or the server
                exited or was not ready within ``timeout_s`` (the message has the end of its
                log).
            InputError: no repository at ``repo``, or ``host`` is not an address of this
                machine.
        """
        if not (self.repo / STREAM_MODEL / "config.pbtxt").is_file():
            raise InputError(f"{self.repo}: no {STREAM_MODEL} model (write one with softmask "
                             "serve repo)")
        server = self.check_startable()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        command = self.command(server)
        self.keys.write_admin_key(self.work_dir)
        logger.info("starting %s", self.keys.redacted(" ".join(command)))
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_environment(server), start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()  # first: a readiness answer must come from this server
            if code is None and self._ready():
                break
            if code is not None:
                self._kill_group()  # stubs it started may outlive it
                raise BackendUnavailable(
                    f"tritonserver exited with code {code} before it was ready; the end of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BackendUnavailable(
                    f"tritonserver was not ready within {timeout_s:g} s; the end of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)
        logger.info("tritonserver ready (pid %d)", self.process.pid)

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        assert self.process is not None
        return self.process.wait()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Stop the server (SIGINT, as Ctrl-C; after ``timeout_s``, SIGKILL to its process
        group: the server and the python-backend stubs it started); its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver did not stop within %g s; killing it and its "
                               "stubs", timeout_s)
                self._kill_group()
                process.wait(timeout=timeout_s)
        self._kill_group()  # stubs that outlived the server
        return process.returncode

    def _kill_group(self) -> None:
        """SIGKILL to the server's process group (its session: the server and its stubs)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    def __enter__(self) -> EmbeddedServer:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

