"""Throughput benchmark: keras-rl2's DQNAgent against ours, replay memory, evaluation, seed preset.

Same settings for both agents, in one process: the default params (Nature CNN, dueling, double
DQN, batch 32, a gradient step every 4 env steps) with warmup 1000. keras-rl2 runs as in its
Atari example (DQNAgent + SequentialMemory); ours is FastDQNAgent + ReplayMemory, in float32
(the default) and with `agent.precision: bfloat16`. Run with `make bench`; prints one table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import invaders  # noqa: F401
from invaders.agent import FastDQNAgent, build_agent, seed_everything
from invaders.compat import load_rl
from invaders.config import Params, load_params
from invaders.envs import RLEnv, action_count, make_env, observation_shape
from invaders.evaluation import play_agent, use_one_thread
from invaders.model import build_q_network
from invaders.replay import ReplayMemory

WARMUP = 1000


def _params(steps: int) -> Params:
    return Params().model_copy(update={
        "agent": Params().agent.model_copy(update={"warmup_steps": WARMUP}),
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


def _timed_fit(agent, params: Params) -> tuple[float, float]:
    """fit for `train.steps`; (env steps/s over all of it, env steps/s after warmup)."""
    env = RLEnv(make_env(params.env), params.seed)
    warmup = params.agent.warmup_steps
    marks: list[float] = []

    class WarmupEnd(load_rl().Callback):
        def on_step_end(self, step, logs={}):
            if int(self.model.step) == warmup:  # gradient steps start after this one
                marks.append(time.perf_counter())

    start = time.perf_counter()
    agent.fit(env, nb_steps=params.train.steps, verbose=0, callbacks=[WarmupEnd()])
    end = time.perf_counter()
    env.close()
    return params.train.steps / (end - start), (params.train.steps - warmup) / (end - marks[0])


def train_rates(params: Params, agent_class) -> tuple[float, float]:
    return _timed_fit(_agent(params, agent_class), params)


def seed_preset_seconds_per_1000(steps: int) -> float:
    """The article's setup (34.8M parameters, raw frames, a gradient step every env step)."""
    preset = load_params(Path(__file__).resolve().parents[1] / "presets" / "seed.yaml")
    params = preset.model_copy(update={
        "agent": preset.agent.model_copy(update={"warmup_steps": 40}),
        "train": preset.train.model_copy(update={"steps": 40 + steps}),
    })
    _, after_warmup = _timed_fit(_agent(params, FastDQNAgent), params)
    return 1000 / after_warmup


def replay_numbers(transitions: int, samples: int) -> dict[str, float]:
    """Bytes per transition (from the buffers' nbytes), batch-of-32 sampling latency for both memories."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (512, 84, 84), dtype=np.uint8)
    ours = ReplayMemory(transitions, window_length=4, seed=0)
    theirs = load_rl().SequentialMemory(limit=transitions, window_length=4)
    for i in range(transitions):
        done = i % 400 == 399  # episodes of 400 steps
        for memory in (ours, theirs):
            memory.append(frames[i % 512], i % 6, 1.0, done)

    def median_ms(sample) -> float:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            sample()
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e3

    def keras_rl2_batch():  # what a gradient step needs from SequentialMemory: arrays
        batch = theirs.sample(32)
        return (np.asarray([e.state0 for e in batch], np.uint8), np.asarray([e.state1 for e in batch], np.uint8))

    return {
        "bytes": ours.nbytes() / transitions,
        "ours_ms": median_ms(lambda: ours.sample_batch(32)),
        "theirs_ms": median_ms(keras_rl2_batch),
    }


def eval_rate(params: Params, episodes: int) -> float:
    """`evaluation.play_agent` (keras-rl2's test loop), no video, ε = evaluate.epsilon, on one thread as the
    evaluate stage plays: in a fresh process, since TF's thread count is fixed once it has run."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_eval_rate, params, episodes).result()


def _eval_rate(params: Params, episodes: int) -> float:
    use_one_thread()
    agent = _agent(params, FastDQNAgent, training=False)
    agent.test_policy.eps = params.evaluate.epsilon
    agent.compute_q_values(np.zeros(agent.model.input_shape[1:], np.uint8))  # the one-off XLA compile
    start = time.perf_counter()
    played = play_agent(agent, params.env, episodes, params.seed)
    return sum(e.length for e in played) / (time.perf_counter() - start)


def _cpu_name() -> str:
    """Model name with family and model numbers: cloud CPUs often report only "AMD EPYC"."""
    info: dict[str, str] = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown CPU"
    return f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="training steps per agent (default 5000)")
    parser.add_argument("--eval-episodes", type=int, default=3, help="evaluation episodes (default 3)")
    parser.add_argument("--seed-steps", type=int, default=300, help="seed-preset training steps timed (default 300)")
    parser.add_argument("--replay-transitions", type=int, default=100_000,
                        help="transitions in the sampled memories (default 100000, the default memory_limit)")
    args = parser.parse_args()
    params = _params(args.steps)
    rl = load_rl()
    load = os.getloadavg()[0]

    plain_all, plain_after = train_rates(params, rl.DQNAgent)
    fast_all, fast_after = train_rates(params, FastDQNAgent)
    bf16 = params.model_copy(update={"agent": params.agent.model_copy(update={"precision": "bfloat16"})})
    bf16_all, bf16_after = train_rates(bf16, FastDQNAgent)
    replay = replay_numbers(args.replay_transitions, 2000)
    evaluate = eval_rate(params, args.eval_episodes)
    seed = seed_preset_seconds_per_1000(args.seed_steps)

    rows = [
        ("training, env steps/s (all steps)", f"{plain_all:.1f}", f"{fast_all:.1f}", fast_all / plain_all),
        (f"training, env steps/s (after warmup {WARMUP})", f"{plain_after:.1f}", f"{fast_after:.1f}",
         fast_after / plain_after),
        ("training, agent.precision bfloat16 (all steps)", "-", f"{bf16_all:.1f}", bf16_all / plain_all),
        ("training, agent.precision bfloat16 (after warmup)", "-", f"{bf16_after:.1f}", bf16_after / plain_after),
        ("replay: bytes per transition (84x84)", "-", f"{replay['bytes']:.0f}", None),
        ("replay: sample a batch of 32, ms (median)", f"{replay['theirs_ms']:.3f}", f"{replay['ours_ms']:.3f}",
         replay["theirs_ms"] / replay["ours_ms"]),
        (f"evaluation, env steps/s (ε = {params.evaluate.epsilon})", "-", f"{evaluate:.1f}", None),
        ("seed preset training, s per 1000 steps", "-", f"{seed:.1f}", None),
    ]
    print(f"machine: {_cpu_name()}, {platform.machine()}, {os.cpu_count()} cores;"
          f" load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(f"settings: {args.steps} training steps, warmup {WARMUP}, batch 32, train_interval 4,"
          f" Nature CNN + dueling, double DQN; replay memories of {args.replay_transitions} transitions")
    header = ("", "keras-rl2", "invaders", "speed-up")
    width = max(len(r[0]) for r in rows)
    print(f"| {header[0]:<{width}} | {header[1]:>9} | {header[2]:>9} | {header[3]:>8} |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}:|{'-' * 10}:|{'-' * 9}:|")
    for name, theirs, ours, ratio in rows:
        speedup = f"{ratio:.1f}x" if ratio else "-"
        print(f"| {name:<{width}} | {theirs:>9} | {ours:>9} | {speedup:>8} |")


if __name__ == "__main__":
    main()
