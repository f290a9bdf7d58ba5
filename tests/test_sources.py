"""softmask.runtime.sources and .annotations: folders in natural order, video files in several
containers, a URL served without range requests, truncated files, cameras that are absent, and
every way of naming an annotated frame."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from softmask.errors import InputError
from softmask.runtime.annotations import resolve_annotations
from softmask.runtime.sources import ImageFolderSource, VideoSource, open_source
from tests.videos import (
    decode_video,
    first_annotation,
    http_server,
    moving_objects,
    write_label_png,
    write_video,
)

T = 8


@pytest.fixture(scope="module")
def frames():
    return moving_objects(T)


def _frames_folder(folder, frames, names):
    folder.mkdir()
    for frame, name in zip(frames, names):
        Image.fromarray(frame).save(folder / name)
    return folder


def test_folder_frames_come_in_natural_order(frames, tmp_path):
    # ffmpeg's default %d.png naming: 0.png ... 7.png; plain sorting would put 10 before 2.
    names = [f"{t}.png" for t in range(T)]
    names[2:] = [f"{t + 8}.png" for t in range(2, T)]  # 0, 1, 10, 11, ... as on disk
    folder = _frames_folder(tmp_path / "seq", frames, names)
    order = [int(p.stem) for p in ImageFolderSource(folder).paths]
    assert order == [0, 1, 10, 11, 12, 13, 14, 15]
    with open_source(folder) as source:
        decoded = list(source)
    assert [f.name for f in decoded] == [str(n) for n in order]
    assert all((f.rgb == frames[i]).all() for i, f in enumerate(decoded))
    assert decoded[3].origin.endswith("11.png")


def test_two_frames_with_one_stem_are_refused(frames, tmp_path):
    folder = _frames_folder(tmp_path / "seq", frames[:3], ["00000.png", "00012.png", "00013.png"])
    Image.fromarray(frames[0]).save(folder / "00012.jpg")
    with pytest.raises(InputError, match=r"00012.jpg and 00012.png|00012.png and 00012.jpg"):
        open_source(folder)


@pytest.mark.parametrize("name, options", [
    ("clip.mkv", {"lossless": True}),
    ("clip.mp4", {"lossless": True}),
    ("clip.webm", {"codec": "libvpx-vp9"}),
    ("clip.avi", {"codec": "mpeg4"}),
])
def test_video_files_decode_in_order_with_timestamps(frames, tmp_path, name, options):
    path = write_video(tmp_path / name, frames, fps=10, **options)
    with open_source(path) as source:
        assert isinstance(source, VideoSource) and source.kind == "video" and not source.live
        assert source.fps == pytest.approx(10)
        decoded = list(source)
    assert [f.index for f in decoded] == list(range(T))
    assert [f.name for f in decoded] == [f"{t:05d}" for t in range(T)]
    assert [f.timestamp for f in decoded] == pytest.approx([t / 10 for t in range(T)])
    assert all(f.rgb.shape == (64, 96, 3) and f.rgb.dtype == np.uint8 for f in decoded)
    if options.get("lossless"):
        assert all((f.rgb == frames[f.index]).all() for f in decoded)


def test_first_frame_is_decoded_once_and_yielded_again(frames, tmp_path):
    path = write_video(tmp_path / "clip.mkv", frames, lossless=True)
    with open_source(path) as source:
        first = source.first_frame()
        assert source.first_frame() is first
        decoded = list(source)
    assert decoded[0] is first and len(decoded) == T


def test_a_url_over_plain_http_reads_like_the_file(frames, tmp_path):
    write_video(tmp_path / "clip.mp4", frames, lossless=True)
    with http_server(tmp_path) as base, open_source(f"{base}/clip.mp4") as source:
        assert source.kind == "url" and not source.live
        decoded = [f.rgb for f in source]
    assert len(decoded) == T and all((a == b).all() for a, b in zip(decoded, frames))


def test_an_mp4_with_its_index_at_the_end_over_http_says_to_remux(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (20, 120, 160, 3), dtype=np.uint8)
    write_video(tmp_path / "late-index.mp4", noise, faststart=False)
    # FFmpeg fails when it opens the URL or at the first frame, depending on buffering.
    with (
        http_server(tmp_path) as base,
        pytest.raises(InputError) as caught,
        open_source(f"{base}/late-index.mp4") as source,
    ):
        list(source)
    message = str(caught.value)
    assert message.startswith(f"{base}/late-index.mp4: cannot ")
    assert "faststart" in message and "range requests" in message and "\n" not in message


def test_a_missing_url_names_it(tmp_path):
    with http_server(tmp_path) as base, pytest.raises(InputError, match="missing.mp4: cannot open"):
        open_source(f"{base}/missing.mp4")


def test_a_truncated_file_fails_at_the_frame_it_reached(tmp_path):
    clip = moving_objects(30)
    path = write_video(tmp_path / "clip.mp4", clip)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    decoded = []
    with open_source(path) as source, pytest.raises(InputError) as caught:
        decoded.extend(source)
    assert str(caught.value).startswith(f"{path}: cannot decode frame {len(decoded)}")
    assert 0 < len(decoded) < 30


def test_an_absent_camera_is_named(tmp_path):
    with pytest.raises(InputError, match=r"^/dev/video57: cannot open"):
        open_source("camera:57")
    with pytest.raises(InputError, match=r"^/dev/video57: cannot open"):
        open_source("/dev/video57")


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.mp4: video file does not exist"):
        open_source(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="nowhere: no such folder, video file, URL or camera"):
        open_source(tmp_path / "nowhere")


def test_annotations_single_png_indexed_and_repeated(frames, tmp_path):
    labels = first_annotation()
    first = write_label_png(tmp_path / "first.png", labels)
    later = write_label_png(tmp_path / "later.png", labels * (labels == 2))
    video = write_video(tmp_path / "clip.mp4", frames, lossless=True)  # MP4s list their length
    with open_source(video) as source:
        found = resolve_annotations([first, f"5:{later}"], source)
        assert sorted(found.labels) == [0, 5]
        assert (found.labels[0] == labels).all() and found.sources[5] == str(later)
        with pytest.raises(InputError, match="frame 0 is already annotated by"):
            resolve_annotations([first, f"0:{later}"], source)
        with pytest.raises(InputError, match=r"annotates frame 9, but .*clip.mp4 has 8 frames"):
            resolve_annotations([f"9:{later}"], source)
        with pytest.raises(InputError, match="gone.png: annotation file or folder does not exist"):
            resolve_annotations([tmp_path / "gone.png"], source)


def test_annotation_folders_for_videos_are_named_by_frame_index(frames, tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    write_label_png(folder / "00000.png", first_annotation())
    write_label_png(folder / "3.png", first_annotation())
    video = write_video(tmp_path / "clip.mkv", frames, lossless=True)
    with open_source(video) as source:
        assert sorted(resolve_annotations([folder], source).labels) == [0, 3]
        write_label_png(folder / "first.png", first_annotation())
        with pytest.raises(InputError, match=r"\['first.png'\] are not named by frame index"):
            resolve_annotations([folder], source)


def test_void_pixels_are_background_not_object_255(frames, tmp_path):
    labels = first_annotation()
    labels[0, :] = 255
    path = write_label_png(tmp_path / "first.png", labels)
    video = write_video(tmp_path / "clip.mkv", frames, lossless=True)
    with open_source(video) as source:
        found = resolve_annotations([path], source)
    assert found.largest_id == 2 and not (found.labels[0][0] == 255).any()


def test_decode_video_helper_round_trips(frames, tmp_path):
    # The helper the other tests trust: lossless files decode to the frames written.
    decoded = decode_video(write_video(tmp_path / "clip.mkv", frames, lossless=True))
    assert all((a == b).all() for a, b in zip(decoded, frames))
