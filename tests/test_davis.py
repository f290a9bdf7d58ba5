"""DAVIS J&F pinned by hand-computed cases (values reasoned out in the comments, not re-run)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from softmask import cli
from softmask.data.io import read_annotation
from softmask.data.synthetic import write_davis_dataset
from softmask.errors import InputError
from softmask.eval.davis import (
    boundary_map,
    boundary_tolerance,
    contour_accuracy,
    disk,
    evaluate_davis,
    format_table,
    region_similarity,
    statistics,
    write_csv,
)


def test_region_similarity_hand_cases():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert region_similarity(a, b) == 1.0  # both empty
    a[0, :2] = True  # 2 pixels
    assert region_similarity(a, b) == 0.0  # prediction only
    b[0, 1:4] = True  # 3 pixels, overlap 1, union 4
    assert region_similarity(a, b) == pytest.approx(0.25)


def test_boundary_map_of_a_block_follows_seg2bmap():
    m = np.zeros((4, 5), bool)
    m[1:3, 1:4] = True
    # Pixels differing from the right, bottom or bottom-right neighbour: the block's top-left
    # halo (row 0, col 0), the block's own last row/column, and nothing in the last image
    # row/column (there only right resp. bottom neighbours count, and those are equal).
    want = np.array([
        [1, 1, 1, 1, 0],
        [1, 0, 0, 1, 0],
        [1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ], bool)
    np.testing.assert_array_equal(boundary_map(m), want)


def test_boundary_map_last_row_and_column_rules():
    m = np.zeros((3, 3), bool)
    m[2, 0] = True  # last row: differs from its right neighbour -> boundary
    m[0, 2] = True  # last column: differs from the pixel below -> boundary
    b = boundary_map(m)
    assert b[2, 0] and b[0, 2]
    assert not b[2, 2]  # the corner is never boundary
    full = np.ones((3, 3), bool)
    # Outside neighbours exist only past the last row/column, whose rules compare inside the
    # image only: a full mask has no boundary.
    assert not boundary_map(full).any()


def test_boundary_tolerance_and_disk():
    assert boundary_tolerance(480, 854) == 8  # ceil(0.008 * 979.6) = ceil(7.84)
    assert boundary_tolerance(100, 100) == 2  # ceil(1.13)
    d = disk(2)
    assert d.shape == (5, 5)
    assert d.sum() == 13  # x^2 + y^2 <= 4: 1 + 3 + 5 + 3 + 1
    assert not d[0, 0] and d[0, 2] and d[2, 0]


def test_contour_accuracy_empty_rules():
    empty = np.zeros((20, 20), bool)
    obj = np.zeros((20, 20), bool)
    obj[5:10, 5:10] = True
    assert contour_accuracy(empty, empty) == 1.0
    assert contour_accuracy(empty, obj) == 0.0  # P = 1, R = 0
    assert contour_accuracy(obj, empty) == 0.0  # P = 0, R = 1
    assert contour_accuracy(obj, obj) == 1.0


def test_contour_accuracy_shift_within_and_beyond_tolerance():
    # 100x100 image: tolerance ceil(0.008 * 141.4) = 2 pixels.
    truth = np.zeros((100, 100), bool)
    truth[20:60, 20:60] = True
    near = np.roll(truth, 2, axis=1)  # every boundary pixel within 2 px of the other's
    assert contour_accuracy(near, truth) == 1.0
    far = np.zeros((100, 100), bool)
    far[70:90, 70:90] = True  # disjoint, > 2 px away everywhere
    assert contour_accuracy(far, truth) == 0.0


def test_contour_accuracy_partial_hand_computed():
    # 100x100, tolerance 2. Truth: a vertical bar at columns 10..49 in rows 0..99 (touching the
    # top and bottom). Its boundary: the halo column 9 and the bar's last column 49 (rows 0..98 in
    # col 9, plus row 99 col 9 via the last-row rule; col 49 all 100 rows) -> hand count below.
    truth = np.zeros((100, 100), bool)
    truth[:, 10:50] = True
    bt = boundary_map(truth)
    assert bt[:, 9].sum() == 100 and bt[:, 49].sum() == 100 and bt.sum() == 200
    # Prediction: the same left edge, right edge moved to column 79 (30 px away).
    pred = np.zeros((100, 100), bool)
    pred[:, 10:80] = True
    # Precision: of pred's 200 boundary pixels, the 100 at column 9 match -> 0.5.
    # Recall: of truth's 200, the 100 at column 9 match -> 0.5. F = 0.5.
    assert contour_accuracy(pred, truth) == pytest.approx(0.5)


def test_statistics_mean_recall_decay_bins():
    values = np.array([1.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.0])
    mean, recall, decay = statistics(values)
    assert mean == pytest.approx(4.9 / 8)
    assert recall == pytest.approx(5 / 8)  # 1.0, 1.0, 0.9, 0.8, 0.6 are > 0.5
    # n = 8: linspace(1, 8, 5) + 1e-10 = 1, 2.75, 4.5+, 6.25, 8 -> round = 1, 3, 5, 6, 8 (the
    # 1e-10 breaks the 4.5 tie upwards) -> minus 1: 0, 2, 4, 5, 7. First bin values[0:3], last
    # bin values[5:8].
    assert decay == pytest.approx(np.mean([1.0, 1.0, 0.9]) - np.mean([0.4, 0.2, 0.0]))


def test_statistics_nan_frames_are_ignored():
    mean, _, _ = statistics(np.array([1.0, np.nan, 0.0]))
    assert mean == pytest.approx(0.5)


def _write(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def _tree(tmp_path, truth_frames, result_frames, seq="clip"):
    root, results = tmp_path / "davis", tmp_path / "results"
    for t, labels in enumerate(truth_frames):
        _write(root / "Annotations" / "480p" / seq / f"{t:05d}.png", labels)
    for t, labels in result_frames.items():
        _write(results / seq / f"{t:05d}.png", labels)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{seq}\n")
    return root, results


def _block(value, rows, cols, shape=(40, 40)):
    a = np.zeros(shape, np.uint8)
    a[rows, cols] = value
    return a


def test_evaluate_perfect_and_half_results(tmp_path):
    obj1 = _block(1, slice(5, 15), slice(5, 15))
    both = obj1 + _block(2, slice(20, 30), slice(20, 40))
    truth = [both, both, both, both, both]
    # Frames 1..3 evaluated (first and last excluded; their results may be absent).
    # Object 1 perfect everywhere; object 2 missing in frame 2 only.
    results = {1: both, 2: obj1, 3: both}
    root, res = _tree(tmp_path, truth, results)
    out = evaluate_davis(root, res)
    # J: object 1 = 1, 1, 1; object 2 = 1, 0, 1 -> means 1 and 2/3; global J-Mean 5/6.
    assert out["J-Mean"] == pytest.approx(5 / 6)
    assert out["J-Recall"] == pytest.approx((1 + 2 / 3) / 2)
    # F is 0 where the prediction is empty and the truth is not, 1 where equal: same numbers.
    assert out["F-Mean"] == pytest.approx(5 / 6)
    assert out["J&F-Mean"] == pytest.approx(5 / 6)
    # Decay, n=3: linspace(1,3,5) + 1e-10 = 1, 1.5+, 2, 2.5+, 3 -> round 1, 2, 2, 3, 3 -> ids
    # 0, 1, 1, 2, 2: first bin values[0:2], last bin values[2:3]. Object 1: 1 - 1 = 0;
    # object 2 (1, 0, 1): mean(1, 0) - 1 = -0.5. Mean over objects: -0.25.
    assert out["J-Decay"] == pytest.approx(-0.25)
    names = [r["Sequence"] for r in out["per_object"]]
    assert names == ["clip_1", "clip_2"]
    assert out["per_object"][1]["J-Mean"] == pytest.approx(2 / 3)


def test_void_pixels_count_as_background(tmp_path):
    obj = _block(1, slice(5, 15), slice(5, 15))
    void = obj.copy()
    void[30:35, 30:35] = 255
    root, res = _tree(tmp_path, [void, void, void], {1: obj})
    assert evaluate_davis(root, res)["J&F-Mean"] == pytest.approx(1.0)


def test_fewer_predicted_objects_are_padded_with_empty_masks(tmp_path):
    two = _block(1, slice(5, 15), slice(5, 15)) + _block(2, slice(20, 30), slice(20, 30))
    only_one = _block(1, slice(5, 15), slice(5, 15))
    root, res = _tree(tmp_path, [two, two, two], {1: only_one})
    out = evaluate_davis(root, res)
    assert [r["J-Mean"] for r in out["per_object"]] == [1.0, 0.0]


def test_more_predicted_objects_than_truth_is_an_error(tmp_path):
    one = _block(1, slice(5, 15), slice(5, 15))
    extra = one + _block(3, slice(20, 30), slice(20, 30))
    root, res = _tree(tmp_path, [one, one, one], {1: extra})
    with pytest.raises(InputError, match="object id 3"):
        evaluate_davis(root, res)


def test_missing_result_png_names_the_file(tmp_path):
    one = _block(1, slice(5, 15), slice(5, 15))
    root, res = _tree(tmp_path, [one, one, one, one], {1: one})
    with pytest.raises(InputError, match=r"00002\.png"):
        evaluate_davis(root, res)


# The label files the two former readers told apart, and which each accepted, read from their
# code before they became data.io.read_label_png: the annotation reader took palette (P) and
# greyscale (L) PNGs only; DAVIS evaluation took any image whose array is 2-D (as the reference
# evaluation's np.array(Image.open(path))), which for PNG files is modes P, L, 1 and I;16.
LABEL_FILES = ("P", "L", "1", "I;16", "LA", "RGB", "RGBA", "not an image", "missing")
ANNOTATION_ACCEPTS = {"P", "L"}
DAVIS_ACCEPTS = {"P", "L", "1", "I;16"}


def _label_file(path, labels, kind):
    """Object ids 0/1 ``labels`` [H, W] written as a PNG that PIL opens in mode ``kind``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "missing":
        return path
    if kind == "not an image":
        path.write_bytes(b"not a PNG")
    elif kind == "1":
        Image.fromarray(labels.astype(bool)).save(path)
    elif kind == "I;16":
        Image.fromarray(labels.astype(np.uint16)).save(path)
    elif kind == "P":
        image = Image.fromarray(labels.astype(np.uint8), mode="L")
        image.putpalette([0, 0, 0, 128, 0, 0])  # makes it a palette image, values kept
        image.save(path)
    else:
        Image.fromarray(labels.astype(np.uint8), mode="L").convert(kind).save(path)
    if path.is_file() and kind != "not an image":
        with Image.open(path) as image:
            assert image.mode == kind
    return path


