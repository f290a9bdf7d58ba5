"""softmask.serve: the stream table, the repository writer, and the embedded Triton server with
real clients (in-process and BLS graphs) against ``softmask run``'s masks on the same export.

The server and the stream client run from the serve environment (``.venv-serve``, numpy<2, made by
``scripts/setup_env.sh serve``; created here if missing); these tests drive them as processes and
speak Triton's HTTP/JSON protocol with urllib, all on 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softmask.data.io import davis_palette
from softmask.errors import InputError
from softmask.export.streaming import export_streaming
from softmask.runtime import OnnxRuntimeBackend, VideoStream, run_video
from softmask.serve.protocol import STREAM_MODEL, stream_id_number
from softmask.serve.repository import GRAPH_VARIANTS, write_repository
from softmask.serve.server import free_port
from softmask.serve.streams import StreamTable

ROOT = Path(__file__).resolve().parents[1]
H, W, N, WINDOW = 64, 96, 3, 3
MIN_DIM = 48
IDLE_S = 2.0
MAX_STREAMS = 3
SETUP_TIMEOUT_S = 1200
START_TIMEOUT_S = 180
CLIENT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def export(model, tmp_path_factory):
    return export_streaming(
        model, tmp_path_factory.mktemp("export"), H, W, N, WINDOW, min_dim=MIN_DIM
    )


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


def test_stream_ids_map_to_stable_correlation_ids():
    assert stream_id_number("42") == 42
    assert stream_id_number("camera-7") == stream_id_number("camera-7")
    assert 0 < stream_id_number("camera-7") < 2**63
    assert stream_id_number("camera-7") != stream_id_number("camera-8")


# --- the serve environment --------------------------------------------------------------------


@pytest.fixture(scope="session")
def serve_python() -> Path:
    """The serve environment's interpreter, made by scripts/setup_env.sh serve when missing."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("the serve extra (nvidia-pytriton) ships Linux x86_64/aarch64 wheels only")
    python = Path(os.environ.get("SOFTMASK_SERVE_PYTHON", ROOT / ".venv-serve" / "bin" / "python"))
    probe = [str(python), "-c", "import pytriton, tritonclient.grpc"]
    if not python.exists() or subprocess.run(
        probe, check=False, capture_output=True, timeout=120
    ).returncode:
        setup = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh"), "serve"],
                               check=False, capture_output=True, text=True,
                               timeout=SETUP_TIMEOUT_S)
        assert setup.returncode == 0, f"scripts/setup_env.sh serve failed:\n{setup.stderr[-3000:]}"
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
        names = ["softmask_stream"] + ([] if graphs == "in-process" else
                                       ["softmask_init", "softmask_step", "softmask_annotate"])
        configs = _parse_configs(serve_python, [repo / n / "config.pbtxt" for n in names])
        stream = configs[0]
        assert stream["backend"] == "python" and stream["name"] == STREAM_MODEL
        assert [i["dims"] for i in stream["input"]] == [[str(H), str(W), "3"], [str(H), str(W)]]
        assert stream["input"][1]["optional"] is True
        batching = stream["sequenceBatching"]
        assert batching["oldest"]["maxCandidateSequences"] == 8
        assert batching["maxSequenceIdleMicroseconds"] == str(60_000_000)
        kinds = {c["name"]: c["control"][0]["kind"] for c in batching["controlInput"]}
        assert kinds == {"START": "CONTROL_SEQUENCE_START", "END": "CONTROL_SEQUENCE_END",
                         "READY": "CONTROL_SEQUENCE_READY", "CORRID": "CONTROL_SEQUENCE_CORRID"}
        assert stream["parameters"]["graphs"]["stringValue"] == graphs
        for graph, config in zip(("init", "step", "annotate"), configs[1:]):
            manifest_inputs = export.io(graph, "inputs")
            assert [i["name"] for i in config["input"]] == [i["name"] for i in manifest_inputs]
            assert [[int(d) for d in i["dims"]] for i in config["input"]] == [
                i["shape"] for i in manifest_inputs
            ]
            types = {i["name"]: i["dataType"] for i in config["input"] + config["output"]}
            assert types["frame"] == "TYPE_UINT8" and types["fg"] == "TYPE_FP32"
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


# --- the embedded server ----------------------------------------------------------------------


class _Server:
    """``softmask serve start`` as a process on free 127.0.0.1 ports."""

    def __init__(self, python: Path, export_dir: Path, work: Path, graphs: str) -> None:
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.log = (work / "serve.out").open("w+")
        self.process = subprocess.Popen(
            _softmask(python, "serve", "start", "--export", str(export_dir), "--graphs", graphs,
                      "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                      "--metrics-port", str(self.metrics), "--max-streams", str(MAX_STREAMS),
                      "--idle-timeout", str(IDLE_S), "--work-dir", str(work / "server")),
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
              start: bool = False, end: bool = False) -> tuple[int, dict]:
        """One request over HTTP/JSON: (status, outputs by name or the error body)."""
        datatype = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}[frame.dtype]
        inputs = [{"name": "FRAME", "shape": list(frame.shape), "datatype": datatype,
                   "data": frame.reshape(-1).tolist()}]
        if annotation is not None:
            inputs.append({"name": "ANNOTATION", "shape": list(annotation.shape),
                           "datatype": "UINT8", "data": annotation.reshape(-1).tolist()})
        body = {"inputs": inputs, "parameters": {
            "sequence_id": stream, "sequence_start": start, "sequence_end": end}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/v2/models/{STREAM_MODEL}/infer",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                outputs = json.loads(response.read())["outputs"]
                return response.status, {o["name"]: o for o in outputs}
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(serve_python, export, tmp_path_factory):
    running = _Server(serve_python, export.directory, tmp_path_factory.mktemp("serve"),
                      "in-process")
    try:
        yield running
    finally:
        code = running.stop()
    assert code == 0, "Ctrl-C stops softmask serve start cleanly"


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


def test_bls_graphs_on_the_embedded_server_match_softmask_run(
    serve_python, export, tmp_path
):
    """The BLS path (softmask_stream calling softmask_init/step/annotate, state passed between
    models) with python-backend graph models, the variant the embedded server can run."""
    server = _Server(serve_python, export.directory, tmp_path, "python")
    try:
        video, ann = _video(51, 8)
        frames, labels = _write_video(tmp_path / "v", video, ann)
        client = _client(serve_python, server, frames, labels, tmp_path / "out")
        _, err = client.communicate(timeout=CLIENT_TIMEOUT_S)
        assert client.returncode == 0, err
    finally:
        assert server.stop() == 0
    expected = _reference(export, video, ann)
    got = _masks(tmp_path / "out")
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)
