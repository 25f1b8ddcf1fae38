"""keras-rl2 1.0.5 on TensorFlow 2.21 + tf-keras + NumPy 2: every quirk, fixed here and only here.

1. `rl.callbacks` imports `__version__` from `tensorflow.keras`, which tf-keras lacks.
2. keras-rl2's dueling head is a `Lambda` around a Python lambda, which tf-keras refuses to
   clone in safe mode. We never use it: `invaders.model` builds the dueling head from
   built-in layers, and the agent is created with `enable_dueling_network=False`.
3. Importing `rl.agents` calls `tf.compat.v1.disable_eager_execution()` for the whole
   process (for DDPG, which we do not use). Graph mode cannot save `.keras` files or MLflow
   models, so the call is suppressed during that import: DQN runs eagerly, its training
   step compiled by Keras as a `tf.function`. The optimizer stays the `legacy` Adam, which
   works in either mode.
4. (gym API) lives in `invaders.envs.RLEnv`.
5. `Agent.fit` counts `step`, `episode` and `episode_step` in `np.int16`; under NumPy 2 the
   step counter wraps to -32768 after 32 767 steps and `fit` never returns. `rl.core` is
   given a NumPy namespace whose `int16` is `int64`.

Import keras-rl2 through `load_rl()`, never directly.
"""

from __future__ import annotations

import sys
import types

from invaders.compat import require

require("keras-rl2", "1.0.5", "1.0.6")

_rl: types.SimpleNamespace | None = None


class _WideCounterNumpy(types.ModuleType):
    """NumPy, except that `int16` is `int64`: used only as `rl.core.np`."""

    def __init__(self) -> None:
        import numpy

        super().__init__("numpy")
        self._numpy = numpy
        self.int16 = numpy.int64

    def __getattr__(self, name: str):
        return getattr(self._numpy, name)


def load_rl() -> types.SimpleNamespace:
    """Import keras-rl2 with the fixes applied; returns the pieces the project uses."""
    global _rl
    if _rl is not None:
        return _rl
    import tensorflow.keras as tfk  # with TF_USE_LEGACY_KERAS=1 this is tf-keras
    import tf_keras

    # Quirk 1. `tensorflow.keras` may be a lazy loader or the module itself, depending on what
    # imported TensorFlow first (MLflow's flavour does): patch both.
    for module in (tfk, sys.modules.get("tensorflow.keras")):
        if module is not None and not hasattr(module, "__version__"):
            module.__version__ = tf_keras.__version__

    import rl.core

    if not isinstance(rl.core.np, _WideCounterNumpy):  # quirk 5
        rl.core.np = _WideCounterNumpy()

    import tensorflow as tf

    disable = tf.compat.v1.disable_eager_execution
    tf.compat.v1.disable_eager_execution = lambda: None  # quirk 3
    try:
        import rl.agents.dqn
    finally:
        tf.compat.v1.disable_eager_execution = disable
    import rl.callbacks
    import rl.memory
    import rl.policy
    import rl.processors

    _rl = types.SimpleNamespace(
        DQNAgent=rl.agents.dqn.DQNAgent,
        Callback=rl.callbacks.Callback,
        Memory=rl.memory.Memory,
        Experience=rl.memory.Experience,
        SequentialMemory=rl.memory.SequentialMemory,
        LinearAnnealedPolicy=rl.policy.LinearAnnealedPolicy,
        EpsGreedyQPolicy=rl.policy.EpsGreedyQPolicy,
        Processor=rl.processors.Processor,
    )
    return _rl


def adam(learning_rate: float):
    """The optimizer keras-rl2 can use in graph mode (quirk 3)."""
    import tf_keras

    return tf_keras.optimizers.legacy.Adam(learning_rate=learning_rate)
