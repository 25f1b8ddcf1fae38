"""Random-shift augmentation of replayed states (DrQ, Kostrikov et al. 2020)."""

from __future__ import annotations

import numpy as np

PAD = 4  # pixels, DrQ's for 84x84 frames


def random_shift(states: np.ndarray, rng: np.random.Generator, pad: int = PAD) -> np.ndarray:
    """Each state of `states` (batch, window, height, width[, channels]) shifted by its own offset.

    Every frame is padded `pad` pixels by edge replication and cropped back to its size at an offset
    in [0, 2 * pad] per axis, one offset per state (its frames move together), drawn as one (batch, 2)
    array from `rng`. About 0.6 ms for 32 states of 4 x 84 x 84 (a gather of clipped indices: 3 ms).
    """
    height, width = states.shape[2:4]
    offsets = rng.integers(0, 2 * pad + 1, size=(len(states), 2))
    padded = np.pad(states, [(0, 0), (0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (states.ndim - 4), mode="edge")
    out = np.empty_like(states)
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, :, dy:dy + height, dx:dx + width]
    return out
