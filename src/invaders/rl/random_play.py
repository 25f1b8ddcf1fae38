"""The random baseline's player: a uniformly random policy, with no network and no TensorFlow."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from invaders.config import EnvConfig
from invaders.rl.envs import RLEnv, make_env
from invaders.rl.episodes import Episode


def play_random(cfg: EnvConfig, episodes: int, seed: int) -> list[Episode]:
    """A uniformly random policy; actions drawn from a generator seeded with `seed`."""
    env = RLEnv(make_env(cfg), seed)
    rng = np.random.default_rng(seed)
    n = env.action_space.n
    played = []
    try:
        for i in tqdm(range(episodes), desc="baseline", unit="episode"):
            env.reset()
            done, score, length = False, 0.0, 0
            while not done:
                _, _, done, info = env.step(int(rng.integers(n)))
                score += info["raw_reward"]
                length += 1
            played.append(Episode(i + 1, score, length))
    finally:
        env.close()
    return played
