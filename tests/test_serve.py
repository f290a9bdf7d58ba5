"""softmask.serve: the stream table, the repository writer, and the embedded Triton server with
real clients (in-process and BLS graphs) against ``softmask run``'s masks on the same export.

The server and the stream client run from the serve environment (``.venv-serve``, numpy<2, made by
``scripts/test.sh`` with ``scripts/setup_env.sh serve``; where it is missing, a test needing it
fails naming that command); these tests drive them as processes and speak Triton's HTTP/JSON
protocol with urllib, all on 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import onnx
import pytest
from PIL import Image

import softmask.serve.client as client_module
import softmask.serve.server as server_module
from softmask.cli import main
from softmask.data.io import davis_palette
from softmask.errors import BackendUnavailable, InputError, StreamLost
from softmask.runtime import OnnxRuntimeBackend, VideoStream, run_video
from softmask.serve.client import ServerStream, stream_source
from softmask.serve.protocol import (
    ADMIN_HEADER,
    KEY_BYTES,
    STREAM_MODEL,
    TOKEN_HEADER,
    stream_id_number,
)
from softmask.serve.repository import (
    GRAPH_VARIANTS,
    SPARE_SEQUENCE_SLOTS,
    read_repository_manifest,
    write_repository,
)
from softmask.serve.server import ADMIN_KEY_FILE, AccessKeys, EmbeddedServer, Endpoints, free_port
from softmask.serve.streams import StreamTable
from softmask.serve.triton_model import StreamModel
from softmask.testing_hooks import PAUSE_AT, PAUSE_FILE
from tests.videos import first_annotation, moving_objects, write_label_png, write_video

ROOT = Path(__file__).resolve().parents[1]
H, W, N, WINDOW = 64, 96, 3, 3
MIN_DIM = 48
IDLE_S = 2.0
MAX_STREAMS = 3
START_TIMEOUT_S = 180
CLIENT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def export(shared_export):
    return shared_export(H, W, N, WINDOW, min_dim=MIN_DIM)


def _video(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a bright square moving down (object 1) and its first-frame annotation."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 96, (frames, H, W, 3), dtype=np.uint8)
    x0 = 10 + 7 * (seed % 5)
    for t in range(frames):
        y = 4 + (t * 2) % 24
        video[t, y : y + 30, x0 : x0 + 30] = 230
    annotation = np.zeros((H, W), np.uint8)
    annotation[4:34, x0 : x0 + 30] = 1
    return video, annotation


def _write_video(folder: Path, video: np.ndarray, annotation: np.ndarray) -> tuple[Path, Path]:
    frames, labels = folder / "frames", folder / "annotations"
    frames.mkdir(parents=True)
    labels.mkdir()
    for t, frame in enumerate(video):
        Image.fromarray(frame).save(frames / f"{t:05d}.png")
    image = Image.fromarray(annotation)
    image.putpalette(davis_palette().tobytes())
    image.save(labels / "00000.png")
    return frames, labels


def _masks(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((folder / "masks").glob("*.png"))]


def _reference(export, video: np.ndarray, annotation: np.ndarray) -> list[np.ndarray]:
    stream = VideoStream(OnnxRuntimeBackend(export))
    return [stream.process(f, annotation if t == 0 else None).labels for t, f in enumerate(video)]


# --- the stream table, without Triton --------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stream_table_interleaves_streams_each_as_if_alone(export):
    base = OnnxRuntimeBackend(export)
    table = StreamTable(base.new_stream, max_streams=2, idle_timeout_s=10)
    (va, aa), (vb, ab) = _video(1, 5), _video(2, 5)
    expected_a, expected_b = _reference(export, va, aa), _reference(export, vb, ab)
    for t in range(5):
        for sid, video, ann, expected in ((7, va, aa, expected_a), (8, vb, ab, expected_b)):
            out, index = table.process(sid, video[t], ann if t == 0 else None, start=t == 0,
                                       end=t == 4)
            assert index == t
            np.testing.assert_array_equal(out.labels, expected[t])
    assert table.open_count == 0  # END closed both


def test_stream_table_refusals_leave_state_alone(export):
    clock = _Clock()
    base = OnnxRuntimeBackend(export)
    table = StreamTable(base.new_stream, max_streams=1, idle_timeout_s=5, clock=clock)
    video, ann = _video(3, 4)
    expected = _reference(export, video, ann)
    with pytest.raises(InputError, match=r"stream 9: unknown stream: .* must carry START"):
        table.process(9, video[0])
    table.process(1, video[0], ann, start=True)
    with pytest.raises(InputError, match=r"stream 2: too many streams: .* at most 1"):
        table.process(2, video[0], ann, start=True)
    with pytest.raises(InputError, match=r"stream 1 frame 1: frame must be uint8 \[64, 96, 3\]"):
        table.process(1, video[1][:, :80])
    bad = ann.copy()
    bad[0, 0] = 7
    with pytest.raises(InputError, match=r"stream 1 frame 1: object id\(s\) \[7\] exceed"):
        table.process(1, video[1], bad)
    out, index = table.process(1, video[1])  # the refusals changed nothing
    assert index == 1
    np.testing.assert_array_equal(out.labels, expected[1])
    clock.now = 5.5
    assert table.reap_idle() == [1]
    assert table.open_count == 0 and table.reaped_total == 1
    with pytest.raises(InputError, match=r"stream 1: stream was reaped after more than 5 s"):
        table.process(1, video[2])


def test_a_stream_is_its_owners_other_clients_can_neither_advance_nor_reset_it(export):
    table = StreamTable(OnnxRuntimeBackend(export).new_stream, max_streams=2, idle_timeout_s=10)
    video, ann = _video(4, 3)
    expected = _reference(export, video, ann)
    owner, stranger = b"o" * 16, b"s" * 16
    table.process(5, video[0], ann, start=True, key=owner)
    for key in (stranger, None):
        with pytest.raises(InputError, match=r"stream 5: not this stream's owner: it was started"):
            table.process(5, video[1], key=key)
        with pytest.raises(InputError, match=r"stream 5: not this stream's owner"):
            table.process(5, video[0], ann, start=True, key=key)  # a reset
    out, index = table.process(5, video[1], key=owner)  # the owner's stream went on untouched
    assert index == 1
    np.testing.assert_array_equal(out.labels, expected[1])


class _Blocking:
    """A backend whose frames of stream ``blocked`` wait for ``release`` (bounded), to hold a
    frame inside the model at a known point."""

    name, device, precision = "blocking", "cpu", "fp32"

    def __init__(self, spec, entered: threading.Event, release: threading.Event) -> None:
        self.spec, self.entered, self.release = spec, entered, release
        self.blocks = False

    def new_stream(self) -> _Blocking:
        return _Blocking(self.spec, self.entered, self.release)

    def reset(self) -> None:
        pass

    def advance_empty(self) -> None:
        pass

    def run(self, graph, frame, annotation=None):
        from softmask.runtime.backend import FrameOutput

        if self.blocks:
            self.entered.set()
            assert self.release.wait(60), "the test never released the frame"
        return FrameOutput(np.zeros(frame.shape[:2], np.uint8), active=np.ones(1, bool),
                           timings={})


def test_a_frame_in_the_model_holds_up_neither_other_streams_nor_the_reaper(export):
    entered, release = threading.Event(), threading.Event()
    backends: list[_Blocking] = []

    def new_backend() -> _Blocking:
        backends.append(_Blocking(export.spec, entered, release))
        return backends[-1]

    table = StreamTable(new_backend, max_streams=2, idle_timeout_s=10)
    video, ann = _video(5, 2)
    table.process(1, video[0], ann, start=True)
    backends[0].blocks = True
    slow = threading.Thread(target=table.process, args=(1, video[1]), daemon=True)
    slow.start()
    try:
        assert entered.wait(60), "stream 1's frame never reached the model"
        other = threading.Thread(target=table.process, args=(2, video[0], ann), kwargs={
            "start": True, "end": True}, daemon=True)
        other.start()
        other.join(timeout=30)
        assert not other.is_alive(), "stream 2 waited for stream 1's frame"
        assert table.reap_idle() == []
        with pytest.raises(InputError, match=r"stream 1: stream busy"):
            table.process(1, video[1])
    finally:
        release.set()
        slow.join(timeout=30)
    assert not slow.is_alive()


def test_stream_ids_map_to_stable_correlation_ids():
    assert stream_id_number("42") == 42
    assert stream_id_number("camera-7") == stream_id_number("camera-7")
    assert 0 < stream_id_number("camera-7") < 2**63
    assert stream_id_number("camera-7") != stream_id_number("camera-8")


def test_a_refused_start_holds_no_stream_and_its_end_frees_the_sequence(export):
    base = OnnxRuntimeBackend(export)
    table = StreamTable(base.new_stream, max_streams=1, idle_timeout_s=5)
    video, ann = _video(4, 3)
    table.process(1, video[0], ann, start=True)
    with pytest.raises(InputError, match="stream 2: too many streams"):
        table.process(2, video[0], ann, start=True)
    # Triton still routes stream 2's sequence to the model until END: refused without work.
    with pytest.raises(InputError, match=r"stream 2: its START was refused.*send END"):
        table.process(2, video[1])
    with pytest.raises(InputError, match=r"stream 2: its START was refused.*this END frees"):
        table.process(2, video[1], end=True)
    with pytest.raises(InputError, match="stream 2: unknown stream"):
        table.process(2, video[2])
    bad = ann.copy()
    bad[0, 0] = 9
    with pytest.raises(InputError, match=r"stream 1 frame 0: object id\(s\) \[9\]"):
        table.process(1, video[0], bad, start=True)  # a refused restart of an open stream
    with pytest.raises(InputError, match="stream 1: its START was refused"):
        table.process(1, video[1])
    assert table.open_count == 0  # the stream it failed to restart went with it: no slot held
    _, index = table.process(1, video[0], ann, start=True)
    assert index == 0 and table.open_count == 1


# --- the stream model's answers and the client's reading of them, without Triton ---------------


class _Tensor:
    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def as_numpy(self) -> np.ndarray:
        return self.value


class _Pb:
    """The parts of triton_python_backend_utils that StreamModel.execute uses."""

    class TritonError:
        INVALID_ARG, UNAVAILABLE, INTERNAL = "INVALID_ARG", "UNAVAILABLE", "INTERNAL"

        def __init__(self, message: str, code: str | None = None) -> None:
            self.message, self.code = message, code

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None) -> None:
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.inputs.get(name)


class _Request:
    def __init__(self, stream: int) -> None:
        self.stream = stream
        self.inputs = {"FRAME": _Tensor(np.zeros((H, W, 3), np.uint8)),
                       "START": _Tensor(np.array([0], np.int32))}

    def correlation_id(self) -> int:
        return self.stream


def test_the_stream_model_answers_server_faults_as_internal_errors_not_refusals():
    failures = {
        1: InputError("stream 1: unknown stream: no stream with this id is open"),
        2: InputError("stream 2: too many streams: this server serves at most 1"),
        3: BackendUnavailable("graph model softmask_step failed: onnxruntime error"),
        4: RuntimeError("a bug"),
    }

    def process(stream, *args, **kwargs):
        raise failures[stream]

    model = StreamModel.__new__(StreamModel)
    model.pb, model.scores = _Pb, False
    model.table = SimpleNamespace(process=process)
    model.metrics = SimpleNamespace(update=lambda *args, **kwargs: None)
    errors = [r.error for r in model.execute([_Request(s) for s in failures])]
    assert [e.code for e in errors] == ["INVALID_ARG", "UNAVAILABLE", "INTERNAL", "INTERNAL"]
    assert errors[2].message == ("stream 3: server fault: BackendUnavailable: graph model "
                                 "softmask_step failed: onnxruntime error")
    assert errors[3].message == "stream 4: server fault: RuntimeError: a bug"
    # The client reads the message (a gRPC stream carries no status code): a fault of the
    # server is BackendUnavailable (exit 4), not a refused frame (exit 2).
    stream = ServerStream.__new__(ServerStream)
    stream.url, stream.stream_id = "grpc://127.0.0.1:1", "s"
    for error, kind in ((errors[2], BackendUnavailable), (errors[3], BackendUnavailable),
                        (errors[0], StreamLost), (errors[1], BackendUnavailable)):
        classified = stream._classify(SimpleNamespace(message=lambda e=error: e.message), 3)
        assert type(classified) is kind, classified
    refused = stream._classify(SimpleNamespace(message=lambda: "stream s frame 3: object id(s) "
                                                               "[9] exceed"), 3)
    assert type(refused) is InputError and "frame 3 refused" in str(refused)


class _FakeServerStream:
    """``ServerStream`` without a server: answers frame t with labels all t (mod 256), or fails
    as told; records what was sent and whether it was closed."""

    made: ClassVar[list[_FakeServerStream]] = []
    refuse_start = False

    def __init__(self, url, stream_id=None, timeout_s=None, token=None) -> None:
        self.url, self.stream_id, self.correlation_id = url, "fake", 1
        self.frame_shape, self.num_objects = (H, W), N
        self.sent, self.ends, self.closed, self.ended_early = 0, [], False, False
        _FakeServerStream.made.append(self)

    def open(self) -> None:
        pass

    def send(self, frame, annotation, first, last) -> None:
        self.sent += 1
        self.ends.append(last)

    def receive(self, index):
        if self.refuse_start:
            raise BackendUnavailable("grpc://fake: stream fake: too many streams")
        return time.perf_counter(), np.full((H, W), index % 256, np.uint8)

    def end_early(self) -> None:
        self.ended_early = True

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_server(monkeypatch):
    _FakeServerStream.made = []
    monkeypatch.setattr(_FakeServerStream, "refuse_start", False)
    monkeypatch.setattr(client_module, "ServerStream", _FakeServerStream)
    return _FakeServerStream


def _earlier_run(out: Path) -> dict[str, bytes]:
    (out / "masks").mkdir(parents=True)
    write_label_png(out / "masks" / "00000.png", np.ones((H, W), np.uint8))
    (out / "report.json").write_text("{}")
    return {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_the_client_closes_its_stream_and_keeps_earlier_outputs_when_it_fails_before_a_mask(
    fake_server, tmp_path
):
    video = [f for f in moving_objects(4)]
    out = tmp_path / "out"
    before = _earlier_run(out)
    bad = write_label_png(tmp_path / "bad.png", np.full((H, W), N + 1, np.uint8))
    with pytest.raises(InputError, match=r"bad.png: object id\(s\) \[4\] exceed the 3"):
        stream_source(video, [bad], out, "grpc://fake:1", overwrite=True)
    assert fake_server.made[-1].closed and fake_server.made[-1].sent == 0
    fake_server.refuse_start = True
    good = write_label_png(tmp_path / "good.png", first_annotation())
    with pytest.raises(BackendUnavailable, match="too many streams"):
        stream_source(video, [good], out, "grpc://fake:1", overwrite=True)
    assert fake_server.made[-1].closed
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_frame_of_another_size_ends_the_stream_after_every_earlier_mask(fake_server, tmp_path):
    video = [f for f in moving_objects(9)]
    video[6] = video[6][:, :80]
    good = write_label_png(tmp_path / "first.png", first_annotation())
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"frame 6: frame must be uint8 \[64, 96, 3\]"):
        stream_source(video, [good], out, "grpc://fake:1", in_flight=3)
    stream = fake_server.made[-1]
    assert stream.ends == [False] * 5 + [True], "frame 5 goes out with END"
    assert stream.closed
    masks = sorted((out / "masks").glob("*.png"))
    assert [p.stem for p in masks] == [f"{t:05d}" for t in range(6)]
    assert [int(np.asarray(Image.open(p)).max()) for p in masks] == list(range(6))
    report = json.loads((out / "report.json").read_text())
    assert not report["completed"] and "frame 6" in report["error"]
    assert report["frames"] == report["masks_written"] == 6


# --- the command line: refusals before any work ----------------------------------------------


def _cli(capsys, *args: object) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, fragment", [
    (["start", "--repo", "R", "--max-streams", "3"], "--max-streams: --repo R is written already"),
    (["start", "--repo", "R", "--idle-timeout", "5"], "--idle-timeout: --repo R is written"),
    (["start", "--repo", "R", "--instances", "2"], "--instances: --repo R is written already"),
    (["start", "--repo", "R", "--scores"], "--scores: --repo R is written already"),
    (["start", "--repo", "R", "--graphs", "python"], "--graphs: --repo R is written already"),
    (["start", "--repo", "R", "--window", "3"], "--window: --repo R is written already"),
    (["start", "--repo", "R", "--export", "E"], "--export: --repo R is written already"),
    (["start", "--export", "{export}", "--checkpoint", "tiny"],
     "--checkpoint: the export given with --export fixes the model"),
    (["start", "--export", "{export}", "--height", "99"], "--height 99: the export in"),
    (["start", "--export", "{export}", "--width", "99"], "--width 99: the export in"),
    (["start", "--export", "{export}", "--objects", "5"], "--objects 5: the export in"),
    (["start", "--export", "{export}", "--window", "5"], "--window 5: the export in"),
    (["start", "--export", "{export}", "--min-dim", "32"], "--min-dim 32: the export in"),
    (["start", "--export", "{export}", "--max-dim", "500"], "--max-dim 500: the export in"),
    (["start", "--checkpoint", "tiny"], "give --export DIR, or --height, --width and --objects"),
    (["repo", "--export", "{export}", "--out", "O", "--plugin", "p.so"],
     "--plugin: applies to --graphs tensorrt, not in-process"),
    (["repo", "--export", "{export}", "--out", "O", "--graphs", "python", "--skip-plans"],
     "--skip-plans: applies to --graphs tensorrt, not python"),
    (["start", "--export", "{export}", "--http-port", "70000"],
     "argument --http-port: must be a port 0..65535"),
    (["start", "--export", "{export}", "--grpc-port", "-1"], "argument --grpc-port: must be a port"),
    (["start", "--export", "{export}", "--idle-timeout", "nan"],
     "argument --idle-timeout: must be a positive number, got nan"),
    (["start", "--export", "{export}", "--idle-timeout", "inf"],
     "argument --idle-timeout: must be a finite positive number, got inf"),
    (["repo", "--export", "{export}", "--out", "O", "--idle-timeout", "0"],
     "argument --idle-timeout: must be a positive number, got 0"),
    (["start", "--export", "{export}", "--start-timeout", "0"],
     "argument --start-timeout: must be a positive number"),
    (["start", "--export", "{export}", "--start-timeout", "-3"],
     "argument --start-timeout: must be a positive number"),
    (["start", "--export", "{export}", "--host", "no-such-host.invalid", "--http-port", "0"],
     "--host no-such-host.invalid: cannot be resolved"),
    (["start", "--export", "{export}", "--host", "192.0.2.1", "--allow-remote", "--http-port",
      "0"], "--host 192.0.2.1: not an address of this machine"),
])
def test_serve_refuses_flags_it_would_ignore_and_bad_numbers_in_one_line(
    export, tmp_path, capsys, args, fragment
):
    args = [a.replace("{export}", str(export.directory)) for a in args]
    code, err = _cli(capsys, "serve", *args, *(["--work-dir", tmp_path / "w"]
                                              if args[0] == "start" else []))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "w" / "repository").exists() and not Path("O").exists()


def test_serve_start_says_the_server_is_missing_before_exporting(tmp_path, capsys, monkeypatch):
    def missing():
        raise BackendUnavailable("the embedded server needs nvidia-pytriton (test)")

    def export(*args, **kwargs):
        raise AssertionError("exported before checking the server")

    monkeypatch.setattr(server_module, "bundled_server", missing)
    monkeypatch.setattr("softmask.runtime.settings.resolve_export", export)
    code, err = _cli(capsys, "serve", "start", "--height", "64", "--width", "96", "--objects", "3",
                     "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                     "--work-dir", tmp_path / "w")
    assert code == 4 and err.strip() == (
        "softmask serve: error: the embedded server needs nvidia-pytriton (test)"
    ), err
    assert not (tmp_path / "w" / "repository").exists()


def test_repositories_are_written_whole_or_not_at_all(export, tmp_path, monkeypatch):
    repo = write_repository(export.directory, tmp_path / "repo", max_streams=2)
    before = {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("softmask.serve.repository.shutil.copyfile", fail)
    with pytest.raises(OSError, match="No space left"):
        write_repository(export.directory, repo, graphs="python", max_streams=5)
    after = {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert after == before, "the earlier repository is untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"], "no partial folder left"
    with pytest.raises(OSError):
        write_repository(export.directory, tmp_path / "new", graphs="python")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    write_repository(export.directory, repo, graphs="python", max_streams=5)
    assert read_repository_manifest(repo)["max_streams"] == 5
    assert not (repo / "softmask_stream" / "export").exists(), "the earlier variant's files go"


def test_stop_kills_the_whole_process_group_when_the_server_ignores_ctrl_c(tmp_path):
    """A server that ignores SIGINT, with a child (as tritonserver has python-backend stubs):
    after the timeout both are gone."""
    server = EmbeddedServer(tmp_path, Endpoints("127.0.0.1", 1, 2, 3), tmp_path)
    server.process = subprocess.Popen(
        ["bash", "-c", "trap '' INT; sleep 300 & echo $!; wait"], stdout=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    child = int(server.process.stdout.readline())
    try:
        server.stop(timeout_s=1)
        assert server.process.poll() is not None
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the server's child outlived stop()"
            time.sleep(0.05)
    finally:
        try:
            os.killpg(server.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.process.stdout.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# --- the serve environment --------------------------------------------------------------------


@pytest.fixture(scope="session")
def serve_python() -> Path:
    """The serve environment's interpreter (``$SOFTMASK_SERVE_PYTHON``, else ``.venv-serve``'s),
    checked to import PyTriton and the Triton client."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("the serve extra (nvidia-pytriton) ships Linux x86_64/aarch64 wheels only")
    python = Path(os.environ.get("SOFTMASK_SERVE_PYTHON", ROOT / ".venv-serve" / "bin" / "python"))
    probe = [str(python), "-c", "import pytriton, tritonclient.grpc"]
    if not python.exists() or subprocess.run(
        probe, check=False, capture_output=True, timeout=120
    ).returncode:
        pytest.fail(f"{python} cannot import pytriton and tritonclient: run bash scripts/test.sh "
                    "(it runs scripts/setup_env.sh serve)")
    return python


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _softmask(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "softmask.cli", *args]


