"""Atari environments: gymnasium + ale-py (ROMs ship inside ale-py), and the adapter keras-rl2 needs."""

from __future__ import annotations

from functools import cache

import gymnasium as gym
import numpy as np

from invaders.compat import ale as ale_compat
from invaders.config import EnvConfig


@cache
def known_env_ids() -> frozenset[str]:
    """The ALE ids gymnasium knows, once ale-py has registered them."""
    import ale_py

    gym.register_envs(ale_py)
    return frozenset(i for i in gym.registry if i.startswith("ALE/"))


def make_env(cfg: EnvConfig, render: bool = False) -> gym.Env:
    """A gymnasium env producing uint8 observations as `cfg.observation` asks.

    deepmind: ALE steps every frame; AtariPreprocessing repeats the action `frame_skip` times,
    max-pools the last two frames, converts to 84x84 grayscale and adds random no-op starts.
    raw: ALE repeats the action itself and returns the 210x160 RGB screen.
    """
    known_env_ids()  # registers the ALE ids
    deepmind = cfg.observation == "deepmind"
    env = gym.make(
        cfg.id,
        # AtariPreprocessing reads the screens from ALE itself: the inner env's own observation of every
        # frame goes unused, and grayscale is the cheapest it accepts (the same observations, 8% faster steps).
        obs_type="grayscale" if deepmind else "rgb",
        frameskip=1 if deepmind else cfg.frame_skip,
        repeat_action_probability=cfg.sticky_action_prob,
        full_action_space=False,
        max_episode_steps=None if deepmind else cfg.max_episode_steps,
        render_mode="rgb_array" if render else None,
    )
    if deepmind:
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=cfg.noop_max, frame_skip=cfg.frame_skip, screen_size=84,
            terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False,
        )
        env = gym.wrappers.TimeLimit(env, max_episode_steps=cfg.max_episode_steps)
    return env


def observation_shape(cfg: EnvConfig) -> tuple[int, ...]:
    return (84, 84) if cfg.observation == "deepmind" else (210, 160, 3)


def action_count(cfg: EnvConfig) -> int:
    env = make_env(cfg)
    try:
        return int(env.action_space.n)
    finally:
        env.close()


