"""A stand-in for cuda-python's ``cuda.bindings.driver`` that refuses what the CUDA driver refuses,
so softmask's CUDA layer (softmask/runtime/cuda_driver.py) and the TensorRT backend run on CPU.

Followed from the CUDA driver API reference (cuda.h, 12.x) and cuda-python's ``driver.pyx``
(cuda-bindings 12.9: every call returns a tuple whose first item is a ``CUresult``):

- every call before ``cuInit(0)`` returns CUDA_ERROR_NOT_INITIALIZED; ``cuInit`` with flags other
  than 0 returns CUDA_ERROR_INVALID_VALUE;
- memory and stream calls without a current context return CUDA_ERROR_INVALID_CONTEXT;
  ``cuCtxPopCurrent`` on an empty stack likewise;
- ``cuMemAlloc(0)`` returns CUDA_ERROR_INVALID_VALUE ("If bytesize is 0, cuMemAlloc() returns
  CUDA_ERROR_INVALID_VALUE"); a copy or memset that leaves an allocation, or touches freed memory,
  is refused with CUDA_ERROR_INVALID_VALUE (on a GPU it is an illegal address);
- stream order, per the "API synchronization behavior" section of the driver reference: work on a
  stream runs in order, at ``cuStreamSynchronize``; a host-to-device copy from pageable memory takes
  the host bytes when it is called; a device-to-host copy into pageable memory returns only once
  the copy (and so everything before it on the stream) has completed.

Tests inspect ``log`` (every stream operation, in enqueue order) and ``memory``.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import itertools
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_DEVICE = 101
    CUDA_ERROR_INVALID_CONTEXT = 201
    CUDA_ERROR_INVALID_HANDLE = 400


OK = CUresult.CUDA_SUCCESS


@dataclass
class Op:
    """One stream operation, as enqueued."""

    kind: str  # "HtoD", "DtoH", "DtoD", "memset", "memset2D", "host"
    stream: int
    dst: int = 0
    src: int = 0
    nbytes: int = 0
    run: Callable[[], None] | None = field(default=None, repr=False)


class FakeDriver:
    """The driver of a machine with GPUs named ``devices`` (each with ``memory_bytes``)."""

    def __init__(self, devices: tuple[str, ...] = ("NVIDIA Fake GPU",),
                 memory_bytes: int = 1 << 34) -> None:
        self.devices = devices
        self.memory_bytes = memory_bytes
        self.initialised = False
        self.context_stack: list[int] = []
        self.memory: dict[int, bytearray] = {}  # allocation base -> contents
        self.freed: set[int] = set()
        self.streams: dict[int, list[Op]] = {0: []}
        self.log: list[Op] = []
        self._addresses = itertools.count(1 << 40, 1 << 32)
        self._handles = itertools.count(0x1000)

    # --- checks -------------------------------------------------------------------------------

    def _ready(self, needs_context: bool = True) -> CUresult:
        if not self.initialised:
            return CUresult.CUDA_ERROR_NOT_INITIALIZED
        if needs_context and not self.context_stack:
            return CUresult.CUDA_ERROR_INVALID_CONTEXT
        return OK

    def _locate(self, address: int, nbytes: int) -> tuple[bytearray, int] | None:
        """The allocation holding [address, address + nbytes) and the offset in it, or None."""
        for base, data in self.memory.items():
            if base <= address and address + nbytes <= base + len(data):
                return data, address - base
        return None

    def _stream(self, handle: object) -> list[Op] | None:
        return self.streams.get(int(handle))

    def _enqueue(self, op: Op) -> CUresult:
        queue = self._stream(op.stream)
        if queue is None:
            return CUresult.CUDA_ERROR_INVALID_HANDLE
        queue.append(op)
        self.log.append(op)
        return OK

    def _drain(self, handle: int) -> None:
        queue = self.streams[handle]
        while queue:
            op = queue.pop(0)
            if op.run is not None:
                op.run()

    # --- the API ------------------------------------------------------------------------------

    def cuInit(self, flags: int):
        if flags != 0:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        self.initialised = True
        return (OK,)

    def cuDeviceGetCount(self):
        status = self._ready(needs_context=False)
        return (status, len(self.devices) if status == OK else 0)

    def cuDeviceGet(self, ordinal: int):
        status = self._ready(needs_context=False)
        if status != OK:
            return (status, None)
        if not 0 <= ordinal < len(self.devices):
            return (CUresult.CUDA_ERROR_INVALID_DEVICE, None)
        return (OK, ordinal)

    def cuDeviceGetName(self, length: int, device: int):
        status = self._ready(needs_context=False)
        if status != OK:
            return (status, b"")
        return (OK, self.devices[device].encode().ljust(length, b"\0")[:length])

    def cuDevicePrimaryCtxRetain(self, device: int):
        status = self._ready(needs_context=False)
        return (status, 0xC0 + device if status == OK else None)

    def cuCtxPushCurrent(self, context: int):
        status = self._ready(needs_context=False)
        if status == OK:
            self.context_stack.append(context)
        return (status,)

    def cuCtxPopCurrent(self):
        status = self._ready()
        return (status, self.context_stack.pop() if status == OK else None)

    def cuStreamCreate(self, flags: int):
        status = self._ready()
        if status != OK:
            return (status, None)
        handle = next(self._handles)
        self.streams[handle] = []
        return (OK, handle)

    def cuStreamSynchronize(self, stream: int):
        status = self._ready()
        if status == OK and self._stream(stream) is None:
            status = CUresult.CUDA_ERROR_INVALID_HANDLE
        if status == OK:
            self._drain(int(stream))
        return (status,)

    def cuMemAlloc(self, nbytes: int):
        status = self._ready()
        if status != OK:
            return (status, None)
        if nbytes == 0:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
        if sum(map(len, self.memory.values())) + nbytes > self.memory_bytes:
            return (CUresult.CUDA_ERROR_OUT_OF_MEMORY, None)
        address = next(self._addresses)
        self.memory[address] = bytearray(nbytes)
        return (OK, address)

    def cuMemFree(self, address: int):
        status = self._ready()
        if status == OK and int(address) not in self.memory:
            status = CUresult.CUDA_ERROR_INVALID_VALUE
        if status == OK:
            self.freed.add(int(address))
            del self.memory[int(address)]
        return (status,)

    def cuMemcpyHtoDAsync(self, dst: int, host: int, nbytes: int, stream: int):
        status = self._ready()
        target = self._locate(int(dst), nbytes)
        if status != OK or target is None:
            return (status if status != OK else CUresult.CUDA_ERROR_INVALID_VALUE,)
        data = ctypes.string_at(host, nbytes)  # pageable source: taken now
        buffer, offset = target

        def run() -> None:
            buffer[offset:offset + nbytes] = data

        return (self._enqueue(Op("HtoD", int(stream), int(dst), 0, nbytes, run)),)

    def cuMemcpyDtoHAsync(self, host: int, src: int, nbytes: int, stream: int):
        status = self._ready()
        source = self._locate(int(src), nbytes)
        if status != OK or source is None:
            return (status if status != OK else CUresult.CUDA_ERROR_INVALID_VALUE,)
        buffer, offset = source

        def run() -> None:
            ctypes.memmove(host, bytes(buffer[offset:offset + nbytes]), nbytes)

        status = self._enqueue(Op("DtoH", int(stream), 0, int(src), nbytes, run))
        if status == OK:
            self._drain(int(stream))  # pageable destination: returns once the copy is done
        return (status,)

    def cuMemcpyDtoDAsync(self, dst: int, src: int, nbytes: int, stream: int):
        status = self._ready()
        source, target = self._locate(int(src), nbytes), self._locate(int(dst), nbytes)
        if status != OK or source is None or target is None:
            return (status if status != OK else CUresult.CUDA_ERROR_INVALID_VALUE,)

        def run() -> None:
            (sbuf, soff), (dbuf, doff) = source, target
            dbuf[doff:doff + nbytes] = bytes(sbuf[soff:soff + nbytes])

        return (self._enqueue(Op("DtoD", int(stream), int(dst), int(src), nbytes, run)),)

    def cuMemsetD8Async(self, dst: int, value: int, count: int, stream: int):
        status = self._ready()
        target = self._locate(int(dst), count)
        if status != OK or target is None:
            return (status if status != OK else CUresult.CUDA_ERROR_INVALID_VALUE,)
        buffer, offset = target

        def run() -> None:
            buffer[offset:offset + count] = bytes([value]) * count

        return (self._enqueue(Op("memset", int(stream), int(dst), 0, count, run)),)

    def cuMemsetD2D8Async(self, dst: int, pitch: int, value: int, width: int, height: int,
                          stream: int):
        status = self._ready()
        span = pitch * (height - 1) + width if height else 0
        target = self._locate(int(dst), span)
        if status != OK or target is None or width > pitch:
            return (status if status != OK else CUresult.CUDA_ERROR_INVALID_VALUE,)
        buffer, offset = target

        def run() -> None:
            for row in range(height):
                start = offset + row * pitch
                buffer[start:start + width] = bytes([value]) * width

        return (self._enqueue(Op("memset2D", int(stream), int(dst), 0, span, run)),)

    def cuGetErrorName(self, error: CUresult):
        return (OK, CUresult(int(error)).name.encode())

    # --- hooks for other fakes (what a kernel launch on the stream would do) -------------------

    def launch(self, stream: int, work: Callable[[], None], label: str = "host") -> CUresult:
        """Enqueue ``work`` on ``stream`` like a kernel: it runs in stream order."""
        status = self._ready()
        if status != OK:
            return status
        return self._enqueue(Op(label, int(stream), run=work))

    def read(self, address: int, nbytes: int) -> bytes:
        found = self._locate(address, nbytes)
        if found is None:
            raise ValueError(f"no allocation holds [{address:#x}, +{nbytes})")
        buffer, offset = found
        return bytes(buffer[offset:offset + nbytes])

    def write(self, address: int, data: bytes) -> None:
        found = self._locate(address, len(data))
        if found is None:
            raise ValueError(f"no allocation holds [{address:#x}, +{len(data)})")
        buffer, offset = found
        buffer[offset:offset + len(data)] = data


def make_module(driver: FakeDriver | None = None) -> types.ModuleType:
    """A module to put in ``sys.modules["cuda.bindings.driver"]``; ``module.fake`` is the driver."""
    driver = driver or FakeDriver()
    module = types.ModuleType("cuda.bindings.driver")
    module.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.driver", None)
    module.fake = driver
    module.CUresult = CUresult
    for name in dir(FakeDriver):
        if name.startswith("cu"):
            setattr(module, name, getattr(driver, name))
    return module


def install(monkeypatch, driver: FakeDriver | None = None) -> FakeDriver:
    """Put a fake ``cuda.bindings.driver`` (and its parent packages) into ``sys.modules``."""
    module = make_module(driver)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    cuda.__spec__ = importlib.machinery.ModuleSpec("cuda", None, is_package=True)
    bindings.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings", None, is_package=True)
    cuda.bindings = bindings
    bindings.driver = module
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", module)
    return module.fake
