"""The server's streams: one ``VideoStream`` (graph choice + state) per correlation id.

Triton's sequence batcher routes every request of a stream to one model instance with the
stream's correlation id and START/END flags; this table (one per instance) does the rest:

- START opens a stream (or restarts one with that id) with an empty state; a frame for an id that
  is not open is refused, naming why (never started, or reaped);
- at most ``max_streams`` streams are open at once: a START beyond that is refused, and the open
  streams go on;
- after a refused START (table full, malformed first frame) the id's later requests are refused
  without work until END or a new START: Triton keeps a sequence slot for the refused sequence
  until its END, so a client sends END to free it (``softmask stream`` does);
- a stream STARTed with a key (``softmask stream`` sends a random one) is its client's: a frame
  or a new START with its id and another key, or none, is refused, so no other client can
  advance or reset it;
- END answers the frame, then closes the stream and frees its state;
- a stream that sent nothing for ``idle_timeout_s`` is reaped (``reap_idle``), its state freed: a
  client that died without END holds no memory for long.

Refusals raise ``InputError`` whose message starts with ``stream <id>:`` and one of
``softmask.serve.protocol``'s phrases; a refused frame changes no state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softmask.errors import InputError
from softmask.runtime.backend import Backend, FrameOutput
from softmask.runtime.stream import VideoStream
from softmask.serve.protocol import (
    NOT_OWNER,
    REAPED_STREAM,
    REFUSED_START,
    STREAM_BUSY,
    TOO_MANY_STREAMS,
    UNKNOWN_STREAM,
)

logger = logging.getLogger(__name__)

# How many reaped stream ids (and ids whose START was refused) are remembered, so a late frame
# hears why, not "unknown".
REMEMBERED_IDS = 4096


def _digest(key: bytes | None) -> bytes | None:
    """What the table keeps of an owner's key (never the key itself)."""
    return None if key is None else hashlib.sha256(key).digest()


@dataclass
class OpenStream:
    """One open stream: its graph choice and state, frames answered, last activity (monotonic
    seconds), its owner's key digest (None: started without a key), and whether a frame of it
    is running (not reaped then)."""

    video: VideoStream | None
    frames: int
    last_seen: float
    owner: bytes | None = None
    busy: bool = False


