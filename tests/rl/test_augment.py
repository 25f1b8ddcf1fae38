import numpy as np
import pytest

from invaders.rl.augment import random_shift

pytestmark = pytest.mark.unit


def _clipped_gather(states, offsets, pad=4):
    """Another reading of the same shift: pixel (y, x) of the output is the input's (y + dy - pad, x + dx - pad),
    clipped to the frame."""
    h, w = states.shape[2:4]
    rows = np.clip(np.arange(h)[None, :] + offsets[:, :1] - pad, 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + offsets[:, 1:] - pad, 0, w - 1)
    batch, frame = np.arange(len(states))[:, None, None, None], np.arange(states.shape[1])[None, :, None, None]
    return states[batch, frame, rows[:, None, :, None], cols[:, None, None, :]]


@pytest.mark.parametrize("shape", [(16, 4, 84, 84), (5, 3, 21, 16, 3)])
def test_shift_is_pad_and_crop_at_offsets_from_the_generator(shape):
    states = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    shifted = random_shift(states, np.random.default_rng(7))
    offsets = np.random.default_rng(7).integers(0, 9, size=(shape[0], 2))  # the same draw
    assert shifted.shape == states.shape and shifted.dtype == np.uint8
    np.testing.assert_array_equal(shifted, _clipped_gather(states, offsets))
    assert len({tuple(o) for o in offsets}) > 1  # the states moved differently
    assert not np.array_equal(shifted, states)


def test_shift_is_a_pure_function_of_the_seed():
    states = np.random.default_rng(1).integers(0, 256, (32, 4, 84, 84), dtype=np.uint8)
    copy = states.copy()
    first = random_shift(states, np.random.default_rng(3))
    np.testing.assert_array_equal(states, copy)  # the input is left alone
    np.testing.assert_array_equal(random_shift(states, np.random.default_rng(3)), first)
    assert not np.array_equal(random_shift(states, np.random.default_rng(4)), first)
