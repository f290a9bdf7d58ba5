"""Stream one video to a softmask server over gRPC (``softmask stream``).

A frame's journey: source (``softmask.runtime.sources``, as ``softmask run``) -> one request on a
gRPC stream (FRAME, ANNOTATION on annotated frames, the stream's correlation id, START on the
first frame, END on the last) -> the server's answer (LABELS, FRAME_INDEX) -> the outputs of
``softmask run`` (``softmask.runtime.outputs``: masks, overlay, label video), under the same
output-folder rules.
Up to ``in_flight`` frames are on the wire at once (the next frame is sent while the server works
on the previous one); the server answers a stream's frames in order, one answer per frame, which
the client checks. The round trip of every frame (send to answer) is the latency reported.

Failures end the stream with one line: no server at the URL, a full server or a fault of the
server (``BackendUnavailable``), a frame the server refuses (``InputError``, the server's
reason), a stream the server no longer holds, a lost connection or answers out of order
(``StreamLost``). A source that fails mid-stream (a truncated file, a frame of another size) ends
the stream at the frame before it: that frame goes out with END and every answer due is
collected, so, as with ``softmask run``, every frame before the failure has its mask. Outputs of
answered frames are complete on disk (videos finalised) in every case.
"""

from __future__ import annotations

import logging
import queue
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softmask.errors import BackendUnavailable, InputError, SoftmaskError, StreamLost
from softmask.redact import redact
from softmask.runtime.annotations import resolve_annotations
from softmask.runtime.latency import latency_summary
from softmask.runtime.outputs import REPORT_NAME, OutputWriter, prepare_output_dir
from softmask.runtime.report import write_report
from softmask.runtime.sources import Frame, Pacer, open_source
from softmask.runtime.stream import check_annotation, check_frame
from softmask.serve.protocol import (
    ANNOTATION,
    FRAME,
    FRAME_INDEX,
    KEY_BYTES,
    LABELS,
    REAPED_STREAM,
    SERVER_FAULT,
    STREAM_HEADER,
    STREAM_KEY,
    STREAM_MODEL,
    TOKEN_HEADER,
    TOO_MANY_STREAMS,
    TRITON_NEEDS_START,
    TRITON_STUB_FAILED,
    UNKNOWN_STREAM,
    stream_id_number,
)
from softmask.signals import interrupt_reason
from softmask.testing_hooks import pause_point

logger = logging.getLogger(__name__)

DEFAULT_IN_FLIGHT = 2
# Longest wait for one answer, or for the server to say it is live (seconds).
DEFAULT_TIMEOUT_S = 60.0
# Longest wait for the answers still due after a refused START (seconds).
END_REFUSED_WAIT_S = 10.0
_CONNECTION_LOST = ("UNAVAILABLE", "Socket closed", "Connection reset", "failed to connect",
                    "CANCELLED", "Broken pipe")


def _import_grpc_client() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as error:
        raise BackendUnavailable(
            f"softmask stream needs tritonclient (`import tritonclient.grpc` failed: {error}); "
            "install the serve extra, `pip install 'softmask[serve]'`"
        ) from error
    return grpcclient


def grpc_address(url: str) -> str:
    """``host:port`` from ``grpc://host:port`` (or ``host:port``).

    Raises:
        InputError: not of that form.
    """
    address = url.removeprefix("grpc://")
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        raise InputError(f"{url}: expected grpc://HOST:PORT (the server's gRPC endpoint)")
    return address


def _describe(error: Any) -> str:
    message = error.message() if hasattr(error, "message") else str(error)
    return str(message).strip()


def _is_connection_error(error: Any) -> bool:
    text = f"{getattr(error, 'status', lambda: '')()} {_describe(error)}"
    return any(marker in text for marker in _CONNECTION_LOST)


