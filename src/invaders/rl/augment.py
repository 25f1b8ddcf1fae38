"""Random-shift augmentation of replayed states (DrQ, Kostrikov et al. 2020)."""

from __future__ import annotations

import numpy as np

PAD = 4  # pixels, DrQ's for 84x84 frames


def random_shift(states: np.ndarray, rng: np.random.Generator, pad: int = PAD) -> np.ndarray:
    """Each state of `states` (batch, window, height, width[, channels]) shifted by its own offset.

    Equal to padding every frame `pad` pixels by edge replication and cropping back to its size at
    a random offset in [0, 2 * pad] per axis, one offset per state (its frames move together). Done as
    one gather of clipped indices rather than a padded copy. Draws one (batch, 2) array from `rng`.
    """
    batch, _, height, width = states.shape[:4]
    offsets = rng.integers(0, 2 * pad + 1, size=(batch, 2)) - pad
    rows = np.clip(np.arange(height)[None, :] + offsets[:, :1], 0, height - 1)  # (batch, height)
    cols = np.clip(np.arange(width)[None, :] + offsets[:, 1:], 0, width - 1)
    index = np.arange(batch)[:, None, None, None]
    frame = np.arange(states.shape[1])[None, :, None, None]
    return states[index, frame, rows[:, None, :, None], cols[:, None, None, :]]