def _parse_configs(python: Path, paths: list[Path]) -> list[dict]:
    """Each config.pbtxt parsed with tritonclient's ModelConfig schema (protobuf text format)."""
    script = (
        "import json, sys\n"
        "from google.protobuf import json_format, text_format\n"
        "from tritonclient.grpc import model_config_pb2\n"
        "out = []\n"
        "for path in sys.argv[1:]:\n"
        "    config = text_format.Parse(open(path).read(), model_config_pb2.ModelConfig())\n"
        "    out.append(json_format.MessageToDict(\n"
        "        config, always_print_fields_with_no_presence=True))\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(python), "-c", script, *map(str, paths)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_generated_repositories_parse_with_tritons_model_config_schema(
    serve_python, export, tmp_path
):
    for graphs in GRAPH_VARIANTS:
        repo = write_repository(
            export.directory, tmp_path / graphs, graphs=graphs, max_streams=4, idle_timeout_s=30,
            plugins=["/opt/softmask/libsoftmask_trt_plugin_autoregister.so"], build_plans=False,
        )
        summary = json.loads((repo / "softmask_serve.json").read_text())
        graph_names = ("features", "init", "step", "annotate")
        names = ["softmask_stream"] + ([] if graphs == "in-process" else
                                       [f"softmask_{g}" for g in graph_names])
        configs = _parse_configs(serve_python, [repo / n / "config.pbtxt" for n in names])
        stream = configs[0]
        assert stream["backend"] == "python" and stream["name"] == STREAM_MODEL
        assert [i["dims"] for i in stream["input"]] == [[str(H), str(W), "3"], [str(H), str(W)],
                                                        [str(KEY_BYTES)]]
        assert stream["input"][1]["optional"] is True and stream["input"][2]["optional"] is True
        batching = stream["sequenceBatching"]
        assert batching["oldest"]["maxCandidateSequences"] == 2 * 4 + SPARE_SEQUENCE_SLOTS
        assert batching["maxSequenceIdleMicroseconds"] == str(60_000_000)
        kinds = {c["name"]: c["control"][0]["kind"] for c in batching["controlInput"]}
        assert kinds == {"START": "CONTROL_SEQUENCE_START", "END": "CONTROL_SEQUENCE_END",
                         "READY": "CONTROL_SEQUENCE_READY", "CORRID": "CONTROL_SEQUENCE_CORRID"}
        assert stream["parameters"]["graphs"]["stringValue"] == graphs
        for graph, config in zip(graph_names, configs[1:]):
            manifest_inputs = export.io(graph, "inputs")
            assert [i["name"] for i in config["input"]] == [i["name"] for i in manifest_inputs]
            assert [[int(d) for d in i["dims"]] for i in config["input"]] == [
                i["shape"] for i in manifest_inputs
            ]
            types = {i["name"]: i["dataType"] for i in config["input"] + config["output"]}
            if graph == "features":  # the frame encoder: uint8 frame in, its maps out
                assert types == {"frame": "TYPE_UINT8", "f4": "TYPE_FP32", "f8": "TYPE_FP32"}
            else:
                assert types["f8"] == "TYPE_FP32" and types["fg"] == "TYPE_FP32"
                assert types["fg_valid"] == "TYPE_BOOL" and types["labels"] == "TYPE_UINT8"
            platform_or_backend = config.get("platform") or config.get("backend")
            assert platform_or_backend == {"onnxruntime": "onnxruntime_onnx",
                                           "tensorrt": "tensorrt_plan",
                                           "python": "python"}[graphs]
        if graphs == "tensorrt":
            assert summary["tritonserver_args"][-1] == (
                "--backend-config=tensorrt,plugins=/opt/softmask/libsoftmask_trt_plugin_autoregister.so"
            )
            assert "trtexec" in (repo / "build_plans.sh").read_text()
            assert (repo / "softmask_step" / "step.onnx").is_file()