class ServerStream:
    """One stream on a server: connect, send frames in order, receive their answers in order.

    Args:
        url: grpc://HOST:PORT.
        stream_id: the stream's name or number (``protocol.stream_id_number``); default random.
        timeout_s: longest wait for the server (liveness, each answer).
        token: the stream token of a server started with ``--allow-remote``.

    Raises (from ``open``): BackendUnavailable when no server answers or it lacks the model.
    """

    def __init__(self, url: str, stream_id: str | int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, token: str | None = None) -> None:
        self.url = url
        self.address = grpc_address(url)
        self.stream_id = str(stream_id) if stream_id is not None else str(secrets.randbits(62) + 1)
        self.correlation_id = stream_id_number(self.stream_id)
        # Every call carries the stream id (routers pin on it) and the token of a server that
        # allows remote clients.
        self._headers = {STREAM_HEADER: self.stream_id}
        if token:
            self._headers[TOKEN_HEADER] = token
        self.timeout_s = timeout_s
        self._grpc = _import_grpc_client()
        self._client: Any = None
        self._answers: queue.Queue = queue.Queue()
        self._first_frame: np.ndarray | None = None
        self._ended = False  # END was sent
        # The owner's secret, sent with every frame: no other client can advance or reset the
        # stream (the server keeps its digest).
        self._key = np.frombuffer(secrets.token_bytes(KEY_BYTES), np.uint8)
        self.sent = 0
        self.received = 0
        self.frame_shape: tuple[int, int] = (0, 0)
        self.num_objects = 0

    def open(self) -> None:
        """Connect, check the server is live and serves softmask_stream, start the gRPC stream."""
        grpc = self._grpc
        self._client = grpc.InferenceServerClient(self.address)
        try:
            self._client.is_server_live(headers=self._headers, client_timeout=self.timeout_s)
            config = self._client.get_model_config(
                STREAM_MODEL, headers=self._headers, client_timeout=self.timeout_s, as_json=True
            )["config"]
        except Exception as error:  # tritonclient raises its own errors and grpc's
            self._client.close()
            self._client = None
            if _is_connection_error(error) or "Deadline" in _describe(error):
                raise BackendUnavailable(
                    f"no Triton server answers at {self.url} ({_describe(error).splitlines()[0]});"
                    " start one with `softmask serve start`"
                ) from error
            raise BackendUnavailable(
                f"the server at {self.url} does not serve {STREAM_MODEL}: {_describe(error)}"
            ) from error
        frame_dims = next(i["dims"] for i in config["input"] if i["name"] == FRAME)
        self.frame_shape = (int(frame_dims[0]), int(frame_dims[1]))
        self.num_objects = int(config["parameters"]["num_objects"]["string_value"])
        self._client.start_stream(
            callback=lambda result, error: self._answers.put((time.perf_counter(), result, error)),
            headers=self._headers,
        )

    def send(self, frame: np.ndarray, annotation: np.ndarray | None, first: bool,
             last: bool) -> None:
        """Send the stream's next frame (uint8 [H, W, 3]; annotation uint8 [H, W] or None)."""
        self._request(frame, annotation, first, last, request_id=str(self.sent))
        if first:
            self._first_frame = frame
        self._ended = last
        self.sent += 1

    def _request(self, frame: np.ndarray, annotation: np.ndarray | None, first: bool, last: bool,
                 request_id: str) -> None:
        grpc = self._grpc
        inputs = [grpc.InferInput(FRAME, list(frame.shape), "UINT8")]
        inputs[0].set_data_from_numpy(np.ascontiguousarray(frame))
        if annotation is not None:
            inputs.append(grpc.InferInput(ANNOTATION, list(annotation.shape), "UINT8"))
            inputs[-1].set_data_from_numpy(np.ascontiguousarray(annotation))
        inputs.append(grpc.InferInput(STREAM_KEY, [KEY_BYTES], "UINT8"))
        inputs[-1].set_data_from_numpy(self._key)
        outputs = [grpc.InferRequestedOutput(LABELS), grpc.InferRequestedOutput(FRAME_INDEX)]
        try:
            self._client.async_stream_infer(
                STREAM_MODEL, inputs, outputs=outputs, request_id=request_id,
                sequence_id=self.correlation_id, sequence_start=first, sequence_end=last,
            )
        except Exception as error:  # the stream broke under us (its cause went to the callback)
            raise self._lost(
                f"lost the connection before frame {self.sent} could be sent (the server stopped "
                "or the network failed); start the stream again with an annotated frame"
            ) from error

    def _lost(self, why: str) -> StreamLost:
        return StreamLost(f"stream {self.stream_id} at {self.url}: {why}")

    def receive(self, expected_index: int) -> tuple[float, np.ndarray]:
        """The answer to the stream's frame ``expected_index``: (arrival time, labels [H, W]).

        Raises:
            StreamLost: no answer within the timeout, the connection was lost, the server no
                longer holds the stream, or the answers came out of order.
            InputError: the server refused the frame (the message is its reason).
            BackendUnavailable: the server serves its maximum number of streams, or failed.
        """
        try:
            arrived, result, error = self._answers.get(timeout=self.timeout_s)
        except queue.Empty:
            raise self._lost(
                f"no answer to frame {expected_index} within {self.timeout_s:g} s"
            ) from None
        self.received += 1
        if error is not None:
            failure = self._classify(error, expected_index)
            if expected_index == 0 and not isinstance(failure, StreamLost):
                self.end_early()
            raise failure
        index = int(result.as_numpy(FRAME_INDEX)[0])
        request_id = result.get_response().id
        if index != expected_index or request_id != str(expected_index):
            raise self._lost(
                f"expected the answer to frame {expected_index}, got frame {index} (request "
                f"{request_id}): answers out of order, a fault of the server; start the stream "
                "again with an annotated frame"
            )
        return arrived, result.as_numpy(LABELS)

    def _classify(self, error: Any, index: int) -> SoftmaskError:
        message = _describe(error)
        if any(p in message for p in (REAPED_STREAM, UNKNOWN_STREAM, TRITON_NEEDS_START)):
            return self._lost(
                f"the server no longer holds this stream at frame {index} (idle past its "
                "--idle-timeout, or the server restarted); start the stream again with an "
                f"annotated frame. Server: {message}"
            )
        if TOO_MANY_STREAMS in message:
            return BackendUnavailable(f"{self.url}: {message}")
        if SERVER_FAULT in message or TRITON_STUB_FAILED in message:
            return BackendUnavailable(
                f"the server at {self.url} failed on frame {index} (a fault of the server, not "
                f"of the frame; see its log): {message}"
            )
        if _is_connection_error(error):
            return self._lost(f"lost the connection at frame {index} ({message.splitlines()[0]})")
        return InputError(f"frame {index} refused by {self.url}: {message}")

    def end_early(self) -> None:
        """End the sequence before its last frame: one whose START the server refused, or one
        that failed or was interrupted (Ctrl-C, SIGTERM). Triton keeps a sequence slot until END
        (or twice the idle timeout), and STARTs beyond its slots wait in its backlog instead of
        being answered. Sends END (the first frame again; after a refused START the server answers it with a
        refusal, without work) and waits, bounded, for the answers still due, so that closing
        the stream cancels none of them. Best effort: a failure here is only logged."""
        if self._client is None or self._first_frame is None or self._ended:
            return
        self._ended = True
        try:
            self._request(self._first_frame, None, first=False, last=True, request_id="end")
            deadline = time.monotonic() + min(self.timeout_s, END_REFUSED_WAIT_S)
            for _ in range(self.sent + 1 - self.received):
                self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except (SoftmaskError, queue.Empty) as error:
            # The stream is failing already (its error is what the user sees); the server
            # frees the sequence when it idles out.
            logger.info("stream %s: could not end the sequence: %s", self.stream_id, error)

    def unanswered(self) -> int:
        """Answers received but not yet taken by ``receive`` (0 once every frame's answer was
        taken: a server answering a frame twice would leave one here)."""
        return self._answers.qsize()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.stop_stream(cancel_requests=True)
            finally:
                self._client.close()
            self._client = None


