"""The window and weighting rule (pipeline.windows)."""

import math

import numpy as np
import pytest
import torch

from sal3d.pipeline.windows import (
    WEIGHTINGS,
    WINDOW,
    apply_weighting,
    frames_needed,
    gather_windows,
    weighting_coefficients,
    window_index_array,
    window_indices,
)

# ---------------------------------------------------------------- window rule


@pytest.mark.parametrize(
    "t,expected",
    [
        (0, [0, 0, 0, 0, 0, 0]),
        (1, [0, 0, 0, 0, 0, 1]),
        (2, [0, 0, 0, 0, 1, 2]),
        (4, [0, 0, 1, 2, 3, 4]),
        (5, [0, 1, 2, 3, 4, 5]),
        (7, [2, 3, 4, 5, 6, 7]),
        (100, [95, 96, 97, 98, 99, 100]),
    ],
)
def test_window_indices_start_and_middle(t, expected):
    assert WINDOW == 6
    assert window_indices(t) == expected


def test_window_end_of_video_is_causal():
    n_frames = 217  # DHF1K video 300
    last = n_frames - 1
    assert window_indices(last) == [211, 212, 213, 214, 215, 216]
    for t in range(n_frames):
        w = window_indices(t)
        assert len(w) == 6 and w[-1] == t
        assert all(0 <= i <= t for i in w)  # causal, and inside the video
        assert w == sorted(w)  # oldest first


def test_three_frame_video_every_frame_gets_a_window():
    windows = [window_indices(t) for t in range(3)]
    assert windows == [[0] * 6, [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 2]]
    assert all(len(w) == 6 and max(w) < 3 for w in windows)
    assert window_index_array(range(3)).max() < 3


def test_window_indices_validates():
    with pytest.raises(ValueError):
        window_indices(-1)
    with pytest.raises(TypeError):
        window_indices(2.0)
    with pytest.raises(ValueError):
        window_index_array(np.array([3, -1]))
    with pytest.raises(TypeError):
        window_index_array(np.array([1.5]))


def test_window_index_array_matches_scalar_rule():
    frames = np.array([0, 1, 2, 4, 5, 9, 30, 216])
    arr = window_index_array(frames)
    assert arr.shape == (8, 6) and arr.dtype == np.int64
    assert arr.tolist() == [window_indices(int(t)) for t in frames]
    assert window_index_array(range(40)).tolist() == [window_indices(t) for t in range(40)]
    assert window_index_array(7).tolist() == [window_indices(7)]
    assert window_index_array([]).shape == (0, 6)


def test_other_window_lengths():
    assert window_indices(2, length=3) == [0, 1, 2]
    assert window_indices(0, length=1) == [0]
    assert window_index_array([1, 5], length=3).tolist() == [[0, 0, 1], [3, 4, 5]]


def test_frames_needed():
    assert frames_needed(0) == (0, 1)
    assert frames_needed(3) == (0, 4)
    assert frames_needed(10) == (5, 11)
    assert frames_needed([10, 12, 11]) == (5, 13)


# ---------------------------------------------------------------- weightings


def test_tanh_coefficients():
    got = weighting_coefficients("tanh")
    assert [round(c, 3) for c in got] == [0.380, 0.462, 0.537, 0.604, 0.664, 0.753]
    assert got == tuple(math.tanh(c) for c in (0.4, 0.5, 0.6, 0.7, 0.8, 0.98))