@pytest.mark.parametrize("kind", LABEL_FILES)
def test_annotation_reader_accepts_and_refuses_what_it_did_before(tmp_path, kind):
    labels = _block(1, slice(5, 15), slice(5, 15))
    path = _label_file(tmp_path / "00000.png", labels, kind)
    if kind in ANNOTATION_ACCEPTS:
        np.testing.assert_array_equal(read_annotation(path), labels)
    else:
        with pytest.raises(InputError, match=r"00000\.png: "):
            read_annotation(path)


@pytest.mark.parametrize("kind", LABEL_FILES)
def test_davis_evaluation_accepts_and_refuses_the_masks_it_did_before(tmp_path, kind):
    one = _block(1, slice(5, 15), slice(5, 15))
    root, res = _tree(tmp_path, [one, one, one], {})
    _label_file(res / "clip" / "00001.png", one, kind)
    if kind in DAVIS_ACCEPTS:
        assert evaluate_davis(root, res)["J&F-Mean"] == pytest.approx(1.0)
    else:
        with pytest.raises(InputError, match=r"00001\.png: "):
            evaluate_davis(root, res)


def test_missing_image_set_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="val.txt"):
        evaluate_davis(tmp_path, tmp_path)


def test_table_and_csv(tmp_path):
    one = _block(1, slice(5, 15), slice(5, 15))
    root, res = _tree(tmp_path, [one, one, one], {1: one})
    out = evaluate_davis(root, res)
    assert "J&F-Mean" in format_table(out) and "clip_1" in format_table(out)
    main, per_object = write_csv(out, tmp_path / "scores" / "global_results.csv")
    assert main.read_text().splitlines()[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert per_object.read_text().splitlines()[1].startswith("clip_1,1.000000,1.000000")


def test_eval_cli_segments_with_a_model_then_scores(tmp_path, capsys):
    root = write_davis_dataset(tmp_path / "davis", 2, 900_100, height=64, width=96, frames=5)
    assert cli.main(["eval", "--davis-root", str(root), "--results", str(tmp_path / "res"),
                 "--model", "tiny"]) == 0
    assert len(list((tmp_path / "res").glob("synth900100/*.png"))) == 5
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and (tmp_path / "res" / "global_results-val.csv").is_file()