class _LookAhead:
    """The frames of a source with a one-frame look-ahead, as (frame, is_last).

    A failure fetching or checking the next frame (a truncated file, a frame of another size)
    ends the iteration early: the frame before it comes out as the last one (so it is sent with
    END) and the failure waits in ``error`` until the caller has the answers due. A failure on
    the first frame is raised at once (nothing was sent).
    """

    def __init__(self, frames: Any, check: Callable[[Frame], None]) -> None:
        self.frames = frames
        self.check = check
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[tuple[Frame, bool]]:
        iterator = iter(self.frames)
        try:
            current = next(iterator)
        except StopIteration:
            return
        self.check(current)
        while True:
            try:
                following = next(iterator)
                self.check(following)
            except StopIteration:
                break
            except Exception as error:  # noqa: BLE001 - raised by the caller, after the answers
                self.error = error
                break
            yield current, False
            current = following
        yield current, True


def _keep_answers_due(stream: ServerStream, pending: deque, collect: Callable[[int], None]) -> None:
    """After an interrupt (Ctrl-C, SIGTERM): write the masks of the frames already sent (their
    answers are due). Best effort, each wait bounded by the stream's timeout: a failure is
    logged."""
    try:
        due = stream.sent - stream.received
        collect(len(pending) - due)  # a frame queued but never sent has no answer to wait for
    except SoftmaskError as error:
        logger.warning("stream %s: answers due at the interrupt were lost: %s", stream.stream_id,
                       error)


