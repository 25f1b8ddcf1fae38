"""Training: keras-rl2's fit loop, with a per-episode history, a progress bar and checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from invaders import checkpoint
from invaders.agent import load_agent, seed_everything
from invaders.compat import load_rl
from invaders.config import Params
from invaders.envs import RLEnv, make_env
from invaders.model import save_network

HISTORY_FIELDS = ["episode", "step", "reward", "length", "epsilon", "loss", "mean_q", "wall_time_seconds"]

# (global step, metrics) -> None; how a caller (the train stage) tracks progress.
MetricsSink = Callable[[int, dict[str, float]], None]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def train(params: Params, model_path: Path, sink: MetricsSink | None = None, checkpoint_dir: Path | None = None,
          checkpoint_meta: dict | None = None, resume: checkpoint.Checkpoint | None = None):
    """Train the network at `model_path` for `params.train.steps`; returns (agent, history rows).

    With `checkpoint_dir`, a checkpoint (tagged with `checkpoint_meta`) is written there every
    `train.checkpoint_every` steps. `resume`, a checkpoint from `checkpoint.latest`, continues
    that run: the result is the same as if it had never stopped.
    """
    rl = load_rl()
    seed_everything(params.seed)
    agent = load_agent(model_path, params, training=True)
    env = RLEnv(make_env(params.env), params.seed, life_loss_ends_episode=params.env.terminal_on_life_loss)
    sink = sink or (lambda step, metrics: None)
    cfg = params.train

    class Progress(rl.Callback):
        """Per-game history rows, step-level metrics every `log_every`, checkpoints, the progress bar.

        keras-rl2's episodes may be single lives (`env.terminal_on_life_loss`); a history row
        is a whole game, from reset to game over.
        """

        def __init__(self, state: dict | None = None):
            state = state or {"rows": [], "elapsed": 0.0, "window": [0, [], []], "game": [0.0, 0, [], []]}
            self.resumed_at = state.get("step", 0)
            self.rows: list[dict] = state["rows"]
            self.start = time.perf_counter() - state["elapsed"]
            self.window_start = (state["window"][0], time.perf_counter())
            self.window_losses, self.window_q = state["window"][1], state["window"][2]
            self.score, self.length, self.losses, self.q = state["game"]
            self.bar = tqdm(total=cfg.steps, initial=self.resumed_at, desc="train", unit="step", mininterval=1.0,
                            smoothing=0.05)

        def state(self, step: int) -> dict:
            return {"step": step, "rows": self.rows, "elapsed": time.perf_counter() - self.start,
                    "window": [self.window_start[0], self.window_losses, self.window_q],
                    "game": [self.score, self.length, self.losses, self.q]}

        def on_episode_begin(self, episode, logs={}):
            if self.env.game_over:  # a new game, not just a new life
                self.score, self.length, self.losses, self.q = 0.0, 0, [], []

        def on_step_begin(self, step, logs={}):
            done = int(self.model.step)
            if checkpoint_dir and done % cfg.checkpoint_every == 0 and self.resumed_at < done < cfg.steps:
                env_arrays, env_meta = env.get_state()
                arrays = {**checkpoint.nest("agent", self.model.get_state()), **checkpoint.nest("env", env_arrays)}
                meta = {**(checkpoint_meta or {}), "env": env_meta, "progress": self.state(done)}
                checkpoint.save(checkpoint_dir, done, arrays, meta)

        def on_step_end(self, step, logs={}):
            self.score += logs["info"]["raw_reward"]
            self.length += 1
            metrics = dict(zip(self.model.metrics_names, logs["metrics"]))
            if not math.isnan(metrics.get("loss", math.nan)):
                self.losses.append(metrics["loss"])
                self.q.append(metrics["mean_q"])
                self.window_losses.append(metrics["loss"])
                self.window_q.append(metrics["mean_q"])
            self.bar.update(1)
            done = int(self.model.step) + 1  # fit increments step after the callbacks
            if done % cfg.log_every == 0:
                self._log_window(done)

        def _log_window(self, done: int) -> None:
            last_step, last_time = self.window_start
            now = time.perf_counter()
            metrics = {"steps_per_s": (done - last_step) / max(now - last_time, 1e-9),
                       "epsilon": float(self.model.policy.get_current_value())}
            if self.window_losses:
                metrics.update(train_loss=_mean(self.window_losses), train_mean_q=_mean(self.window_q))
            sink(done, metrics)
            self.window_start, self.window_losses, self.window_q = (done, now), [], []

        def on_episode_end(self, episode, logs={}):
            if not self.env.game_over:
                return
            row = {
                "episode": len(self.rows) + 1,
                "step": int(logs["nb_steps"]),
                "reward": self.score,
                "length": self.length,
                "epsilon": round(float(self.model.policy.get_current_value()), 6),
                "loss": _mean(self.losses),
                "mean_q": _mean(self.q),
                "wall_time_seconds": round(time.perf_counter() - self.start, 3),
            }
            self.rows.append(row)
            self.bar.set_postfix(episode=row["episode"], reward=row["reward"], eps=f"{row['epsilon']:.3f}")
            sink(row["step"], {"episode_reward": row["reward"], "episode_length": row["length"]})

    if resume:
        with resume.arrays() as arrays:
            agent.set_state(checkpoint.part(arrays, "agent"), resume.meta["step"])
            env.set_state(checkpoint.part(arrays, "env"), resume.meta["env"])
        checkpoint.restore_rngs(resume.meta)
    progress = Progress(resume.meta["progress"] if resume else None)
    try:
        agent.fit(env, nb_steps=cfg.steps, verbose=0, callbacks=[progress])
    finally:
        progress.bar.close()
        env.close()
    if int(agent.step) < cfg.steps:  # keras-rl2's fit swallows Ctrl-C and returns early
        raise KeyboardInterrupt(f"training stopped at step {int(agent.step)} of {cfg.steps}")
    return agent, progress.rows


def train_summary(rows: list[dict], steps: int, seconds: float) -> dict:
    last = [r["reward"] for r in rows[-10:]]
    return {
        "steps": steps,
        "episodes": len(rows),
        "last10_mean_reward": float(np.mean(last)) if last else None,
        "duration_seconds": round(seconds, 1),
        "steps_per_s": round(steps / seconds, 2),
    }
