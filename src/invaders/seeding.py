"""Seeding the process's global random number generators, and seeded work with them set aside.

Base layer: TensorFlow is imported only by `seed_everything`, when it is called.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def seed_everything(seed: int) -> None:
    """Python, NumPy's global RNG (keras-rl2's policies use it) and TensorFlow, with op determinism."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    # Same inputs, same outputs: TF picks deterministic kernels (reductions, scatter) on CPU too.
    tf.config.experimental.enable_op_determinism()


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Python's and NumPy's global RNGs seeded with `seed` inside the block, restored after it.

    keras-rl2's ε-greedy training policy draws from NumPy's global RNG and Keras seeds new layers from
    Python's: building the validation's player in the middle of training must not move either stream.
    """
    saved = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