def test_linear_and_none_coefficients():
    assert weighting_coefficients("linear") == (0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
    assert weighting_coefficients("none") == (1.0,) * 6
    assert set(WEIGHTINGS) == {"tanh", "linear", "none"}


@pytest.mark.parametrize("bad", ["Tanh", "paper", "", None])
def test_unknown_weighting_raises_naming_choices(bad):
    with pytest.raises(ValueError, match="tanh.*linear.*none"):
        weighting_coefficients(bad)
    if bad is not None:
        with pytest.raises(ValueError):
            apply_weighting(torch.zeros(1, 6, 2, 1, 1), bad)


@pytest.mark.parametrize("name", ["tanh", "linear", "none"])
def test_apply_weighting_scales_time_step_k_by_coefficient_k(name):
    torch.manual_seed(0)
    windows = torch.randn(2, 6, 512, 14, 14).to(torch.float16)  # (N, T, C, H, W), as stored
    out = apply_weighting(windows, name)
    assert out.shape == (2, 512, 6, 14, 14)
    assert out.dtype == torch.float32 and out.is_contiguous()
    coef = weighting_coefficients(name)
    for k in range(6):
        expected = windows[:, k].float() * torch.tensor(coef[k], dtype=torch.float32)
        assert torch.equal(out[:, :, k], expected), k


def test_apply_weighting_distinguishes_time_steps():
    # A window whose time step k is all k+1: output step k must be (k+1) * c_k -- this fails if
    # the permute mixed T and C or the coefficients were applied along another axis.
    windows = torch.arange(1, 7, dtype=torch.float32).reshape(1, 6, 1, 1, 1).expand(2, 6, 512, 3, 3)
    out = apply_weighting(windows, "linear")
    coef = weighting_coefficients("linear")
    for k in range(6):
        expected = torch.tensor(k + 1.0) * torch.tensor(coef[k], dtype=torch.float32)
        assert torch.all(out[:, :, k] == expected), k


def test_apply_weighting_options():
    windows = np.random.default_rng(0).standard_normal((2, 6, 512, 2, 2)).astype(np.float16)
    out = apply_weighting(windows, [2.0] * 6, dtype=torch.float64, memory_format=torch.channels_last_3d)
    assert out.dtype == torch.float64 and out.shape == (2, 512, 6, 2, 2)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    np.testing.assert_array_equal(out.numpy(), 2.0 * windows.astype(np.float64).transpose(0, 2, 1, 3, 4))
    with pytest.raises(ValueError):
        apply_weighting(torch.zeros(1, 6, 512, 2, 2), [1.0] * 5)
    with pytest.raises(ValueError):
        apply_weighting(torch.zeros(6, 512, 2, 2))


# ---------------------------------------------------------------- gather_windows


def _video(n_frames, rng=np.random.default_rng(1)):
    # Small trailing shape keeps it fast; the rule does not depend on it. Each frame is distinct.
    return rng.standard_normal((n_frames, 512, 2, 2)).astype(np.float16)


def test_gather_windows_run_from_start_equals_direct_indexing():
    video = _video(20)
    frames = [0, 1, 2, 4, 5, 6, 13, 19]
    got = gather_windows(video, frames)
    assert got.shape == (8, 6, 512, 2, 2) and got.dtype == np.float16
    for i, t in enumerate(frames):
        np.testing.assert_array_equal(got[i], video[window_indices(t)])


def test_gather_windows_run_mid_video_equals_direct_indexing():
    video = _video(40)
    frames = [17, 18, 19, 20, 21]
    start, stop = frames_needed(frames)
    assert (start, stop) == (12, 22)
    run = video[start:stop]  # read once
    got = gather_windows(run, frames, first=start)
    assert got.shape == (5, 6, 512, 2, 2)
    for i, t in enumerate(frames):
        np.testing.assert_array_equal(got[i], video[window_indices(t)])


def test_gather_windows_torch_and_short_video():
    video = torch.from_numpy(_video(3))
    got = gather_windows(video, range(3))
    assert isinstance(got, torch.Tensor) and got.shape == (3, 6, 512, 2, 2)
    for t in range(3):
        assert torch.equal(got[t], video[window_indices(t)])
    # Straight into the decoder layout.
    assert apply_weighting(got, "tanh").shape == (3, 512, 6, 2, 2)


def test_gather_windows_rejects_a_run_missing_frames():
    video = _video(30)
    with pytest.raises(ValueError, match=r"need frames \[5, 11\)"):
        gather_windows(video[6:11], [10], first=6)  # frame 5 is missing
    with pytest.raises(ValueError):
        gather_windows(video[5:11], [11], first=5)  # the target itself is missing
    assert gather_windows(video[5:11], [10], first=5).shape == (1, 6, 512, 2, 2)
