"""Serving a model on the embedded server (``softmask serve start``): what it serves (an export,
a checkpoint exported for a frame size, or a repository ``softmask serve repo`` wrote), the
checks of those settings before any work, and the foreground lifecycle: start, wait, stop on
Ctrl-C or SIGTERM, clean up.

The server process itself (ports, keys, starting and stopping ``tritonserver``) is
``softmask.serve.server``.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from softmask.errors import BackendUnavailable, InputError
from softmask.runtime.settings import RunSettings
from softmask.serve.repository import (
    PYTHON_ONLY_VARIANTS,
    StreamLimits,
    read_repository_manifest,
    write_repository,
)
from softmask.serve.server import (
    REPOSITORY_DIR,
    START_TIMEOUT_S,
    AccessKeys,
    EmbeddedServer,
    Endpoints,
    check_host,
)


@dataclass(frozen=True)
class EmbeddedOptions:
    """What the embedded server's repository takes beyond the model's ``RunSettings``
    (``export_dir`` [--export], ``checkpoint``, ``num_objects``, ``temporal_window``,
    ``min_dim``, ``max_dim``); None / False: not given.

    height [--height], width [--width]: frame size in pixels to export the checkpoint for.
    graphs [--graphs]: one of ``PYTHON_ONLY_VARIANTS`` (None: "in-process").
    limits: the repository's stream limits.
    """

    height: int | None = None
    width: int | None = None
    graphs: str | None = None
    limits: StreamLimits = field(default_factory=StreamLimits)


@dataclass(frozen=True)
class StartOptions:
    """How ``serve_embedded`` runs the server.

    endpoints [--host, --http-port, --grpc-port, --metrics-port]: address and ports (0 picks a
        free port; the command's defaults are 127.0.0.1, 8000, 8001, 8002).
    allow_remote [--allow-remote]: allow a host reachable from other machines (streams then need
        the token of ``AccessKeys``).
    repo [--repo]: serve this repository (written already) instead of writing one.
    work_dir [--work-dir]: keeps the repository, ``admin.key`` and the server log (None: a
        temporary folder, removed at the end).
    start_timeout_s [--start-timeout]: seconds to wait for the server to be ready.
    """

    endpoints: Endpoints
    allow_remote: bool = False
    repo: str | Path | None = None
    work_dir: str | Path | None = None
    start_timeout_s: float = START_TIMEOUT_S


@dataclass(frozen=True)
class Stopped:
    """How a foreground server ended: the server's exit code (None: it never started) and the
    interrupt (Ctrl-C or SIGTERM) that stopped it."""

    server_code: int | None
    interrupt: KeyboardInterrupt


def check_embedded_model(settings: RunSettings, options: EmbeddedOptions | None = None) -> None:
    """Refuse model settings ``embedded_repository`` would ignore or cannot use, before any work.

    With ``settings.export_dir`` the export fixes the model: --checkpoint is refused, and the
    other settings must equal the export's (as ``softmask run --export-dir`` checks). Without
    it, --height, --width and --objects are needed to export the model.

    Raises:
        InputError: one line naming the flag.
    """
    options = options or EmbeddedOptions()
    height, width = options.height, options.width
    if settings.export_dir is None:
        if None in (height, width, settings.num_objects):
            raise InputError(
                "give --export DIR, or --height, --width and --objects to export the model "
                "(--checkpoint, default the bundled one) for that frame size"
            )
        settings.check()
        return
    if settings.checkpoint is not None:
        raise InputError("--checkpoint: the export given with --export fixes the model; give "
                         "--checkpoint or --export, not both")
    from softmask.export.manifest import load_streaming_export

    export = load_streaming_export(settings.export_dir)
    settings.check_export(export)
    for flag, given, made in (("--height", height, export.spec.height),
                              ("--width", width, export.spec.width)):
        if given is not None and given != made:
            raise InputError(
                f"{flag} {given}: the export in {export.directory} was made for {made}; drop "
                f"{flag} or export again"
            )


def embedded_repository(
    work_dir: str | Path, settings: RunSettings, options: EmbeddedOptions | None = None
) -> Path:
    """A repository for the embedded server in ``work_dir/repository``: from
    ``settings.export_dir``, or from ``settings.checkpoint`` (None: the bundled model) at
    ``options.height`` x ``options.width`` with ``settings.num_objects`` slots, taken from the
    export cache (exported there first if missing).

    Raises:
        InputError: settings ``check_embedded_model`` refuses.
        ExportError: the export failed.
    """
    options = options or EmbeddedOptions()
    check_embedded_model(settings, options)
    export_dir = settings.export_dir
    if export_dir is None:
        from softmask.runtime.settings import resolve_export

        export_dir = resolve_export(settings, options.height, options.width,
                                    settings.num_objects)[0].directory
    return write_repository(export_dir, Path(work_dir) / REPOSITORY_DIR,
                            graphs=options.graphs or "in-process", **options.limits.resolved())


def check_served_repository(repo: str | Path, settings: RunSettings,
                            options: EmbeddedOptions) -> None:
    """Refuse serving ``repo`` with settings that would write a repository (it is written
    already), or one whose graphs need a Triton backend the embedded server lacks.

    Raises:
        InputError: one line naming the flag, or the repository's variant.
    """
    limits = options.limits
    for flag, value in (
        ("--export", settings.export_dir), ("--checkpoint", settings.checkpoint),
        ("--height", options.height), ("--width", options.width),
        ("--objects", settings.num_objects), ("--window", settings.temporal_window),
        ("--min-dim", settings.min_dim), ("--max-dim", settings.max_dim),
        ("--graphs", options.graphs), ("--max-streams", limits.max_streams),
        ("--idle-timeout", limits.idle_timeout_s), ("--instances", limits.instances),
        ("--scores", limits.scores),
    ):
        if value not in (None, False):
            raise InputError(f"{flag}: --repo {repo} is written already, with its own model and "
                             f"limits (softmask serve repo sets them); drop {flag}")
    graphs = read_repository_manifest(repo)["graphs"]
    if graphs not in PYTHON_ONLY_VARIANTS:
        raise InputError(
            f"--repo {repo} runs its graphs on Triton's {graphs} backend, which the embedded "
            "server lacks (python backend only); serve it with the Triton container "
            "(docs/serving.md)"
        )


def serve_embedded(
    settings: RunSettings,
    options: EmbeddedOptions,
    start: StartOptions,
    on_starting: Callable[[EmbeddedServer], None] | None = None,
    on_ready: Callable[[EmbeddedServer, Path], None] | None = None,
) -> Stopped:
    """Serve in the foreground until interrupted: check every setting, then the machine (the
    bundled server, free ports), write the repository (exporting if needed) unless
    ``start.repo``, start the server and wait.

    ``on_starting(server)`` is called before the server starts, ``on_ready(server, work_dir)``
    once it is ready (``work_dir`` holds ``admin.key``). Ctrl-C (SIGINT, also when started in
    the background by a script, which ignores it) and SIGTERM (as ``KeyboardInterrupt``,
    ``softmask.signals.terminate_as_interrupt``) stop the server.

    Returns:
        How it stopped.

    Raises:
        InputError: a setting refused (naming the flag).
        BackendUnavailable: the bundled server is missing, a port is in use, or the server did
            not start or exited while serving (with the end of its log).
        ExportError: exporting the checkpoint failed.
    """
    check_host(start.endpoints.host, start.allow_remote)
    if start.repo is not None:
        check_served_repository(start.repo, settings, options)
    else:
        check_embedded_model(settings, options)
    work = Path(start.work_dir or tempfile.mkdtemp(prefix="softmask-serve-"))
    server = None
    try:
        server = EmbeddedServer(
            Path(start.repo) if start.repo is not None else work / REPOSITORY_DIR,
            start.endpoints, work, keys=AccessKeys.generate(remote=start.allow_remote),
        )
        server.check_startable()  # a port in use or a missing server is said before any export
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if start.repo is None:
            embedded_repository(work, settings, options)
        if on_starting is not None:
            on_starting(server)
        server.start(timeout_s=start.start_timeout_s)
        if on_ready is not None:
            on_ready(server, work)
        code = server.wait()
        raise BackendUnavailable(
            f"tritonserver exited with code {code} while serving; the end of "
            f"{server.log_path}:\n{server.log_tail()}"
        )
    except KeyboardInterrupt as stop:
        return Stopped(server.stop() if server is not None else None, stop)
    finally:
        if server is not None:
            server.stop()
        if not start.work_dir:
            shutil.rmtree(work, ignore_errors=True)
