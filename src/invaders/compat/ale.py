"""ale-py and gymnasium private state the environment adapter reads and restores, for ale-py 0.12 and
gymnasium 1.x. Importing this module does not import either (params validation must not load ALE)."""

from __future__ import annotations

import re

import numpy as np

from invaders.compat import require

require("ale-py", "0.12", "0.13")
require("gymnasium", "1.0", "2.0")


def frames_per_step(env) -> int:
    """Emulator frames one `env.step` runs: ALE's own frameskip (`AtariEnv._frameskip`, 1 when it is a
    random range) times AtariPreprocessing's, if `env` wraps one."""
    import gymnasium as gym

    frameskip = env.unwrapped._frameskip
    frames = frameskip if isinstance(frameskip, int) else 1
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.AtariPreprocessing):
            frames *= env.frame_skip
        env = env.env
    return frames


def action_id(env, action: int) -> int:
    """The ALE action id (`ale_py.Action` value) that gym action `action` applies: `AtariEnv._action_set`."""
    return env.unwrapped._action_set[int(action)].value


def elapsed_steps(wrapper) -> int:
    """A `TimeLimit` wrapper's step count in the current episode (`_elapsed_steps`)."""
    return wrapper._elapsed_steps


def set_elapsed_steps(wrapper, steps: int) -> None:
    wrapper._elapsed_steps = steps


def ale_rng(ale) -> np.random.MT19937:
    """A copy of `ale`'s (an `ALEInterface`) RNG as it is now. ALE serializes it (std::mt19937) as text at
    the end of its state, before two ints; each frame draws twice from it, player A's sticky draw first."""
    serialized = ale.cloneState(include_rng=True).serialize()[:-8]
    numbers = [int(n) for n in re.findall(rb"\d+", serialized[-8000:])[-625:]]
    mt = np.random.MT19937()
    mt.state = {"bit_generator": "MT19937", "state": {"key": np.array(numbers[:624], np.uint32),
                                                        "pos": numbers[624]}}
    return mt
