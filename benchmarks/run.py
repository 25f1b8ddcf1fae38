"""Throughput benchmark: keras-rl2's DQNAgent against ours, Stable-Baselines3, replay memory, evaluation, seed preset.

Same settings for every agent: Nature CNN, batch 32, a gradient step every 4 env steps, warmup
1000. keras-rl2 runs as in its Atari example (DQNAgent + SequentialMemory, one-step uniform
replay); ours runs the same algorithm (FastDQNAgent + ReplayMemory, `n_step: 1`, uniform), then
the defaults (3-step returns, prioritized replay), then the defaults in bfloat16, then (portable)
the defaults with the quantile head and random-shift replays. SB3's DQN
(PyTorch) runs in its own venv, in the same bench run, when one is given (`make bench` makes it).

Both reproducibility modes: every TensorFlow measurement runs in a fresh process that applies
its mode first (`invaders.reproducibility.apply`); `portable` is the AVX2 path on any CPU. SB3
runs natively and on the AVX2 path too (`ATEN_CPU_CAPABILITY=avx2`, the same oneDNN cap, MKL's), so on
an AVX-512 machine both sides of the AVX2 comparison are what an AVX2-only machine would run.
Run with `make bench`; prints two tables.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import json
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import invaders  # noqa: F401
from invaders import reproducibility
from invaders.config import Params, ReproducibilityConfig, load_params
from invaders.rl.replay import PrioritizedReplayMemory, ReplayMemory

WARMUP = 1000


def _params(steps: int, **agent) -> Params:
    """The defaults with warmup 1000 and `steps`; `agent` overrides agent params."""
    return Params().model_copy(update={
        "agent": Params().agent.model_copy(update={"warmup_steps": WARMUP, **agent}),
        "train": Params().train.model_copy(update={"steps": steps}),
    })


ONE_STEP_UNIFORM = {"n_step": 1, "prioritized": Params().agent.prioritized.model_copy(update={"enabled": False})}
MODES = ("native", "portable")


def _mode(params: Params, mode: str) -> Params:
    return params.model_copy(update={"reproducibility": ReproducibilityConfig(mode=mode)})


def _fresh(fn, *args):
    """`fn(*args)` in a new process: TensorFlow's instruction set and threads are fixed once it has run."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _agent(params: Params, agent_class, training: bool = True):
    from invaders.rl.agent import build_agent
    from invaders.seeding import seed_everything
    from invaders.rl.envs import action_count, observation_shape
    from invaders.rl.model import build_q_network

    seed_everything(params.seed)
    net = build_q_network(params.model, observation_shape(params.env), params.agent.window_length,
                          action_count(params.env), params.agent.head_quantiles)
    from invaders.compat.keras_rl2 import load_rl

    memory = None
    if agent_class is load_rl().DQNAgent:  # plain keras-rl2, as its Atari example: SequentialMemory
        memory = load_rl().SequentialMemory(limit=params.agent.memory_limit, window_length=params.agent.window_length)
    return build_agent(net, params, training=training, agent_class=agent_class, memory=memory)


def _timed_fit(agent, params: Params) -> tuple[float, float]:
    """fit for `train.steps`; (env steps/s over all of it, env steps/s after warmup)."""
    from invaders.compat.keras_rl2 import load_rl
    from invaders.rl.envs import RLEnv, make_env

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


def train_rates(params: Params, agent: str = "invaders") -> tuple[float, float]:
    """(all steps, after warmup) env steps/s of `agent` ("invaders" or "keras-rl2") in a fresh process."""
    return _fresh(_train_rates, params, agent)


def _train_rates(params: Params, agent: str) -> tuple[float, float]:
    reproducibility.apply(params)
    from invaders.rl.agent import FastDQNAgent
    from invaders.compat.keras_rl2 import load_rl

    agent_class = FastDQNAgent if agent == "invaders" else load_rl().DQNAgent
    return _timed_fit(_agent(params, agent_class), params)


def seed_preset_seconds_per_1000(steps: int) -> float:
    """The article's setup (34.8M parameters, raw frames, a gradient step every env step)."""
    return _fresh(_seed_preset_seconds_per_1000, steps)


def _seed_preset_seconds_per_1000(steps: int) -> float:
    from invaders.rl.agent import FastDQNAgent

    preset = load_params(Path(__file__).resolve().parents[1] / "presets" / "seed.yaml")
    params = _mode(preset, "native").model_copy(update={
        "agent": preset.agent.model_copy(update={"warmup_steps": 40}),
        "train": preset.train.model_copy(update={"steps": 40 + steps}),
    })
    reproducibility.apply(params)
    _, after_warmup = _timed_fit(_agent(params, FastDQNAgent), params)
    return 1000 / after_warmup