class RLEnv:
    """A gymnasium env behind the old Gym API that keras-rl2 speaks.

    `reset()` returns the observation; `step()` returns (obs, reward, done, info) where
    done = terminated or truncated. The seed goes to the first reset only, so the episodes
    after it continue one seeded random stream. `info["raw_reward"]` carries the unclipped
    game reward, whatever a processor later does to `reward`.

    With `life_loss_ends_episode` (for training), losing a life also ends keras-rl2's episode,
    but the game plays on: the next `reset()` continues it. `game_over` tells the two apart.
    """

    def __init__(self, env: gym.Env, seed: int, life_loss_ends_episode: bool = False):
        self.env = env
        self.action_space = env.action_space
        self.observation_space = env.observation_space
        self.life_loss_ends_episode = life_loss_ends_episode
        self.game_over = True  # so the first reset starts a game
        self._seed: int | None = seed
        self._lives = 0
        self._obs: np.ndarray | None = None
        self.action_space.seed(seed)
        # Sticky actions: on each frame ALE repeats the action it last applied (its `m_actions`) with
        # this probability. That held action is not part of ALE's cloneState, so it is tracked here
        # (ALE action id; NOOP after a reset) and put back into the emulator by `set_state`. To know
        # which frame took a new action, `_draws` mirrors ALE's RNG: read from its state once a game
        # (a millisecond), then advanced as ALE draws (microseconds a step).
        self._sticky = float(env.unwrapped.ale.getFloat("repeat_action_probability"))
        self._frames_per_step = ale_compat.frames_per_step(env)
        self._held = 0
        self._draws: np.random.MT19937 | None = None

    def reset(self) -> np.ndarray:
        if not self.game_over:  # only a life was lost
            return self._obs
        obs, info = self.env.reset(seed=self._seed)
        self._seed = None
        self._held, self._draws = 0, None  # ALE's reset applies NOOP last
        self._lives, self._obs, self.game_over = info.get("lives", 0), obs, False
        return obs

    def step(self, action: int):
        if self._sticky > 0:
            if self._draws is None:
                self._draws = ale_compat.ale_rng(self.env.unwrapped.ale)
            # ALE takes a new action on the first frame whose draw is not below the probability.
            draws = self._draws.random_raw(2 * self._frames_per_step)[0::2] / 2.0**32
            applied = ale_compat.action_id(self.env, action)
            if applied != self._held and (draws >= self._sticky).any():
                self._held = applied
        obs, reward, terminated, truncated, info = self.env.step(int(action))
        lives = info.get("lives", 0)
        self.game_over = bool(terminated or truncated)
        done = self.game_over or (self.life_loss_ends_episode and lives < self._lives)
        self._lives, self._obs = lives, obs
        info = {k: v for k, v in info.items() if np.isscalar(v)}
        info["raw_reward"] = float(reward)
        return obs, float(reward), done, info

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything the next step depends on: emulator (with its RNG), wrappers, this adapter."""
        unwrapped = self.env.unwrapped
        arrays = {"ale": np.frombuffer(unwrapped.ale.cloneState(include_rng=True).serialize(), dtype=np.uint8)}
        meta = {
            "game_over": self.game_over, "lives": self._lives, "seed": self._seed, "held_action": self._held,
            "np_random": unwrapped.np_random.bit_generator.state,
            "action_space": self.action_space.np_random.bit_generator.state,
        }
        if self._obs is not None:
            arrays["obs"] = self._obs
        for wrapper in self._wrappers():
            if isinstance(wrapper, gym.wrappers.AtariPreprocessing):
                arrays.update({f"obs_buffer/{i}": b for i, b in enumerate(wrapper.obs_buffer)})
                meta["preprocessing"] = {"lives": wrapper.lives, "game_over": wrapper.game_over}
            elif isinstance(wrapper, gym.wrappers.TimeLimit):
                meta["elapsed_steps"] = ale_compat.elapsed_steps(wrapper)
        return arrays, meta

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        import ale_py

        self.env.reset(seed=self._seed)  # gymnasium refuses to step an env that was never reset
        unwrapped = self.env.unwrapped
        state = ale_py.ALEState(arrays["ale"].tobytes())
        unwrapped.ale.restoreState(state)
        self._held = int(meta.get("held_action", 0))
        if self._sticky > 0 and self._held != 0:
            # restoreState leaves ALE's held action at the reset's NOOP: apply the saved one until
            # ALE takes it (the first frame whose draw allows it), then restore the state again.
            draws = ale_compat.ale_rng(unwrapped.ale).random_raw(2000)[0::2] / 2.0**32
            for _ in range(int(np.argmax(draws >= self._sticky)) + 1):
                unwrapped.ale.act(ale_py.Action(self._held))
            unwrapped.ale.restoreState(state)
        self._draws = None
        unwrapped.np_random.bit_generator.state = meta["np_random"]
        self.action_space.np_random.bit_generator.state = meta["action_space"]
        self.game_over, self._lives, self._seed = meta["game_over"], meta["lives"], meta["seed"]
        self._obs = arrays["obs"].copy() if "obs" in arrays else None
        for wrapper in self._wrappers():
            if isinstance(wrapper, gym.wrappers.AtariPreprocessing):
                wrapper.obs_buffer = [arrays[f"obs_buffer/{i}"].copy() for i in range(len(wrapper.obs_buffer))]
                wrapper.lives, wrapper.game_over = meta["preprocessing"]["lives"], meta["preprocessing"]["game_over"]
            elif isinstance(wrapper, gym.wrappers.TimeLimit):
                ale_compat.set_elapsed_steps(wrapper, meta["elapsed_steps"])

    def _wrappers(self):
        env = self.env
        while isinstance(env, gym.Wrapper):
            yield env
            env = env.env

    def render(self, mode: str = "rgb_array"):
        return self.env.render()

    def close(self) -> None:
        self.env.close()
