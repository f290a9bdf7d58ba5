"""tegrastats beside softmask bench: the line parser, the recorder around a process, the report.

The lines below follow NVIDIA's documented tegrastats formats; they were not recorded on a
Jetson. Field formats and example values: "tegrastats Utility" in NVIDIA's L4T 32.5 Development
Guide (docs.nvidia.com/jetson/archives/l4t-archived/l4t-325/.../AppendixTegraStats.html: "RAM
220/38955MB (lfb 847x4MB)", "SWAP 0/1978MB (cached 0MB)", "CPU [1%@102,5%@102,0%@102,0%@102]",
"EMC_FREQ X%@Y", rails "X/Y" current/average mW) and Orin's "GR3D_FREQ X%@[Y,Y,...]" (one
frequency per GPC) from NVIDIA DRIVE OS 6.0.9.1 "Reported Statistics"; rail names of the AGX
Orin (VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0) and Orin NX/Nano (VDD_IN, VDD_CPU_GPU_CV, VDD_SOC)
from Jetson Linux's power documentation. The GR3D, EMC and rail values are made up.
"""

from __future__ import annotations

import os
import stat

import pytest

from softmask.runtime import bench
from softmask.runtime.tegrastats import TegrastatsRecorder, parse_line, summarize

AGX_ORIN = (
    "RAM 220/38955MB (lfb 847x4MB) SWAP 0/1978MB (cached 0MB) "
    "CPU [1%@102,5%@102,0%@102,0%@102] EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] "
    "VDD_GPU_SOC 5139mW/5000mW VDD_CPU_CV 3268mW/3100mW VIN_SYS_5V0 5500mW/5400mW"
)
# Current, average and maximum per rail, and no GR3D frequency: the form of newer releases.
ORIN_NANO = (
    "RAM 3201/7620MB (lfb 8x4MB) SWAP 12/3810MB (cached 0MB) CPU [12%@1510,off,4%@1510] "
    "EMC_FREQ 20% GR3D_FREQ 61% VDD_IN 7341mW/7000mW/7900mW VDD_CPU_GPU_CV 2530mW/2400mW/2800mW "
    "VDD_SOC 1704mW/1700mW/1750mW"
)


def test_a_documented_line_gives_memory_loads_and_rails():
    assert parse_line(AGX_ORIN) == {
        "ram_used_mib": 220, "ram_total_mib": 38955, "swap_used_mib": 0, "swap_total_mib": 1978,
        "gpu_load_percent": 12, "emc_load_percent": 3,
        "rails_mw": {"VDD_GPU_SOC": 5139, "VDD_CPU_CV": 3268, "VIN_SYS_5V0": 5500},
    }


def test_three_valued_rails_and_a_bare_gpu_load_parse_too():
    sample = parse_line(ORIN_NANO)
    assert sample["gpu_load_percent"] == 61 and sample["emc_load_percent"] == 20
    assert sample["ram_used_mib"] == 3201 and sample["swap_used_mib"] == 12
    assert sample["rails_mw"] == {"VDD_IN": 7341, "VDD_CPU_GPU_CV": 2530, "VDD_SOC": 1704}


def test_a_line_without_known_fields_is_no_sample():
    assert parse_line("tegrastats: interval changed\n") == {}


def test_summary_means_and_peaks():
    second = AGX_ORIN.replace("GR3D_FREQ 12%", "GR3D_FREQ 40%").replace("RAM 220/", "RAM 900/")
    summary = summarize([parse_line(AGX_ORIN), parse_line(second)], interval_ms=100)
    assert summary["samples"] == 2 and summary["interval_ms"] == 100
    assert summary["gpu_load_percent"] == {"mean": 26, "max": 40}
    assert summary["ram_used_mib"] == 900 and summary["ram_total_mib"] == 38955
    assert summary["rails_mw"]["VDD_GPU_SOC"] == {"mean": 5139, "max": 5139}
    assert summarize([], 100)["gpu_load_percent"] is None


@pytest.fixture
def fake_tegrastats(tmp_path, monkeypatch):
    """A `tegrastats` on PATH that prints two documented-format lines and a stray one, then
    runs until terminated; it writes its pid to tegrastats.pid first."""
    folder = tmp_path / "bin"
    folder.mkdir()
    pid_file = tmp_path / "tegrastats.pid"
    script = folder / "tegrastats"
    busier = AGX_ORIN.replace("GR3D_FREQ 12%", "GR3D_FREQ 40%")
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = --interval ] || exit 3\n'
        f'echo $$ > "{pid_file}"\n'
        f'echo "{AGX_ORIN}"\necho "not a sample"\necho "{busier}"\n'
        "exec sleep 600\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return pid_file


def test_the_recorder_keeps_the_samples_and_ends_tegrastats(fake_tegrastats):
    with TegrastatsRecorder(interval_ms=50) as recorder:
        assert recorder.wait_for_samples(2, timeout_s=30)
    pid = int(fake_tegrastats.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # terminated and reaped
    summary = recorder.summary()
    assert summary["command"].endswith("tegrastats") and summary["samples"] == 2
    assert summary["gpu_load_percent"] == {"mean": 26, "max": 40}


def test_without_tegrastats_nothing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with TegrastatsRecorder() as recorder:
        pass
    assert recorder.path is None and recorder.summary() is None


def test_bench_records_tegrastats_beside_its_figures(model, tmp_path, monkeypatch, fake_tegrastats):
    from softmask.model import save_checkpoint
    from softmask.runtime.settings import RunSettings
    from tests.videos import first_annotation, moving_objects, write_label_png, write_video

    class SamplesFirst(TegrastatsRecorder):
        """Starts the runs only once tegrastats' lines are in (no race with a fast bench)."""

        def start(self) -> None:
            super().start()
            assert self.wait_for_samples(2, timeout_s=30)

    monkeypatch.setattr(bench, "TegrastatsRecorder", SamplesFirst)
    video = write_video(tmp_path / "clip.mp4", moving_objects(6), lossless=True)
    annotation = write_label_png(tmp_path / "first.png", first_annotation())
    checkpoint = tmp_path / "tiny.pth"
    save_checkpoint(model, checkpoint)
    settings = RunSettings(backend="torch", checkpoint=checkpoint, temporal_window=3, threads=2)
    results = bench.run_bench(video, [annotation], tmp_path / "bench", settings, warmup=2)
    assert results["tegrastats"]["samples"] == 2
    assert results["tegrastats"]["rails_mw"]["VIN_SYS_5V0"] == {"mean": 5500, "max": 5500}
    page = (tmp_path / "bench" / "bench.md").read_text()
    assert "GPU (GR3D) 26% mean, 40% max" in page and "| VDD_CPU_CV | 3268 | 3268 |" in page