def stream_source(
    source: str | Path | Sequence[np.ndarray],
    annotations: Sequence[str | Path],
    out_dir: str | Path,
    url: str,
    stream_id: str | int | None = None,
    in_flight: int = DEFAULT_IN_FLIGHT,
    realtime: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    overlay: bool = False,
    mask_video: bool = False,
    overwrite: bool = False,
    fps: float | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Segment ``source`` on the server at ``url``; write the outputs of ``softmask run`` and
    ``report.json``.

    Args:
        source: what ``softmask run`` takes (folder, video file, URL, camera) or arrays.
        annotations: ``--annotations`` specs (``first.png``, ``17:obj.png``, a folder).
        out_dir: output folder (``softmask.runtime.outputs``: masks, overlays, report); with
            ``overwrite``, an earlier run's outputs there are deleted when the server's first
            answer arrives, so a stream that fails before that loses nothing.
        url: grpc://HOST:PORT of a ``softmask serve`` server.
        stream_id: the stream's id (default: random); a router may pin streams by it.
        in_flight: frames sent ahead of their answers (>= 1).
        realtime: pace the source at its frame rate.
        timeout_s: longest wait for the server to answer.
        overlay, mask_video, overwrite, fps: as for ``softmask.runtime.run_video``.
        token: the stream token of a server started with ``--allow-remote``.

    Returns:
        The report: ``completed``, ``error``, ``frames``, ``masks_written``, ``stream_id``,
        ``url``, ``latency`` (round trip per frame, ``latency_summary``), ``end_to_end_fps``.

    Raises:
        InputError, BackendUnavailable, StreamLost: see the module docstring. Outputs of
            answered frames are complete on disk (videos finalised); once an answer arrived, the
            report is written too, with ``completed`` false and the error.
    """
    if in_flight < 1:
        raise InputError(f"in_flight must be at least 1, got {in_flight}")
    folder = prepare_output_dir(out_dir, overwrite=overwrite)
    out = folder.path
    with open_source(source, fps=fps) as frames_source:
        found = resolve_annotations(annotations, frames_source)
        if not found.labels:
            raise InputError("no annotation given: a stream tracks the objects annotated on it")
        stream = ServerStream(url, stream_id, timeout_s, token)
        writer: OutputWriter | None = None
        report: dict[str, Any] = {}
        round_trips: list[float] = []
        failure: BaseException | None = None
        started = time.perf_counter()
        pending: deque[tuple[float, Frame]] = deque()

        def collect(block_until: int) -> None:
            while len(pending) > block_until:
                arrived, labels = stream.receive(len(round_trips))
                sent_at, frame = pending.popleft()
                folder.clear()  # --overwrite: the earlier outputs go once the server answers
                round_trips.append(arrived - sent_at)
                writer.write(frame.name, frame.timestamp, frame.rgb, labels)

        try:
            stream.open()
            height, width = stream.frame_shape
            for index, labels in found.labels.items():
                check_annotation(labels, height, width, stream.num_objects, found.source(index))
            writer = OutputWriter(
                out, overlay, mask_video, frames_source.kind in ("video", "url", "camera"),
                frames_source.fps,
            )
            frames = _LookAhead(
                frames_source, lambda f: check_frame(f.rgb, height, width, f.origin)
            )
            pacer = Pacer(frames_source.fps) if realtime and frames_source.fps else None
            started = time.perf_counter()
            for frame, last in frames:
                collect(in_flight - 1)
                if pacer is not None:
                    pacer.wait(frame.index)
                pending.append((time.perf_counter(), frame))
                stream.send(frame.rgb, found.labels.get(frame.index), first=stream.sent == 0,
                            last=last)
                pause_point("stream-frame-sent")
            collect(0)
            if frames.error is not None:
                raise frames.error
        except BaseException as error:
            failure = error
            if isinstance(error, KeyboardInterrupt) and writer is not None:
                _keep_answers_due(stream, pending, collect)
            stream.end_early()  # the server frees the stream now, not when it idles out
            raise
        finally:
            wall = time.perf_counter() - started
            try:
                stream.close()
            finally:
                if writer is not None:
                    writer.close()
                    if round_trips or failure is None:
                        folder.clear()
                        report = _report(stream, frames_source.name, writer, in_flight,
                                         round_trips, wall, failure, out)
                        write_report(out / REPORT_NAME, report)
    return report


def _report(stream: ServerStream, source: str, writer: OutputWriter, in_flight: int,
            round_trips: list[float], wall: float, failure: BaseException | None,
            out: Path) -> dict[str, Any]:
    return {
        "url": redact(stream.url),
        "stream_id": stream.stream_id,
        "correlation_id": stream.correlation_id,
        "source": redact(source),
        "completed": failure is None,
        "error": None if failure is None else interrupt_reason(failure),
        "frames": len(round_trips),
        "masks_written": writer.written,
        "in_flight": in_flight,
        "latency": latency_summary(round_trips),
        "end_to_end_fps": len(round_trips) / wall if wall > 0 else None,
        "out_dir": str(out),
    }
