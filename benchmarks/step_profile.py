"""Where the gradient step's time goes: its FLOPs, the CPU's FMA peak, and oneDNN's own per-op timings.

`benchmarks/run.py` calls these, each measurement in a fresh process (`run._fresh`). Standalone:

    python benchmarks/step_profile.py      # the defaults in portable mode (the AVX2 path)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from invaders import reproducibility

sys.path.insert(0, str(Path(__file__).parent))  # `run`, its neighbour, builds the agents

# FLOPs per cycle per core of the vector FMA units: 2 units x lanes x 2 (multiply and add). AVX2 is the
# portable path's cap; AVX-512 CPUs may have 1 or 2 512-bit units, so `native`'s peak is not claimed here.
FMA_FLOPS_PER_CYCLE = {"AVX2": 2 * 8 * 2}
STEPS = 60  # timed gradient steps, after 5 untimed ones


def clock_ghz() -> float:
    """The first core's clock as /proc/cpuinfo reports it (a VM often reports the nominal one)."""
    mhz = reproducibility.cpu_info().get("cpu MHz")
    return float(mhz) / 1000 if mhz else float("nan")


def peak_gflops(cores: int, isa: str = reproducibility.ISA) -> float:
    return clock_ghz() * FMA_FLOPS_PER_CYCLE[isa] * cores


def multiply_adds(model) -> dict[str, int]:
    """Multiply-adds per state of each convolution and dense layer (output elements x fan-in)."""
    macs = {}
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            fan_in = int(np.prod(kernel.shape[:-1]))
            macs[layer.name] = int(np.prod(layer.output_shape[1:])) * fan_in
    return macs


def step_flop(model, batch: int) -> float:
    """A double-DQN gradient step's FLOPs: forward passes of the online and target nets on s' and of the
    online net on s, then the backward pass (the weight gradient of every layer, the input gradient of all
    but the first: nothing needs the frames' gradient)."""
    macs = multiply_adds(model)
    forward = sum(macs.values())
    backward = forward + forward - next(iter(macs.values()))
    return 2.0 * batch * (3 * forward + backward)


def _agent_and_batch(params):
    """The defaults' agent (`run._agent`, as the training benchmarks build it) and a replay batch of random
    frames, as a gradient step gets them."""
    import tensorflow as tf

    import run
    from invaders.rl.agent import FastDQNAgent

    agent = run._agent(params, FastDQNAgent)
    frame, actions = agent.model.input_shape[2:], agent.nb_actions
    rng = np.random.default_rng(0)
    for i in range(2000):
        agent.memory.append(rng.integers(0, 256, frame, dtype=np.uint8), int(rng.integers(actions)), 1.0,
                            i % 400 == 399)
    batch = agent.memory.sample_batch(params.agent.batch_size, progress=0.5)
    return agent, [tf.constant(a) for a in batch[:-1]]


def step_seconds(params) -> tuple[float, float]:
    """(seconds per gradient step, its FLOPs) on one fixed batch; call in a fresh process."""
    reproducibility.apply(params)
    agent, batch = _agent_and_batch(params)
    for _ in range(5):
        agent._train_step(*batch)
    start = time.perf_counter()
    for _ in range(STEPS):
        agent._train_step(*batch)[0].numpy()
    return (time.perf_counter() - start) / STEPS, step_flop(agent.model, params.agent.batch_size)


def head_costs(scalar, quantile) -> dict[str, float]:
    """Median ms of a gradient step with `scalar`'s and with `quantile`'s head (the two agents' steps
    interleaved on one fixed batch each, so a slow patch of the machine falls on both), and of the
    random shifts a batch of `quantile`'s gets (two calls: s and s'); call in a fresh process."""
    from invaders.rl.augment import random_shift

    reproducibility.apply(scalar)
    steps = {name: _agent_and_batch(params) for name, params in (("scalar", scalar), ("quantile", quantile))}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(5 + STEPS):
        for name, (agent, batch) in steps.items():
            start = time.perf_counter()
            agent._train_step(*batch)[0].numpy()
            if i >= 5:
                times[name].append(time.perf_counter() - start)
    states, rng, shifts = steps["quantile"][1][0].numpy(), np.random.default_rng(0), []
    for _ in range(200):
        start = time.perf_counter()
        random_shift(states, rng), random_shift(states, rng)
        shifts.append(time.perf_counter() - start)
    return {**{f"{name}_ms": float(np.median(t)) * 1e3 for name, t in times.items()},
            "shift_ms": float(np.median(shifts)) * 1e3}


def _verbose_steps(mode: str) -> None:
    """Child process: STEPS gradient steps with oneDNN's per-primitive timings on stdout."""
    import run

    step_seconds(run._mode(run._params(1000), mode))


def op_table(mode: str = "portable") -> list[dict]:
    """oneDNN's per-primitive timings (`ONEDNN_VERBOSE=profile_exec`) of one gradient step, summed by
    primitive and shape, largest first: ms per step and GFLOP/s. The verbose mode's own overhead makes
    the sum larger than the unprofiled step."""
    env = {**os.environ, "ONEDNN_VERBOSE": "profile_exec"}
    code = f"import step_profile; step_profile._verbose_steps({mode!r})"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True,
                         text=True, check=True).stdout
    return parse_verbose(out, steps=STEPS + 5)


def parse_verbose(text: str, steps: int) -> list[dict]:
    totals: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        if not line.startswith("onednn_verbose,v1,primitive,exec,cpu,"):
            continue
        fields = line.split(",")
        kind, impl, prop, problem, ms = fields[5], fields[6], fields[7], fields[-2], float(fields[-1])
        key = (kind, prop if prop != "undef" else "", impl, problem)
        totals[key][0] += ms
        totals[key][1] += _flop(kind, problem)
    rows = [{"op": f"{k[0]} {k[1]}".strip(), "impl": k[2], "shape": k[3], "ms": ms / steps,
             "gflops": flop / (ms * 1e6) if ms else 0.0} for k, (ms, flop) in totals.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def _flop(kind: str, problem: str) -> float:
    """FLOPs of one oneDNN primitive call from its problem descriptor; 0 for reorders."""
    dims = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", problem)}
    if kind == "convolution":
        return 2.0 * dims["mb"] * dims["ic"] * dims["oc"] * dims["oh"] * dims["ow"] * dims["kh"] * dims["kw"]
    if kind == "inner_product":
        return 2.0 * dims["mb"] * dims["ic"] * dims["oc"]
    if kind == "gemm_api":  # "MxK:KxN"
        m, k, n = (int(x) for x in re.match(r"(\d+)x(\d+):\d+x(\d+)", problem).groups())
        return 2.0 * m * k * n
    return 0.0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import run

    run.print_step_profile("portable")