def test_build_plans_sh_takes_a_plugin_path_as_data_not_as_shell_code(export, tmp_path):
    marker = tmp_path / "injected"
    plugin = f'/opt/lib "$(touch {marker})" `touch {marker}`.so'
    repo = write_repository(export.directory, tmp_path / "repo", graphs="tensorrt",
                            plugins=[plugin], build_plans=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "trtexec-calls"
    # A stand-in trtexec that records its arguments, one per line (TensorRT is not needed to
    # see what the script would run).
    (bin_dir / "trtexec").write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> {calls}\n')
    (bin_dir / "trtexec").chmod(0o755)
    done = subprocess.run(["bash", str(repo / "build_plans.sh")], check=False,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "the plugin path ran as shell code"
    plugins = [a for a in calls.read_text().splitlines() if a.startswith("--dynamicPlugins=")]
    assert plugins == [f"--dynamicPlugins={plugin}"] * len(export.graphs)  # a plan per graph


# --- the embedded server ----------------------------------------------------------------------


class _Server:
    """``softmask serve start MODEL...`` as a process on free 127.0.0.1 ports."""

    def __init__(self, python: Path, work: Path, *model: str) -> None:
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.work = work / "server"
        self.log = (work / "serve.out").open("w+")
        self.process = subprocess.Popen(
            _softmask(python, "serve", "start", *model, "--http-port", str(self.http),
                      "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics),
                      "--work-dir", str(work / "server")),
            stdout=self.log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while "ready:" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the embedded server did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        self.url = f"grpc://127.0.0.1:{self.grpc}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int | None:
        """Ctrl-C (SIGINT), as a user would; the process group is killed if that fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()
        return self.process.returncode

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name + "{"))

    def infer(self, stream: int, frame: np.ndarray, annotation: np.ndarray | None = None,
              start: bool = False, end: bool = False, timeout_s: float = 60,
              key: bytes | None = None) -> tuple[int, dict]:
        """One request over HTTP/JSON: (status, outputs by name or the error body); status 0
        when no answer came within ``timeout_s``. ``key``: the STREAM_KEY to send."""
        datatype = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}[frame.dtype]
        inputs = [{"name": "FRAME", "shape": list(frame.shape), "datatype": datatype,
                   "data": frame.reshape(-1).tolist()}]
        if annotation is not None:
            inputs.append({"name": "ANNOTATION", "shape": list(annotation.shape),
                           "datatype": "UINT8", "data": annotation.reshape(-1).tolist()})
        if key is not None:
            inputs.append({"name": "STREAM_KEY", "shape": [len(key)], "datatype": "UINT8",
                           "data": list(key)})
        body = {"inputs": inputs, "parameters": {
            "sequence_id": stream, "sequence_start": start, "sequence_end": end}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/v2/models/{STREAM_MODEL}/infer",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                outputs = json.loads(response.read())["outputs"]
                return response.status, {o["name"]: o for o in outputs}
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
        except TimeoutError:
            return 0, {"error": f"no answer within {timeout_s:g} s"}
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                return 0, {"error": f"no answer within {timeout_s:g} s"}
            raise


@pytest.fixture(scope="module")
def server(serve_python, export, tmp_path_factory):
    running = _Server(serve_python, tmp_path_factory.mktemp("serve"), "--export",
                      str(export.directory), "--max-streams", str(MAX_STREAMS), "--idle-timeout",
                      str(IDLE_S))
    try:
        yield running
    finally:
        code = running.stop()
    assert code == 130, "Ctrl-C stops softmask serve start: exit code 130, interrupted"


def _http_status(url: str, method: str = "GET", headers: dict | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {},
                                     data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_second_client_can_neither_advance_nor_reset_a_stream_it_did_not_start(
    server, export
):
    video, ann = _video(41, 3)
    stream, owner, stranger = 4141, b"o" * KEY_BYTES, b"s" * KEY_BYTES
    status, body = server.infer(stream, video[0], ann, start=True, key=owner)
    assert status == 200, body
    for key in (None, stranger):
        status, body = server.infer(stream, video[1], key=key)
        assert status == 400 and "not this stream's owner" in body["error"], body
    status, body = server.infer(stream, video[0], ann, start=True, key=stranger)
    assert status == 400 and "not this stream's owner" in body["error"], body
    status, body = server.infer(stream, video[1], key=owner, end=True)
    assert status == 200, body
    assert body["FRAME_INDEX"]["data"] == [1], "nobody else advanced the owner's stream"
    np.testing.assert_array_equal(_labels(body), _reference(export, video, ann)[1])


def test_sigterm_to_a_client_ends_its_stream_on_the_server_and_keeps_its_masks(
    serve_python, server, tmp_path
):
    video, ann = _video(42, 12)
    frames, labels = _write_video(tmp_path / "video", video, ann)
    out, marker = tmp_path / "out", tmp_path / "paused"
    client = subprocess.Popen(
        _softmask(serve_python, "stream", str(frames), "--annotations", str(labels / "00000.png"),
                  "--out", str(out), "--url", server.url, "--in-flight", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**_env(), PAUSE_AT: "stream-frame-sent", PAUSE_FILE: str(marker)},
    )
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while not marker.exists():  # paused after sending its first frame
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "the client never reached its pause point"
            time.sleep(0.02)
        client.send_signal(signal.SIGTERM)
        _, err = client.communicate(timeout=CLIENT_TIMEOUT_S)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 143, err
    assert err.strip().splitlines()[-1] == "softmask stream: terminated by SIGTERM"
    # END was answered before the client exited: the stream is closed now, not when reaped.
    assert server.metric("softmask_open_streams") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["completed"] is False and report["error"] == "terminated by SIGTERM"
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png"]


def test_admin_endpoints_need_the_key_which_stays_out_of_logs(server):
    base = f"http://127.0.0.1:{server.http}"
    admin = [("GET", "/v2/logging"), ("GET", "/v2/trace/setting"),
             ("POST", "/v2/repository/index"), ("GET", f"/v2/models/{STREAM_MODEL}/stats")]
    for method, path in admin:
        status = _http_status(base + path, method)
        assert 400 <= status < 500, (path, status)
    key_file = server.work / ADMIN_KEY_FILE
    assert key_file.stat().st_mode & 0o077 == 0, "the key file is its owner's only"
    key = key_file.read_text().strip()
    for method, path in admin:
        assert _http_status(base + path, method, {ADMIN_HEADER: key}) == 200, path
    assert _http_status(base + "/v2/health/ready") == 200, "health stays open"
    assert _http_status(base + f"/v2/models/{STREAM_MODEL}/config") == 200, "clients read it"
    assert key not in server.output()
    assert key not in (server.work / "tritonserver.log").read_text(errors="replace")


def test_a_host_beyond_this_machine_is_refused_without_allow_remote(export, capsys):
    capsys.readouterr()
    code = main(["serve", "start", "--export", str(export.directory), "--host", "0.0.0.0",
                 "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--host 0.0.0.0: would open the server to other machines; pass --allow-remote" in err[0]


def test_remote_clients_need_the_token_for_streams_and_the_key_for_administration():
    keys = AccessKeys.generate(remote=True)
    args = keys.server_args()
    assert f"--http-restricted-api=inference,model-config,metadata:{TOKEN_HEADER}={keys.token}" \
        in args
    assert f"--grpc-restricted-protocol=logging,trace,shared-memory,model-repository,statistics:" \
        f"{ADMIN_HEADER}={keys.admin}" in args
    assert keys.admin not in keys.redacted(" ".join(args))
    assert keys.token not in keys.redacted(" ".join(args))
    assert len(AccessKeys.generate(remote=False).server_args()) == 2, "local: admin APIs only"


def _labels(outputs: dict) -> np.ndarray:
    return np.asarray(outputs["LABELS"]["data"], np.uint8).reshape(H, W)


def _client(python: Path, server: _Server, video_dir: Path, ann_dir: Path, out: Path,
            *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        _softmask(python, "stream", str(video_dir), "--annotations", str(ann_dir / "00000.png"),
                  "--out", str(out), "--url", server.url, "--timeout", "60", *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )


def test_two_concurrent_streams_get_the_masks_of_softmask_run(
    serve_python, server, export, tmp_path
):
    runs = []
    for seed in (11, 12):
        video, ann = _video(seed, 10)
        frames, labels = _write_video(tmp_path / f"video{seed}", video, ann)
        reference = tmp_path / f"run{seed}"
        run_video(frames, labels, reference, backend="onnxruntime", export_dir=export.directory)
        runs.append((frames, labels, reference, tmp_path / f"stream{seed}"))
    clients = [_client(serve_python, server, f, a, out, "--stream-id", f"video-{i}")
               for i, (f, a, _, out) in enumerate(runs)]
    for client in clients:
        out, err = client.communicate(timeout=CLIENT_TIMEOUT_S)
        assert client.returncode == 0, err
        assert "round trip per frame: p50" in out
    for _, _, reference, streamed in runs:
        expected, got = _masks(reference), _masks(streamed)
        assert len(got) == len(expected) == 10
        for want, have in zip(expected, got):
            np.testing.assert_array_equal(have, want)
        report = json.loads((streamed / "report.json").read_text())
        assert report["frames"] == 10 and report["latency"]["count"] == 10
    assert any((m > 0).any() for m in _masks(runs[0][3])), "the object is tracked"


def test_a_killed_client_neither_disturbs_the_other_stream_nor_outlives_the_idle_timeout(
    serve_python, server, export, tmp_path
):
    reaped_before = server.metric("softmask_streams_reaped_total")
    long_video, long_ann = _video(21, 60)
    video, ann = _video(22, 24)
    long_frames, long_labels = _write_video(tmp_path / "long", long_video, long_ann)
    frames, labels = _write_video(tmp_path / "short", video, ann)
    victim = _client(serve_python, server, long_frames, long_labels, tmp_path / "victim",
                     "--realtime", "--in-flight", "1")
    other = _client(serve_python, server, frames, labels, tmp_path / "other", "--realtime")
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while len(list((tmp_path / "victim" / "masks").glob("*.png"))) < 3:
        assert time.monotonic() < deadline and victim.poll() is None, victim.communicate()
        time.sleep(0.05)
    victim.kill()
    victim.communicate(timeout=30)
    _, err = other.communicate(timeout=CLIENT_TIMEOUT_S)
    assert other.returncode == 0, err
    expected = _reference(export, video, ann)
    got = _masks(tmp_path / "other")
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)
    # The dead client's stream is reaped after the idle timeout, its state freed.
    deadline = time.monotonic() + IDLE_S + 20
    while server.metric("softmask_streams_reaped_total") < reaped_before + 1:
        assert time.monotonic() < deadline, "the killed client's stream was not reaped"
        time.sleep(0.25)
    assert server.metric("softmask_open_streams") == 0


def test_the_server_refuses_bad_requests_clearly_and_other_streams_go_on(server, export):
    video, ann = _video(31, 6)
    expected = _reference(export, video, ann)
    status, body = server.infer(stream_id_number("never-started"), video[0])
    assert status == 400 and "must specify the START flag" in body["error"]
    answers = []
    for t in range(6):
        status, outputs = server.infer(501, video[t], ann if t == 0 else None, start=t == 0)
        assert status == 200, outputs
        answers.append(outputs)
        if t == 1:  # another stream opens, then sends malformed frames between our frames
            assert server.infer(502, video[0], ann, start=True)[0] == 200
            status, body = server.infer(502, video[1][:, :80])
            assert status == 400 and "Expected [64,96,3], got [64,80,3]" in body["error"]
            status, body = server.infer(502, video[1].astype(np.float32))
            assert status == 400 and "data-type is 'FP32'" in body["error"]
            bad = ann.copy()
            bad[0, 0] = 9
            status, body = server.infer(502, video[1], bad)
            assert status == 400 and "stream 502 frame 1: object id(s) [9] exceed" in body["error"]
            assert server.infer(502, video[1])[0] == 200  # the refusals left it usable
        if t == 2:  # the server is full: one more stream is refused, the others go on
            assert server.infer(503, video[0], ann, start=True)[0] == 200
            status, body = server.infer(504, video[0], ann, start=True)
            assert status == 503 and "too many streams" in body["error"]
    for t, outputs in enumerate(answers):
        assert outputs["FRAME_INDEX"]["data"] == [t]
        np.testing.assert_array_equal(_labels(outputs), expected[t])
    # An idle stream is reaped: its next frame hears why.
    deadline = time.monotonic() + IDLE_S + 20
    while True:
        status, body = server.infer(501, video[0])
        if status != 200:
            break
        assert time.monotonic() < deadline, "stream 501 was never reaped"
        time.sleep(IDLE_S + 1)
    assert status == 400 and "stream 501: stream was reaped after more than 2 s" in body["error"]


def test_stream_client_says_in_one_line_that_no_server_answers(serve_python, tmp_path):
    video, ann = _video(41, 2)
    frames, labels = _write_video(tmp_path / "v", video, ann)
    done = subprocess.run(
        _softmask(serve_python, "stream", str(frames), "--annotations",
                  str(labels / "00000.png"), "--out", str(tmp_path / "out"),
                  "--url", f"grpc://127.0.0.1:{free_port()}", "--timeout", "5"),
        check=False, capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert done.returncode == 4
    assert done.stderr.startswith("softmask stream: error: no Triton server answers at grpc://")
    assert len(done.stderr.strip().splitlines()) == 1


BLS_MAX_STREAMS = 2
BLS_IDLE_S = 30.0


def _failing_graph(path: Path) -> None:
    """A valid ONNX model whose inputs are not the graph's: ONNX Runtime loads it, and fails
    every run with the graph's inputs (a graph model failing inside the server)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "fails",
                                   [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]),
              str(path))


@pytest.fixture(scope="module")
def bls_server(serve_python, export, tmp_path_factory):
    """The BLS path (softmask_stream calling softmask_features, then softmask_init/step/annotate;
    state and feature maps passed between models) with python-backend graph models, the variant the embedded server can run, from a
    repository written by ``softmask serve repo`` (``serve start --repo``): at most
    ``BLS_MAX_STREAMS`` streams, idle timeout ``BLS_IDLE_S`` (longer than any test here, so Triton
    holds a sequence for a minute), and a broken ``softmask_annotate`` model (a frame annotated
    after the first fails inside the server)."""
    work = tmp_path_factory.mktemp("bls")
    repo = work / "repo"
    done = subprocess.run(
        _softmask(serve_python, "serve", "repo", "--export", str(export.directory), "--out",
                  str(repo), "--graphs", "python", "--max-streams", str(BLS_MAX_STREAMS),
                  "--idle-timeout", str(BLS_IDLE_S)),
        check=False, capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert done.returncode == 0, done.stderr
    _failing_graph(repo / "softmask_annotate" / "1" / "model.onnx")
    running = _Server(serve_python, work, "--repo", str(repo))
    try:
        yield running
    finally:
        code = running.stop()
    assert code == 130


def test_bls_graphs_on_the_embedded_server_match_softmask_run(
    serve_python, bls_server, export, tmp_path
):
    video, ann = _video(51, 8)
    frames, labels = _write_video(tmp_path / "v", video, ann)
    client = _client(serve_python, bls_server, frames, labels, tmp_path / "out")
    _, err = client.communicate(timeout=CLIENT_TIMEOUT_S)
    assert client.returncode == 0, err
    expected = _reference(export, video, ann)
    got = _masks(tmp_path / "out")
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)


def test_a_graph_model_failure_is_a_server_fault_not_a_refused_frame(
    serve_python, bls_server, tmp_path
):
    video, ann = _video(52, 6)
    frames, labels = _write_video(tmp_path / "v", video, ann)
    later = write_label_png(tmp_path / "later.png", ann)
    stream = stream_id_number("fault-http")  # the client's own stream is its (keyed) only
    client = _client(serve_python, bls_server, frames, labels, tmp_path / "out", "--annotations",
                     f"3:{later}", "--stream-id", "fault-1")
    try:
        _, err = client.communicate(timeout=CLIENT_TIMEOUT_S)
        lines = err.strip().splitlines()
        assert client.returncode == 4 and len(lines) == 1, err
        assert "failed on frame 3 (a fault of the server, not of the frame" in lines[0]
        assert "server fault" in lines[0] and "softmask_annotate" in lines[0]
        assert [p.stem for p in sorted((tmp_path / "out" / "masks").glob("*.png"))] == [
            "00000", "00001", "00002"]
        # Over HTTP: status 500 (internal), not 400, and the stream goes on.
        assert bls_server.infer(stream, video[0], ann, start=True)[0] == 200
        status, body = bls_server.infer(stream, video[1], ann)
        assert status == 500 and "server fault" in body["error"], (status, body)
    finally:
        status, _ = bls_server.infer(stream, video[3], end=True)  # ends it: frees its slot
    assert status == 200


def test_a_full_server_refuses_starts_at_once_and_refused_starts_free_their_sequence(
    serve_python, bls_server, tmp_path
):
    video, ann = _video(53, 3)
    opened = [601, 602]
    for stream in opened:
        assert bls_server.infer(stream, video[0], ann, start=True)[0] == 200
    try:
        # Triton holds a sequence slot for each refused START (no END sent) for 2 x the idle
        # timeout; with only 2 x --max-streams slots, the third such START would be queued for
        # a minute and get no answer within the request's timeout (status 0), not the model's 503.
        for stream in range(701, 701 + BLS_MAX_STREAMS + 2):
            status, body = bls_server.infer(stream, video[0], ann, start=True, timeout_s=30)
            assert status == 503 and "too many streams" in body["error"], (stream, status, body)
        # A refused sequence reaches the model until its END, which frees it in Triton.
        status, body = bls_server.infer(701, video[1])
        assert status == 400 and "its START was refused" in body["error"], body
        status, body = bls_server.infer(701, video[1], end=True)
        assert status == 400 and "this END frees the sequence" in body["error"], body
        status, body = bls_server.infer(701, video[1])
        assert status == 400 and "must specify the START flag" in body["error"], body
        # softmask stream, refused, ends its refused sequence itself.
        frames, labels = _write_video(tmp_path / "v", video, ann)
        client = _client(serve_python, bls_server, frames, labels, tmp_path / "out",
                         "--stream-id", "refused-1")
        _, err = client.communicate(timeout=CLIENT_TIMEOUT_S)
        lines = err.strip().splitlines()
        assert client.returncode == 4 and len(lines) == 1 and "too many streams" in lines[0], err
        status, body = bls_server.infer(stream_id_number("refused-1"), video[1])
        assert status == 400 and "must specify the START flag" in body["error"], body
    finally:
        for stream in opened:
            bls_server.infer(stream, video[1], end=True)
    assert bls_server.metric("softmask_open_streams") == 0


def test_the_repository_leaves_room_for_sequences_the_model_does_not_serve(export, tmp_path):
    repo = write_repository(export.directory, tmp_path / "r", max_streams=3)
    config = (repo / STREAM_MODEL / "config.pbtxt").read_text()
    assert f"max_candidate_sequences: {2 * 3 + SPARE_SEQUENCE_SLOTS}" in config


def test_a_truncated_video_streams_every_mask_before_the_damage(
    serve_python, server, export, tmp_path
):
    path = write_video(tmp_path / "clip.mp4", moving_objects(30), fps=25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    annotation = write_label_png(tmp_path / "first.png", first_annotation())
    with pytest.raises(InputError, match=r"clip.mp4: cannot decode frame \d+"):
        run_video(path, annotation, tmp_path / "run", backend="onnxruntime",
                  export_dir=export.directory)
    expected = _masks(tmp_path / "run")
    assert 0 < len(expected) < 30
    done = subprocess.run(
        _softmask(serve_python, "stream", str(path), "--annotations", str(annotation), "--out",
                  str(tmp_path / "out"), "--url", server.url, "--in-flight", "3", "--overlay"),
        check=False, capture_output=True, text=True, env=_env(), timeout=CLIENT_TIMEOUT_S,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"clip.mp4: cannot decode frame {len(expected)}" in lines[0]
    got = _masks(tmp_path / "out")
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["completed"] and report["masks_written"] == len(expected)
    assert (tmp_path / "out" / "overlay.mp4").is_file()


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_a_server_that_dies_while_serving_is_exit_code_4_and_leaves_no_stub(
    serve_python, export, tmp_path
):
    running = _Server(serve_python, tmp_path, "--export", str(export.directory))
    try:
        children = Path(f"/proc/{running.process.pid}/task/{running.process.pid}/children")
        triton = int(children.read_text().split()[0])
        assert len(_group_members(triton)) > 1, "tritonserver and its python-backend stub"
        os.kill(triton, signal.SIGKILL)
        running.process.wait(timeout=60)
        output = running.output()
    finally:
        code = running.stop()
    assert code == 4, output
    assert "softmask serve: error: tritonserver exited with code -9 while serving" in output
    deadline = time.monotonic() + 10
    while _group_members(triton):
        assert time.monotonic() < deadline, "python-backend stubs outlived the server"
        time.sleep(0.1)


def test_serve_start_says_a_port_is_in_use_before_exporting(serve_python, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            _softmask(serve_python, "serve", "start", "--height", "64", "--width", "96",
                      "--objects", "3", "--http-port", "0", "--grpc-port", str(port),
                      "--metrics-port", "0", "--work-dir", str(tmp_path / "w")),
            check=False, capture_output=True, text=True, env=_env(), timeout=120,
        )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 4 and len(lines) == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in lines[0]
    assert not (tmp_path / "w" / "repository").exists(), "nothing was exported"
