"""Stable-Baselines3's DQN (PyTorch) at the settings of `benchmarks/run.py`, for the comparison in the README.

It needs PyTorch, which the project does not depend on, so `make bench` runs it in a venv of its
own (`.venv-sb3`, from `benchmarks/sb3-requirements.txt`) in the same bench run, and prints its
rates beside ours. By hand:

    python3.11 -m venv .venv-sb3 && .venv-sb3/bin/pip install -r benchmarks/sb3-requirements.txt
    .venv-sb3/bin/python benchmarks/sb3_dqn.py --json

Same environment (sticky actions 0.25, SB3's Atari wrapper: frame skip 4, 84x84 grayscale,
4 stacked frames), Nature CNN, batch 32, a gradient step every 4 env steps, warmup 1000, replay
memory of 100 000, 5000 steps. SB3's DQN has neither double DQN nor a dueling head, so each of
its gradient steps does one forward pass of the batch less than ours: the comparison favours it.
"""

import argparse
import json
import time

import ale_py
import gymnasium as gym
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

WARMUP = 1000


class WarmupEnd(BaseCallback):
    def __init__(self):
        super().__init__()
        self.mark = None

    def _on_step(self) -> bool:
        if self.num_timesteps == WARMUP:
            self.mark = time.perf_counter()
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="training steps (default 5000)")
    parser.add_argument("--json", action="store_true", help="print one JSON line (for benchmarks/run.py)")
    args = parser.parse_args()
    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("ALE/SpaceInvaders-v5", n_envs=1, seed=0,
                                       env_kwargs={"frameskip": 1, "repeat_action_probability": 0.25}), 4)
    model = DQN("CnnPolicy", env, buffer_size=100_000, learning_starts=WARMUP, batch_size=32, train_freq=4,
                gradient_steps=1, target_update_interval=1000, learning_rate=1e-4, seed=0)
    warmup_end = WarmupEnd()
    start = time.perf_counter()
    model.learn(args.steps, callback=warmup_end)
    end = time.perf_counter()
    rates = {"all": args.steps / (end - start), "after_warmup": (args.steps - WARMUP) / (end - warmup_end.mark),
             "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(rates))
        return
    print(f"stable-baselines3 DQN, torch {rates['torch']} on {rates['threads']} threads:"
          f" {rates['all']:.1f} env steps/s (all steps), {rates['after_warmup']:.1f} after warmup {WARMUP}")


if __name__ == "__main__":
    main()
