"""Throughput benchmark: training env steps/s for keras-rl2's DQNAgent and ours, evaluation steps/s.

Same settings for both agents, in one process: the default params (Nature CNN, dueling, double
DQN, batch 32, a gradient step every 4 env steps) with warmup 1000. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import invaders  # noqa: F401
from invaders.agent import FastDQNAgent, build_agent, seed_everything
from invaders.compat import load_rl
from invaders.config import Params, load_params
from invaders.envs import RLEnv, action_count, make_env, observation_shape
from invaders.model import build_q_network


def _params(steps: int) -> Params:
    return Params().model_copy(update={
        "agent": Params().agent.model_copy(update={"warmup_steps": 1000}),
        "train": Params().train.model_copy(update={"steps": steps}),
    })


def _agent(params: Params, agent_class, training: bool = True):
    seed_everything(params.seed)
    net = build_q_network(params.model, observation_shape(params.env), params.agent.window_length,
                          action_count(params.env))
    memory = None
    if agent_class is load_rl().DQNAgent:  # plain keras-rl2, as its Atari example: SequentialMemory
        memory = load_rl().SequentialMemory(limit=params.agent.memory_limit, window_length=params.agent.window_length)
    return build_agent(net, params, training=training, agent_class=agent_class, memory=memory)


def train_rate(params: Params, agent_class) -> float:
    agent = _agent(params, agent_class)
    env = RLEnv(make_env(params.env), params.seed)
    start = time.perf_counter()
    agent.fit(env, nb_steps=params.train.steps, verbose=0)
    return params.train.steps / (time.perf_counter() - start)


def seed_preset_seconds_per_1000(steps: int) -> float:
    """The article's setup (34.8M parameters, raw frames, a gradient step every env step)."""
    preset = load_params(Path(__file__).resolve().parents[1] / "presets" / "seed.yaml")
    params = preset.model_copy(update={
        "agent": preset.agent.model_copy(update={"warmup_steps": 40}),
        "train": preset.train.model_copy(update={"steps": 40 + steps}),
    })
    agent = _agent(params, FastDQNAgent)
    env = RLEnv(make_env(params.env), params.seed)
    marks: list[float] = []

    class WarmupEnd(load_rl().Callback):
        def on_step_end(self, step, logs={}):
            if int(self.model.step) == params.agent.warmup_steps:  # gradient steps start after this one
                marks.append(time.perf_counter())

    agent.fit(env, nb_steps=params.train.steps, verbose=0, callbacks=[WarmupEnd()])
    return (time.perf_counter() - marks[0]) / steps * 1000


def eval_rate(params: Params, steps: int) -> float:
    agent = _agent(params, FastDQNAgent, training=False)
    env = RLEnv(make_env(params.env), params.seed)
    done_steps, start = 0, time.perf_counter()
    while done_steps < steps:
        agent.reset_states()
        obs, done = env.reset(), False
        while not done and done_steps < steps:
            obs, _, done, _ = env.step(agent.forward(obs))
            done_steps += 1
    return steps / (time.perf_counter() - start)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="training steps per agent (default 5000)")
    parser.add_argument("--eval-steps", type=int, default=5000, help="evaluation steps (default 5000)")
    parser.add_argument("--seed-steps", type=int, default=300, help="seed-preset training steps timed (default 300)")
    args = parser.parse_args()
    params = _params(args.steps)
    rl = load_rl()
    rows = [
        ("train: keras-rl2 DQNAgent", train_rate(params, rl.DQNAgent), "env steps/s"),
        ("train: invaders FastDQNAgent", train_rate(params, FastDQNAgent), "env steps/s"),
        ("evaluate: FastDQNAgent, ε-greedy", eval_rate(params, args.eval_steps), "env steps/s"),
        ("train: seed preset (article's net)", seed_preset_seconds_per_1000(args.seed_steps), "s per 1000 steps"),
    ]
    print(f"machine: {_cpu_name()}, {platform.machine()}, {os.cpu_count()} cores")
    print(f"settings: {args.steps} training steps, warmup 1000, batch 32, train_interval 4, Nature CNN + dueling")
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:8.1f} {unit}")


if __name__ == "__main__":
    main()
