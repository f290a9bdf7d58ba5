"""Jetson's ``tegrastats`` beside a benchmark: GPU and memory load, power rails.

``tegrastats`` (Jetson Linux, JetPack) prints one line per interval, e.g. on an AGX Orin::

    RAM 2448/62780MB (lfb 2x4MB) SWAP 0/31390MB (cached 0MB) CPU [1%@729,...] EMC_FREQ 0%@2133
    GR3D_FREQ 0%@[305,305] ... VDD_GPU_SOC 3187mW/3187mW VDD_CPU_CV 398mW/398mW ...

Fields follow NVIDIA's documented formats (Jetson Linux / DRIVE OS "tegrastats Utility",
"Reported Statistics"): ``RAM X/YMB (lfb NxZMB)`` used / total MiB, ``SWAP X/YMB (cached ZMB)``,
``EMC_FREQ X%@Y`` memory-controller load, ``GR3D_FREQ X%@Y`` or ``X%@[Y,Y]`` (Orin: one
frequency per GPC) the integrated GPU's load, and per power rail ``NAME XmW/YmW`` current and
average power in milliwatts (newer releases add a third value, the maximum). Rail names depend on
the module (AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0; Orin NX/Nano: VDD_IN,
VDD_CPU_GPU_CV, VDD_SOC). Whatever a line lacks is left out of its sample; other fields are
ignored.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW(?:/(\d+)mW)?")


def parse_line(line: str) -> dict[str, Any]:
    """One tegrastats line as a sample.

    Returns:
        Any of ``ram_used_mib``, ``ram_total_mib``, ``swap_used_mib``, ``swap_total_mib``,
        ``gpu_load_percent`` (GR3D), ``emc_load_percent`` that the line has, and ``rails_mw``:
        rail name -> current power (mW). Empty for a line with none of these.
    """
    sample: dict[str, Any] = {}
    for pattern, keys in ((_RAM, ("ram_used_mib", "ram_total_mib")),
                          (_SWAP, ("swap_used_mib", "swap_total_mib"))):
        found = pattern.search(line)
        if found:
            sample[keys[0]], sample[keys[1]] = int(found.group(1)), int(found.group(2))
    for pattern, key in ((_GPU, "gpu_load_percent"), (_EMC, "emc_load_percent")):
        found = pattern.search(line)
        if found:
            sample[key] = int(found.group(1))
    rails = {m.group(1): int(m.group(2)) for m in _RAIL.finditer(line)}
    if rails:
        sample["rails_mw"] = rails
    return sample


def summarize(samples: list[dict[str, Any]], interval_ms: int) -> dict[str, Any]:
    """Mean and peak of each quantity over ``samples`` (``parse_line`` results).

    Returns:
        ``samples``, ``interval_ms``, ``gpu_load_percent`` and ``emc_load_percent`` (mean, max),
        ``ram_used_mib`` (max; ``ram_total_mib`` beside it), ``swap_used_mib`` (max) and
        ``rails_mw``: rail -> {mean, max} of its current power. A quantity no sample has is None.
    """

    def stats(values: list[float]) -> dict[str, float] | None:
        return {"mean": sum(values) / len(values), "max": max(values)} if values else None

    def column(key: str) -> list[float]:
        return [s[key] for s in samples if key in s]

    rails: dict[str, list[float]] = {}
    for sample in samples:
        for name, milliwatts in sample.get("rails_mw", {}).items():
            rails.setdefault(name, []).append(milliwatts)
    return {
        "samples": len(samples),
        "interval_ms": interval_ms,
        "gpu_load_percent": stats(column("gpu_load_percent")),
        "emc_load_percent": stats(column("emc_load_percent")),
        "ram_used_mib": max(column("ram_used_mib"), default=None),
        "ram_total_mib": max(column("ram_total_mib"), default=None),
        "swap_used_mib": max(column("swap_used_mib"), default=None),
        "rails_mw": {name: stats(values) for name, values in rails.items()},
    }


class TegrastatsRecorder:
    """Runs ``tegrastats --interval MS`` while in use and keeps its samples.

    Without a ``tegrastats`` command (anything but a Jetson) it records nothing and
    ``summary()`` is None. ``tegrastats`` runs until stopped; leaving the ``with`` block (or
    ``stop()``) ends it, waiting at most ``stop_timeout_s``.
    """

    def __init__(self, interval_ms: int = 100, command: str = "tegrastats",
                 stop_timeout_s: float = 5.0) -> None:
        self.interval_ms = interval_ms
        self.path = shutil.which(command)
        self._stop_timeout_s = stop_timeout_s
        self._samples: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> TegrastatsRecorder:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Starts ``tegrastats`` (nothing without the command)."""
        if self.path is None:
            logger.debug("no tegrastats command: not a Jetson, nothing recorded")
            return
        self._process = subprocess.Popen(
            [self.path, "--interval", str(self.interval_ms)], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            sample = parse_line(line)
            if sample:
                with self._lock:
                    self._samples.append(sample)
                    self._lock.notify_all()

    def wait_for_samples(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` samples arrived within ``timeout_s`` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._samples) >= count, timeout=timeout_s)

    def stop(self) -> None:
        """Ends ``tegrastats`` and its reader (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=self._stop_timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=self._stop_timeout_s)

    def summary(self) -> dict[str, Any] | None:
        """``summarize`` of the samples so far, with the command's path; None without one."""
        if self.path is None:
            return None
        with self._lock:
            samples = list(self._samples)
        return {"command": self.path, **summarize(samples, self.interval_ms)}