class StreamTable:
    """Open streams of one model instance, keyed by correlation id.

    Args:
        new_backend: makes the backend of a new stream (its own state; heavy parts such as
            sessions may be shared, frames of all streams run one at a time).
        max_streams: most streams open at once.
        idle_timeout_s: a stream with no frame for this long is reaped by ``reap_idle``.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        new_backend: Callable[[], Backend],
        max_streams: int,
        idle_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_streams < 1:
            raise InputError(f"max_streams must be at least 1, got {max_streams}")
        if idle_timeout_s <= 0:
            raise InputError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        self.new_backend = new_backend
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.reaped_total = 0
        self._open: dict[int | str, OpenStream] = {}
        self._reaped: OrderedDict[int | str, float] = OrderedDict()
        self._refused: OrderedDict[int | str, None] = OrderedDict()
        self._starting: set[int | str] = set()  # STARTs whose first frame is running
        # Guards the table only: no frame runs under it (a slow or hung graph holds up its own
        # stream, never the table).
        self._lock = threading.Lock()

    @property
    def open_count(self) -> int:
        return len(self._open)

    def process(
        self,
        stream_id: int | str,
        frame: np.ndarray,
        annotation: np.ndarray | None = None,
        start: bool = False,
        end: bool = False,
        key: bytes | None = None,
    ) -> tuple[FrameOutput, int]:
        """Segment the stream's next frame (uint8 [H, W, 3]; annotation uint8 [H, W] or None).

        ``key`` is the owner's secret: a stream STARTed with a key is owned by that client, and
        its later frames (and a new START with its id) need the same key.

        Returns:
            (the frame's output, its index in the stream counted from 0 at START).

        Raises:
            InputError: the stream is not open (and ``start`` is false), its START was refused
                (until END or a new START), the table is full, the key is not the owner's, a
                frame of the stream is still running, or the frame / annotation is malformed
                (``VideoStream.process``'s checks); the message starts with ``stream <id>:``.
                The stream's state is unchanged.
        """
        with self._lock:
            entry, fresh = self._admit(stream_id, start, end, key)
        # The frame runs without the table's lock: other streams, and the reaper, go on.
        try:
            video = entry.video if not fresh else VideoStream(self.new_backend())
            output = video.process(frame, annotation, source=f"stream {stream_id} frame "
                                                             f"{0 if fresh else entry.frames}")
        except BaseException:
            with self._lock:
                if fresh:
                    self._starting.discard(stream_id)
                    # A START resets its id: the stream it replaced is gone too, and the id's
                    # next frames hear that the START was refused.
                    self._open.pop(stream_id, None)
                    self._remember(self._refused, stream_id, None)
                else:
                    entry.busy = False
            raise
        with self._lock:
            if fresh:
                self._starting.discard(stream_id)
                if stream_id in self._open:
                    logger.info("stream %s restarted by START", stream_id)
                entry.video = video
                # Registered only once its first frame ran: a refused START leaves no stream.
                self._open[stream_id] = entry
                self._reaped.pop(stream_id, None)
                self._refused.pop(stream_id, None)
            index = entry.frames
            entry.frames += 1
            entry.last_seen = self.clock()
            entry.busy = False
            if end:
                self._open.pop(stream_id, None)
                logger.info("stream %s ended after %d frames", stream_id, entry.frames)
            return output, index

    def _admit(self, stream_id: int | str, start: bool, end: bool,
               key: bytes | None) -> tuple[OpenStream, bool]:
        """Under the lock: the stream entry a request may run on, and whether it is a new one
        (START); marks it busy. Raises the refusals of ``process``."""
        entry = self._open.get(stream_id)
        owner = _digest(key)
        if entry is not None and entry.owner is not None and entry.owner != owner:
            raise InputError(
                f"stream {stream_id}: {NOT_OWNER}: it was started by another client (its key "
                "differs); choose another --stream-id"
            )
        if entry is not None and entry.busy:
            raise InputError(f"stream {stream_id}: {STREAM_BUSY}: a frame of this stream is "
                             "still running; send its frames one after another")
        if start:
            if stream_id in self._starting:
                raise InputError(f"stream {stream_id}: {STREAM_BUSY}: its START is running")
            if entry is None and len(self._open) + len(self._starting) >= self.max_streams:
                self._remember(self._refused, stream_id, None)
                raise InputError(
                    f"stream {stream_id}: {TOO_MANY_STREAMS}: this server serves at most "
                    f"{self.max_streams} concurrent stream(s) (--max-streams) and all are "
                    "open; end one or retry later"
                )
            self._starting.add(stream_id)
            return OpenStream(None, 0, self.clock(), owner), True
        if stream_id in self._refused:
            if end:  # the sequence ends in Triton, which frees its slot
                del self._refused[stream_id]
            raise InputError(
                f"stream {stream_id}: {REFUSED_START}, so no stream holds this id; "
                + ("this END frees the sequence" if end else
                   "send END to end the sequence, then START again")
            )
        if entry is None:
            raise InputError(self._not_open_message(stream_id))
        entry.busy = True
        return entry, False

    def _not_open_message(self, stream_id: int | str) -> str:
        if stream_id in self._reaped:
            return (
                f"stream {stream_id}: {REAPED_STREAM} after more than {self.idle_timeout_s:g} s "
                "without a frame (--idle-timeout); its state is gone: start it again with START "
                "and an annotated frame"
            )
        return (
            f"stream {stream_id}: {UNKNOWN_STREAM}: no stream with this id is open on this "
            "server; the first frame of a stream must carry START (and, to track anything, an "
            "annotation)"
        )

    def reap_idle(self) -> list[int | str]:
        """Close streams idle for longer than ``idle_timeout_s``; return their ids."""
        with self._lock:
            now = self.clock()
            idle = [
                sid for sid, entry in self._open.items()
                if not entry.busy and now - entry.last_seen > self.idle_timeout_s
            ]
            for sid in idle:
                del self._open[sid]
                self._remember(self._reaped, sid, now)
            self.reaped_total += len(idle)
        for sid in idle:
            logger.info("stream %s reaped after %g s idle", sid, self.idle_timeout_s)
        return idle

    @staticmethod
    def _remember(memory: OrderedDict, stream_id: int | str, value: float | None) -> None:
        """Record ``stream_id`` as the newest entry of ``memory``, forgetting the oldest beyond
        ``REMEMBERED_IDS``."""
        memory[stream_id] = value
        memory.move_to_end(stream_id)
        while len(memory) > REMEMBERED_IDS:
            memory.popitem(last=False)

    def close_all(self) -> None:
        """Drop every stream (model unload)."""
        with self._lock:
            self._open.clear()
