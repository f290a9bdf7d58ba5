"""A thin layer over CUDA's driver API for the TensorRT backend: one device's primary context,
a stream, and device buffers of fixed address and shape. No torch.

It uses cuda-python's ``cuda.bindings.driver`` (package ``cuda-bindings``): prebuilt wheels for
x86_64 and aarch64 (Python 3.9-3.13), nothing compiled at install time, and the driver API it
wraps is reached through the driver (``libcuda.so.1``), so it does not depend on which
``libcudart`` happens to be loaded in the process (docs/deploy-tensorrt.md says why this one).

The primary context is the one the CUDA runtime (and so TensorRT) uses on that device, so
TensorRT's enqueue and these buffers share one context. Every call checks its ``CUresult`` and
raises ``CudaError`` naming the call and the error.

Tested on CPU against a fake of ``cuda.bindings.driver`` (tests/fake_cuda.py) that refuses what the
driver refuses; UNVERIFIED on a GPU.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from softmask.errors import BackendUnavailable, SoftmaskError

logger = logging.getLogger(__name__)

DRIVER_MODULE = "cuda.bindings.driver"
# CU_STREAM_NON_BLOCKING: the stream does not synchronise with the legacy default stream.
STREAM_NON_BLOCKING = 1


class CudaError(SoftmaskError):
    """A CUDA driver call failed after the device was opened (the message names the call)."""


def import_driver() -> Any:
    """``cuda.bindings.driver``, or BackendUnavailable saying how to install it."""
    try:
        return importlib.import_module(DRIVER_MODULE)
    except ImportError as error:
        raise BackendUnavailable(
            f"the tensorrt backend needs cuda-python's driver bindings: `import {DRIVER_MODULE}` "
            f"failed ({error}). Install them with `pip install \"cuda-bindings>=12.6\"` "
            "(prebuilt wheels for x86_64 and aarch64, JetPack 6 included)."
        ) from error


def _check(driver: Any, call: str, result: tuple) -> Any:
    """The values after ``result``'s CUresult, or CudaError when it is not CUDA_SUCCESS."""
    error, *values = result
    if int(error) != 0:
        name_result = driver.cuGetErrorName(error)
        name = name_result[1].decode() if int(name_result[0]) == 0 else str(int(error))
        raise CudaError(f"CUDA driver call {call} failed: {name} ({int(error)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class Stream:
    """A non-blocking CUDA stream; ``handle`` is what TensorRT's ``execute_async_v3`` takes."""

    def __init__(self, device: Device) -> None:
        self._device = device
        with device.current():
            self._stream = device.call("cuStreamCreate", STREAM_NON_BLOCKING)

    @property
    def handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        """Wait until everything enqueued on this stream has finished."""
        with self._device.current():
            self._device.call("cuStreamSynchronize", self._stream)


class DeviceBuffer:
    """A device allocation holding one array of ``shape`` and ``dtype``; its address never
    changes, so it can be bound to TensorRT once.

    Copies are asynchronous on ``stream``; ``download`` synchronises before it returns, and a
    host array given to ``upload`` must stay unchanged until the stream has passed the copy.
    """

    def __init__(self, device: Device, shape: Sequence[int], dtype: np.dtype) -> None:
        self.device = device
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        with device.current():
            self._pointer = device.call("cuMemAlloc", max(self.nbytes, 1))

    @property
    def address(self) -> int:
        return int(self._pointer)

    def _host(self, array: np.ndarray) -> np.ndarray:
        host = np.ascontiguousarray(array, dtype=self.dtype)
        if host.shape != self.shape:
            raise ValueError(f"array of shape {host.shape} for a device buffer of {self.shape}")
        return host

    def upload(self, array: np.ndarray, stream: Stream) -> np.ndarray:
        """Enqueue the copy of ``array`` (cast to this dtype) into the buffer; returns the host
        array actually copied from (keep it alive until the stream passes the copy)."""
        host = self._host(array)
        with self.device.current():
            self.device.call("cuMemcpyHtoDAsync", self._pointer, host.ctypes.data, self.nbytes,
                             stream.handle)
        return host

    def download(self, stream: Stream) -> np.ndarray:
        """The buffer's contents once every earlier work on ``stream`` has finished."""
        host = np.empty(self.shape, self.dtype)
        with self.device.current():
            self.device.call("cuMemcpyDtoHAsync", host.ctypes.data, self._pointer, self.nbytes,
                             stream.handle)
            self.device.call("cuStreamSynchronize", stream.handle)
        return host

    def zero(self, stream: Stream) -> None:
        with self.device.current():
            self.device.call("cuMemsetD8Async", self._pointer, 0, self.nbytes, stream.handle)

    def copy_from(self, source: DeviceBuffer, stream: Stream, count: int | None = None,
                  offset: int = 0, source_offset: int = 0) -> None:
        """Enqueue a device-to-device copy of ``count`` bytes (default: all) from ``source`` at
        ``source_offset`` to this buffer at ``offset``."""
        count = self.nbytes if count is None else count
        if offset + count > self.nbytes or source_offset + count > source.nbytes:
            raise ValueError("device copy outside a buffer")
        with self.device.current():
            self.device.call("cuMemcpyDtoDAsync", self.address + offset,
                             source.address + source_offset, count, stream.handle)

    def zero_range(self, stream: Stream, offset: int, count: int) -> None:
        if offset + count > self.nbytes:
            raise ValueError("device memset outside a buffer")
        with self.device.current():
            self.device.call("cuMemsetD8Async", self.address + offset, 0, count, stream.handle)

    def free(self) -> None:
        if self._pointer is not None:
            with self.device.current():
                self.device.call("cuMemFree", self._pointer)
            self._pointer = None


class Device:
    """CUDA device ``index`` through its primary context (the CUDA runtime's, TensorRT's).

    Raises:
        BackendUnavailable: cuda-python is missing, the driver does not initialise, or there is
            no device ``index``.
    """

    def __init__(self, index: int = 0, driver: Any = None) -> None:
        self.driver = driver if driver is not None else import_driver()
        self.index = index
        try:
            self.call("cuInit", 0)
            count = self.call("cuDeviceGetCount")
        except CudaError as error:
            raise BackendUnavailable(f"no usable CUDA driver: {error}") from error
        if not 0 <= index < count:
            raise BackendUnavailable(
                f"the tensorrt backend needs a CUDA GPU: device {index} requested, the driver "
                f"sees {count}"
            )
        self._device = self.call("cuDeviceGet", index)
        self.name = self.call("cuDeviceGetName", 256, self._device).split(b"\0")[0].decode()
        self._context = self.call("cuDevicePrimaryCtxRetain", self._device)

    def call(self, name: str, *args: Any) -> Any:
        """``driver.<name>(*args)``, its CUresult checked."""
        return _check(self.driver, name, getattr(self.driver, name)(*args))

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make the primary context current on this thread for the block."""
        self.call("cuCtxPushCurrent", self._context)
        try:
            yield
        finally:
            self.call("cuCtxPopCurrent")

    def stream(self) -> Stream:
        return Stream(self)

    def buffer(self, shape: Sequence[int], dtype: np.dtype) -> DeviceBuffer:
        return DeviceBuffer(self, shape, dtype)
