"""The TensorRT backend's CUDA layer (``softmask.runtime.cuda_driver``, cuda-python's driver
bindings) on a real GPU: the calls the fake driver of ``tests/fake_cuda.py`` stands in for on the
CPU. Marked ``gpu``; needs cuda-python (the ``gpu`` extra)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_buffers_keep_their_address_and_copies_follow_stream_order():
    from softmask.runtime.cuda_driver import Device

    device = Device(0)
    stream = device.stream()
    rng = np.random.default_rng(0)
    state = rng.standard_normal((7, 12, 256)).astype(np.float16)
    first, second = device.buffer(state.shape, np.float16), device.buffer(state.shape, np.float16)
    addresses = (first.address, second.address)
    try:
        kept = first.upload(state, stream)
        # Ping-pong as the backend does: shift the ring buffer by one frame into the other buffer,
        # then zero the newest slot, all on the device and in stream order.
        frame_bytes = state[0].nbytes
        second.copy_from(first, stream, count=6 * frame_bytes, offset=0, source_offset=frame_bytes)
        second.zero_range(stream, 6 * frame_bytes, frame_bytes)
        got = second.download(stream)
        want = np.concatenate([state[1:], np.zeros_like(state[:1])])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(first.download(stream), kept)
        assert (first.address, second.address) == addresses
        with pytest.raises(ValueError, match="outside a buffer"):
            second.copy_from(first, stream, count=first.nbytes + 1)
    finally:
        first.free()
        second.free()
