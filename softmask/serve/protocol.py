"""What the server and its clients agree on: model and tensor names, and the phrases error
responses start with (clients map them to one clear line)."""

from __future__ import annotations

import hashlib

STREAM_MODEL = "softmask_stream"
# Graph models called from the stream model (BLS), keyed by graph name: the frame encoder of a
# shared-encoder export and the per-frame graphs.
GRAPH_MODELS = {
    "features": "softmask_features",
    "init": "softmask_init",
    "step": "softmask_step",
    "annotate": "softmask_annotate",
}

# softmask_stream's tensors.
FRAME = "FRAME"  # uint8 [H, W, 3], RGB
ANNOTATION = "ANNOTATION"  # uint8 [H, W], object ids (optional input)
# uint8 [KEY_BYTES], the stream owner's secret (optional input): chosen by the client at START,
# sent with every frame; the server keeps only its digest.
STREAM_KEY = "STREAM_KEY"
KEY_BYTES = 16
LABELS = "LABELS"  # uint8 [H, W]
SCORES = "SCORES"  # float32 [N, H, W] (only in repositories written with scores)
FRAME_INDEX = "FRAME_INDEX"  # int64 [1]: the server's count of this stream's frames, from 0
# Sequence batcher control tensors.
CORRID, START, END, READY = "CORRID", "START", "END", "READY"

# Error responses about a stream's lifetime start with one of these, after "stream <id>: ".
UNKNOWN_STREAM = "unknown stream"
REAPED_STREAM = "stream was reaped"
TOO_MANY_STREAMS = "too many streams"
REFUSED_START = "its START was refused"
NOT_OWNER = "not this stream's owner"
STREAM_BUSY = "stream busy"
# A failure of the server, not of the request (a graph model failed, a bug): the client reports
# a server fault, not a refused frame.
SERVER_FAULT = "server fault"
# Triton's own refusal of a sequence it does not hold (never started, or idled out there).
TRITON_NEEDS_START = "must specify the START flag"
# Triton's python backend when a model's stub process died or hangs: a server fault too.
TRITON_STUB_FAILED = "Stub process"

# HTTP/gRPC header carrying the stream id, for routers that pin a stream to one server.
STREAM_HEADER = "softmask-stream-id"
# Header carrying the admin key, which Triton's administrative APIs require (serve start makes
# one per start); and the header carrying the stream token (serve start --allow-remote).
ADMIN_HEADER = "softmask-admin-key"
TOKEN_HEADER = "softmask-token"


def stream_id_number(stream_id: str | int) -> int:
    """The correlation id (1 .. 2**63 - 1) of a stream named ``stream_id``: a positive integer
    stands for itself; any other text maps to a stable hash, so a router and the server agree."""
    text = str(stream_id).strip()
    if text.isdigit() and 0 < int(text) < 2**63:
        return int(text)
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)
    return digest or 1