def replay_numbers(transitions: int, samples: int) -> dict[str, float]:
    """Bytes per transition (from the buffers' nbytes), batch-of-32 sampling latency for every memory,
    and the prioritized memory's priority update for a batch."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (512, 84, 84), dtype=np.uint8)
    ours = ReplayMemory(transitions, window_length=4, seed=0)
    prioritized = PrioritizedReplayMemory(transitions, window_length=4, seed=0, n_step=3)
    from invaders.compat.keras_rl2 import load_rl

    theirs = load_rl().SequentialMemory(limit=transitions, window_length=4)
    for i in range(transitions):
        done = i % 400 == 399  # episodes of 400 steps
        for memory in (ours, prioritized, theirs):
            memory.append(frames[i % 512], i % 6, 1.0, done)
    for _ in range(transitions // 32):  # priorities spread out as in training
        batch = prioritized.sample_batch(32, 0.5)
        prioritized.update_priorities(batch.positions, rng.exponential(1.0, 32))

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

    batch = prioritized.sample_batch(32, 0.5)
    errors = rng.exponential(1.0, 32)
    return {
        "bytes": ours.nbytes() / transitions,
        "ours_ms": median_ms(lambda: ours.sample_batch(32)),
        "prioritized_ms": median_ms(lambda: prioritized.sample_batch(32, 0.5)),
        "update_ms": median_ms(lambda: prioritized.update_priorities(batch.positions, errors)),
        "theirs_ms": median_ms(keras_rl2_batch),
    }


def outbox_costs(records: int) -> dict[str, float]:
    """The train stage's tracking: microseconds per metrics record on the training thread (the
    server away, so records pile up as in an outage), and records per second the sending thread
    delivers to a local SQLite store."""
    import tempfile

    import mlflow

    from invaders.tracking.outbox import Outbox

    metrics = {"epsilon": 0.5, "steps_per_s": 150.0, "train_loss": 0.01, "train_mean_q": 1.0}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/bench.db"
        mlflow.set_tracking_uri(store)
        run_id = mlflow.MlflowClient().create_run("0").info.run_id
        mlflow.set_tracking_uri("http://127.0.0.1:9")  # nobody listens there
        away = Outbox(run_id, Path(tmp) / "spill-away.jsonl", echo=lambda line: None)
        start = time.perf_counter()
        for step in range(records):
            away.log_metrics(metrics, step)
        put_us = (time.perf_counter() - start) / records * 1e6
        away.close(0.0)
        mlflow.set_tracking_uri(store)
        there = Outbox(run_id, Path(tmp) / "spill.jsonl", echo=lambda line: None)
        start = time.perf_counter()
        for step in range(records):
            there.log_metrics(metrics, step)
        unsent = there.close(600.0)
        send_rate = (records - len(unsent)) / (time.perf_counter() - start)
        mlflow.set_tracking_uri("")
    return {"put_us": put_us, "send_rate": send_rate}


def sb3_rates(python: str | None, steps: int, avx2: bool) -> dict | None:
    """SB3's DQN at the same settings, in its own interpreter (a venv with PyTorch); None without one.
    `avx2`: on the AVX2 path (PyTorch's own kernels, its oneDNN and MKL capped), as portable mode runs ours."""
    if not python or not Path(python).exists():
        return None
    script = Path(__file__).with_name("sb3_dqn.py")
    capped = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": reproducibility.ISA, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    env = {**os.environ, **(capped if avx2 else {})}
    out = subprocess.run([python, str(script), "--steps", str(steps), "--json"], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def eval_rate(params: Params, episodes: int, parallel: int) -> float:
    """`play.play_agent`, `parallel` episodes at a time, no video, ε = evaluate.epsilon, on one thread as the
    evaluate stage plays: in a fresh process, since TF's thread count is fixed once it has run. The wall time
    includes making the emulators and every seeded reset (ALE reloads the ROM: about 80 ms each)."""
    return _fresh(_eval_rate, params, episodes, parallel)


def _eval_rate(params: Params, episodes: int, parallel: int) -> float:
    reproducibility.apply(params, playing=True)
    from invaders.rl.agent import FastDQNAgent
    from invaders.rl.play import batch_rows, play_agent

    agent = _agent(params, FastDQNAgent, training=False)
    agent.test_policy.eps = params.evaluate.epsilon
    rows = batch_rows(parallel)[1]
    agent.compute_batch_q_values(np.zeros((rows, *agent.model.input_shape[1:]), np.uint8))  # the one-off XLA compile
    start = time.perf_counter()
    played = play_agent(agent, params.env, episodes, params.seed, parallel)
    return sum(e.length for e in played) / (time.perf_counter() - start)


def print_step_profile(mode: str) -> float:
    """The gradient step of the defaults in `mode`: its time and GFLOP/s against the CPU's FMA peak on
    the cores TensorFlow uses, then oneDNN's per-op table. Returns the fraction of the peak."""
    import step_profile

    params = _mode(_params(1000), mode)
    seconds, flop = _fresh(step_profile.step_seconds, params)
    threads = params.reproducibility.threads
    peak = step_profile.peak_gflops(threads)
    isa = reproducibility.ISA
    print(f"\nGradient step ({mode}, batch {params.agent.batch_size}, double DQN + dueling, {threads} threads):"
          f" {flop / 1e9:.2f} GFLOP in {seconds * 1e3:.2f} ms = {flop / seconds / 1e9:.1f} GFLOP/s,"
          f" {flop / seconds / 1e9 / peak:.0%} of the {isa} FMA peak ({peak:.1f} GFLOP/s ="
          f" {step_profile.clock_ghz():.2f} GHz x {step_profile.FMA_FLOPS_PER_CYCLE[isa]} FLOP/cycle x {threads}"
          f" cores); floor {flop / peak / 1e6:.2f} ms")
    rows = step_profile.op_table(mode)
    total = sum(r["ms"] for r in rows)
    print(f"oneDNN's per-op timings (ONEDNN_VERBOSE=profile_exec; {total:.2f} ms per step with its overhead):")
    print(f"| {'op':<30} | {'implementation':<24} | {'shape':<52} | {'ms':>6} | {'GFLOP/s':>7} |")
    print(f"|{'-' * 32}|{'-' * 26}|{'-' * 54}|{'-' * 7}:|{'-' * 8}:|")
    for r in rows:
        if r["ms"] >= 0.01:
            gflops = f"{r['gflops']:.1f}" if r["gflops"] else "-"
            print(f"| {r['op']:<30} | {r['impl'][:24]:<24} | {r['shape'][:52]:<52} | {r['ms']:>6.2f} | {gflops:>7} |")
    return flop / seconds / 1e9 / peak


# Issue 23's goals, on the AVX2 path (portable mode) against SB3's AVX2 path in the same run.
GOAL_SB3_RATIO, GOAL_PEAK, GOAL_EVAL = 1.5, 0.65, 1500.0
GOAL_QUANTILE = 0.9  # issue 24: the quantile head with random shifts within 10% of the scalar head's training speed
PAIRS = 3  # its runs: the scalar head and the quantile head alternated, each in a fresh process


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_goals(ratios: tuple[float, float] | None, peak_fraction: float, eval_rate: float, n: int) -> None:
    """Each speed goal, its figure from this run and whether it is met (`make bench-repro` times the whole
    `make repro`, the fourth goal, and `make bench` runs it next)."""
    print(f"\nGoals (portable, the {reproducibility.ISA} path; {reproducibility.cpu_name()}):")
    if ratios is None:
        print(f"  training >= {GOAL_SB3_RATIO}x SB3: not measured (no SB3 venv)")
    else:
        for label, ratio in zip(("all steps", f"after warmup {WARMUP}"), ratios):
            print(f"  training >= {GOAL_SB3_RATIO}x SB3 ({label}): {ratio:.2f}x, {verdict(ratio >= GOAL_SB3_RATIO)}")
    print(f"  gradient step >= {GOAL_PEAK:.0%} of the FMA peak: {peak_fraction:.0%}, {verdict(peak_fraction >= GOAL_PEAK)}")
    print(f"  evaluation >= {GOAL_EVAL:.0f} env steps/s ({n} at a time): {eval_rate:.1f},"
          f" {verdict(eval_rate >= GOAL_EVAL)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="training steps per agent (default 5000)")
    parser.add_argument("--eval-episodes", type=int, default=Params().evaluate.episodes,
                        help=f"evaluation episodes (default {Params().evaluate.episodes}, the evaluate stage's)")
    parser.add_argument("--eval-parallel", type=int, default=Params().evaluate.parallel_episodes,
                        help="episodes played at a time, timed beside one at a time (default"
                             f" {Params().evaluate.parallel_episodes}, evaluate.parallel_episodes)")
    parser.add_argument("--seed-steps", type=int, default=300, help="seed-preset training steps timed (default 300)")
    parser.add_argument("--replay-transitions", type=int, default=100_000,
                        help="transitions in the sampled memories (default 100000, the default memory_limit)")
    parser.add_argument("--sb3-python", default=os.environ.get("SB3_PYTHON"),
                        help="python of a venv with Stable-Baselines3 (benchmarks/sb3-requirements.txt): its DQN"
                             " is timed in the same run (default $SB3_PYTHON; none: skipped)")
    args = parser.parse_args()
    same_as_keras_rl2 = _mode(_params(args.steps, **ONE_STEP_UNIFORM), "native")
    defaults = {mode: _mode(_params(args.steps), mode) for mode in MODES}
    load = os.getloadavg()[0]

    plain_all, plain_after = train_rates(same_as_keras_rl2, "keras-rl2")
    fast_all, fast_after = train_rates(same_as_keras_rl2)
    modes = {mode: train_rates(defaults[mode]) for mode in MODES}
    full_all, full_after = modes["native"]
    bf16 = defaults["native"].model_copy(update={"agent": defaults["native"].agent.model_copy(update={"precision": "bfloat16"})})
    bf16_all, bf16_after = train_rates(bf16)
    portable = defaults["portable"]  # issue 24's goal: the quantile head with shifts beside the scalar head, portable
    quantile = portable.model_copy(update={"agent": portable.agent.model_copy(update={"head": "quantile",
                                                                                      "augment": "shift"})})
    pairs = [(train_rates(portable)[1], train_rates(quantile)[1]) for _ in range(PAIRS)]
    sb3 = {mode: sb3_rates(args.sb3_python, args.steps, avx2=mode == "portable") for mode in MODES}
    replay = replay_numbers(args.replay_transitions, 2000)
    widths = sorted({1, args.eval_parallel})
    evals = {(mode, n): eval_rate(defaults[mode], args.eval_episodes, n) for mode in MODES for n in widths}
    seed = seed_preset_seconds_per_1000(args.seed_steps)
    outbox = outbox_costs(20_000)

    after = f"after warmup {WARMUP}"
    rows = [
        ("training, one-step uniform, env steps/s (all steps)", f"{plain_all:.1f}", f"{fast_all:.1f}",
         fast_all / plain_all),
        (f"training, one-step uniform, env steps/s ({after})", f"{plain_after:.1f}", f"{fast_after:.1f}",
         fast_after / plain_after),
        ("training, defaults: 3-step + prioritized (all steps)", "-", f"{full_all:.1f}", full_all / plain_all),
        (f"training, defaults: 3-step + prioritized ({after})", "-", f"{full_after:.1f}", full_after / plain_after),
        ("training, defaults in bfloat16 (all steps)", "-", f"{bf16_all:.1f}", bf16_all / plain_all),
        (f"training, defaults in bfloat16 ({after})", "-", f"{bf16_after:.1f}", bf16_after / plain_after),
        (f"training, quantile head ({quantile.agent.quantiles}) + shift, portable ({after}; median of {PAIRS})", "-",
         f"{np.median([q for _, q in pairs]):.1f}", None),
        ("replay: bytes per transition (84x84)", "-", f"{replay['bytes']:.0f}", None),
        ("replay: sample a batch of 32, ms (median)", f"{replay['theirs_ms']:.3f}", f"{replay['ours_ms']:.3f}",
         replay["theirs_ms"] / replay["ours_ms"]),
        ("replay: prioritized, sample a batch of 32, ms (median)", "-", f"{replay['prioritized_ms']:.3f}", None),
        ("replay: prioritized, update 32 priorities, ms (median)", "-", f"{replay['update_ms']:.3f}", None),
        *((f"evaluation, {n} at a time, env steps/s (ε = {defaults['native'].evaluate.epsilon})", "-",
           f"{evals['native', n]:.1f}", None) for n in widths),
        ("seed preset training, s per 1000 steps", "-", f"{seed:.1f}", None),
        ("tracking outbox: queue a metrics record, µs (server away)", "-", f"{outbox['put_us']:.1f}", None),
        ("tracking outbox: records sent per s (local SQLite store)", "-", f"{outbox['send_rate']:.0f}", None),
    ]
    print(f"machine: {reproducibility.cpu_name()}, {platform.machine()}, {os.cpu_count()} cores;"
          f" load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(f"settings: {args.steps} training steps, warmup {WARMUP}, batch 32, train_interval 4,"
          f" Nature CNN + dueling, double DQN; replay memories of {args.replay_transitions} transitions;"
          f" evaluation: {args.eval_episodes} episodes of a freshly built network, seeded from seed 0")
    header = ("", "keras-rl2", "invaders", "speed-up")
    width = max(len(r[0]) for r in rows)
    print(f"| {header[0]:<{width}} | {header[1]:>9} | {header[2]:>9} | {header[3]:>8} |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}:|{'-' * 10}:|{'-' * 9}:|")
    for name, theirs, ours, ratio in rows:
        speedup = f"{ratio:.1f}x" if ratio else "-"
        print(f"| {name:<{width}} | {theirs:>9} | {ours:>9} | {speedup:>8} |")
    isa = reproducibility.ISA
    print(f"\nReproducibility modes (defaults: 3-step + prioritized); portable is the {isa} path with TensorFlow on"
          f" {defaults['portable'].reproducibility.threads} threads for training, SB3's {isa} path is"
          f" ATEN_CPU_CAPABILITY=avx2 with ONEDNN_MAX_CPU_ISA={isa} and MKL_ENABLE_INSTRUCTIONS=AVX2:")
    print(f"| {'env steps/s':<42} | {'native':>9} | {'portable':>9} | {'cost':>6} |")
    print(f"|{'-' * 44}|{'-' * 10}:|{'-' * 10}:|{'-' * 7}:|")
    mode_rows = [("invaders training (all steps)", modes["native"][0], modes["portable"][0]),
                 (f"invaders training ({after})", modes["native"][1], modes["portable"][1]),
                 *((f"invaders evaluation, {n} at a time", evals["native", n], evals["portable", n])
                   for n in widths)]
    if sb3["native"] is not None:
        mode_rows += [(f"SB3 DQN training (all steps)", sb3["native"]["all"], sb3["portable"]["all"]),
                      (f"SB3 DQN training ({after})", sb3["native"]["after_warmup"], sb3["portable"]["after_warmup"]),
                      ("invaders / SB3 training (all steps)", modes["native"][0] / sb3["native"]["all"],
                       modes["portable"][0] / sb3["portable"]["all"]),
                      (f"invaders / SB3 training ({after})", modes["native"][1] / sb3["native"]["after_warmup"],
                       modes["portable"][1] / sb3["portable"]["after_warmup"])]
    for name, native, portable in mode_rows:
        cost = f"{1 - portable / native:.0%}" if "/" not in name else "-"
        fmt = ".2f" if "/" in name else ".1f"
        print(f"| {name:<42} | {native:>9{fmt}} | {portable:>9{fmt}} | {cost:>6} |")
    if sb3["native"] is None:
        print("Stable-Baselines3: skipped (no --sb3-python / SB3_PYTHON; `make bench` makes .venv-sb3)")
    else:
        print(f"Stable-Baselines3 DQN: torch {sb3['native']['torch']}, {sb3['native']['threads']} threads. SB3's DQN"
              f" has neither double DQN nor a dueling head; one-step uniform invaders (native) against SB3 native:"
              f" {fast_all / sb3['native']['all']:.2f}x (all steps),"
              f" {fast_after / sb3['native']['after_warmup']:.2f}x ({after})")
    peak_fraction = print_step_profile("portable")
    ratios = None if sb3["portable"] is None else (modes["portable"][0] / sb3["portable"]["all"],
                                                   modes["portable"][1] / sb3["portable"]["after_warmup"])
    print_goals(ratios, peak_fraction, evals["portable", args.eval_parallel], args.eval_parallel)
    import step_profile

    ratios = [q / s for s, q in pairs]
    quantile_ratio = float(np.median(ratios))
    print(f"  quantile head + shift >= {GOAL_QUANTILE:.0%} of the scalar head's speed ({after}, portable; the median"
          f" of {PAIRS} alternated pairs: {', '.join(f'{r:.0%}' for r in ratios)}): {quantile_ratio:.0%},"
          f" {verdict(quantile_ratio >= GOAL_QUANTILE)}")
    costs = _fresh(step_profile.head_costs, portable, quantile)
    print(f"    where it goes: a gradient step {costs['scalar_ms']:.2f} ms with the scalar head,"
          f" {costs['quantile_ms']:.2f} with the quantile head; the shifts {costs['shift_ms']:.2f} ms a batch"
          f" (medians of {step_profile.STEPS}, interleaved)")


if __name__ == "__main__":
    main()
