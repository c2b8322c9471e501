"""Box tracking and cropping: gap filling, smoothing, square windows, crops and coordinates."""

import cv2
import numpy as np
import pytest

from fmae.face.tracking import crop_frame, crop_windows, frame_ranges, hold_gaps, jumps, smooth, to_crop_coords

NAN = np.nan


def test_hold_gaps_borrows_last_good_row_and_first_before_it():
    values = np.array([[NAN, NAN], [1, 10], [NAN, NAN], [NAN, NAN], [4, 40], [NAN, NAN]], np.float32)
    filled, source = hold_gaps(values)
    assert source.tolist() == [1, 1, 1, 1, 4, 4]
    np.testing.assert_array_equal(filled, values[[1, 1, 1, 1, 4, 4]])
    assert filled.dtype == np.float32


def test_hold_gaps_rejects_no_face_and_bad_shapes():
    with pytest.raises(ValueError, match="no frame has a face"):
        hold_gaps(np.full((3, 4), NAN))
    with pytest.raises(ValueError, match=r"\[T, D\]"):
        hold_gaps(np.zeros(4))


def _smooth_reference(values, window):
    T = len(values)
    out = np.empty_like(values, dtype=np.float64)
    for t in range(T):
        h = min(window // 2, t, T - 1 - t)
        out[t] = values[t - h : t + h + 1].mean(0)
    return out


@pytest.mark.parametrize("T", [1, 2, 3, 7, 30])
@pytest.mark.parametrize("window", [1, 3, 5, 9])
def test_smooth_matches_loop_reference(T, window):
    values = np.random.default_rng([T, window]).normal(size=(T, 4)) * 50
    np.testing.assert_allclose(smooth(values, window), _smooth_reference(values, window), rtol=1e-5, atol=1e-3)


def test_smooth_keeps_linear_motion_and_reduces_jitter():
    rng = np.random.default_rng(0)
    t = np.arange(40, dtype=np.float64)[:, None]
    line = 100 + t * rng.normal(size=(1, 4)) * 3
    np.testing.assert_allclose(smooth(line, 7), line, atol=1e-3)
    noise = rng.normal(size=(200, 4))
    assert smooth(noise, 5).std() < 0.6 * noise.std()
    with pytest.raises(ValueError, match="odd"):
        smooth(line, 4)


def test_crop_windows_square_with_margin_clamped_or_overhanging():
    boxes = np.array(
        [
            [100, 100, 140, 120],  # inside: centred, side round(40 * 1.5)
            [-20, 50, 20, 90],  # off the left edge: shifted inside
            [0, 0, 300, 300],  # side 450, bigger than the 200x400 frame: overhangs, centred
        ],
        np.float32,
    )
    w = crop_windows(boxes, (200, 400), margin=0.25)
    np.testing.assert_array_equal(w[:, 2] - w[:, 0], w[:, 3] - w[:, 1])
    np.testing.assert_array_equal(w, np.round(w))
    np.testing.assert_array_equal(w[0], [90, 80, 150, 140])
    np.testing.assert_array_equal(w[1], [0, 40, 60, 100])
    np.testing.assert_array_equal(w[2], [-75, -75, 375, 375])
    with pytest.raises(ValueError, match="margin"):
        crop_windows(boxes, (200, 400), margin=-0.1)


def test_crop_frame_inside_matches_resize_of_slice():
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    window = np.array([30, 20, 110, 100], np.float32)
    expected = cv2.resize(frame[20:100, 30:110], (40, 40), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop_frame(frame, window, 40), expected)


def test_crop_frame_pads_black_where_the_window_overhangs():
    rng = np.random.default_rng(2)
    frame = rng.integers(1, 256, (50, 60, 3), dtype=np.uint8)
    window = np.array([-10, -5, 40, 45], np.float32)  # 50x50, sticking out left and top
    crop = crop_frame(frame, window, 50)  # same size: no resampling, exact
    padded = np.pad(frame, ((5, 0), (10, 0), (0, 0)))
    np.testing.assert_array_equal(crop, padded[:50, :50])
    gray = crop_frame(frame[..., 0], window, 50)
    assert gray.shape == (50, 50)
    np.testing.assert_array_equal(gray, padded[:50, :50, 0])
    outside = crop_frame(frame, np.array([100, 100, 120, 120], np.float32), 16)
    assert outside.shape == (16, 16, 3) and not outside.any()
    with pytest.raises(ValueError, match="empty"):
        crop_frame(frame, np.array([5, 5, 5, 9], np.float32), 16)


@pytest.fixture(scope="module")
def photo_frame() -> np.ndarray:
    """A real photo (matplotlib's Grace Hopper, 512×600) on a 640×360 frame, as a face fills a recording."""
    from matplotlib import cbook
    from PIL import Image

    photo = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    frame = np.full((360, 640, 3), 120, np.uint8)
    frame[:, 100:460] = photo[100:460, 80:440]
    return frame


@pytest.mark.parametrize("side", [112, 224, 230, 300, 352, 436, 600, 896, 1200])
def test_fast_crop_stays_within_a_few_levels_of_the_area_filter(photo_frame, side):
    window = np.array([280 - side // 2, 180 - side // 2, 280 - side // 2 + side, 180 - side // 2 + side], np.float32)
    reference = crop_frame(photo_frame, window, 224).astype(np.int16)
    fast = crop_frame(photo_frame, window, 224, fast=True).astype(np.int16)
    diff = np.abs(fast - reference)
    if side <= 224 or side > 4 * 224:  # upscaling, or beyond 4×: the reference itself
        assert not diff.any()
    # Measured: mean 0.04-0.68 levels, 99th percentile 1-5 (the photo's fine cloth is the worst case).
    assert diff.mean() <= 1.0 and np.quantile(diff, 0.99) <= 8, (diff.mean(), np.quantile(diff, 0.99))


@pytest.mark.parametrize("size", [37, 64, 160])  # down- and upscaling
def test_to_crop_coords_follows_image_content(size):
    # A bright blob at a sub-pixel point must land where to_crop_coords says, after the
    # crop's resampling: the two share one coordinate convention.
    H, W = 120, 140
    point = np.array([[71.3, 55.8]])
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    blob = np.exp(-((xs - point[0, 0]) ** 2 + (ys - point[0, 1]) ** 2) / (2 * 6.0**2))
    frame = np.round(blob * 255).astype(np.uint8)
    window = np.array([30, 20, 110, 100], np.float32)
    crop = crop_frame(frame, window, size).astype(np.float64)
    cy, cx = np.mgrid[0:size, 0:size] + 0.5
    centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    expected = to_crop_coords(point, window, size)[0]
    np.testing.assert_allclose(centroid, expected, atol=0.05 * size / 80 + 0.05)
    np.testing.assert_allclose(
        to_crop_coords(np.array([[30, 20], [110, 100]]), window, size), [[0, 0], [size, size]], atol=1e-4
    )


def test_smooth_never_averages_across_a_break():
    # A face that jumps to another tile at frame 6: each side keeps its own boxes.
    values = np.array([[0, 0, 10, 10]] * 6 + [[300, 200, 310, 210]] * 6, np.float64)
    values += np.random.default_rng(2).normal(size=values.shape)
    breaks = jumps(values)
    assert breaks.tolist() == [False] * 6 + [True] + [False] * 5
    got = smooth(values, 5, breaks=breaks)
    np.testing.assert_allclose(got[:6], smooth(values[:6], 5), rtol=1e-6)
    np.testing.assert_allclose(got[6:], smooth(values[6:], 5), rtol=1e-6)
    assert not jumps(values[:6]).any()


def test_frame_ranges():
    assert frame_ranges(np.array([1, 1, 0, 0, 1, 0, 1], bool)) == [[0, 2], [4, 5], [6, 7]]
    assert frame_ranges(np.zeros(3, bool)) == []
