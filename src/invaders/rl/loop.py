"""Training: keras-rl2's fit loop, with a per-episode history, a progress bar and checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from invaders.rl import checkpoint
from invaders.rl.agent import build_agent, load_agent
from invaders.seeding import seed_everything, seeded_global_rngs
from invaders.compat.keras_rl2 import load_rl
from invaders.config import Params
from invaders.rl.envs import RLEnv, make_env
from invaders.rl.play import play_agent
from invaders.rl.episodes import score_summary
from invaders.rl.model import save_network

HISTORY_FIELDS = ["episode", "step", "reward", "length", "epsilon", "loss", "mean_q", "wall_time_seconds"]
VALIDATION_FIELDS = ["step", "mean_reward", "std_reward", "best"]
# Each game's score is noisy; beside it goes the mean of the last games', the curve to read.
SMOOTHED_GAMES = 100

# (global step, metrics) -> None; how a caller (the train stage) tracks progress.
MetricsSink = Callable[[int, dict[str, float]], None]

rl = load_rl()


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


class Validator:
    """Best-network selection: every `train.eval_every` steps and at the end, the online network
    plays `train.eval_episodes` episodes at `agent.epsilon.test`, always the same ones (seeded
    from the validation stream, disjoint from the training env's, the baseline's and the evaluate
    stage's), and the best-scoring network so far is kept (the earlier one on a tie).
    """

    def __init__(self, agent, params: Params):
        self.params, self.agent = params, agent
        self.player = None  # a test-mode agent sharing the online network, made on first use
        self.rows: list[dict] = []
        self.best_weights = None

    @property
    def enabled(self) -> bool:
        return self.params.train.eval_episodes > 0

    def due(self, step: int) -> bool:
        return self.enabled and step % self.params.train.eval_every == 0

    def __call__(self, step: int, sink: MetricsSink) -> None:
        cfg, seed = self.params.train, self.params.stream_seed("validation")
        if self.player is None:
            with seeded_global_rngs(seed):  # Keras seeds new layers' initializers from Python's RNG
                self.player = build_agent(self.agent.model, self.params, training=False)
        episodes = play_agent(self.player, self.params.env, cfg.eval_episodes, seed,
                              self.params.evaluate.parallel_episodes, desc=f"validate@{step}")
        summary = score_summary(episodes)
        best = all(summary["mean_reward"] > r["mean_reward"] for r in self.rows)  # an earlier one wins a tie
        if best:
            self.best_weights = self.agent.model.get_weights()
        self.rows.append({"step": step, "mean_reward": summary["mean_reward"], "std_reward": summary["std_reward"],
                          "best": best})
        sink(step, {"val_mean_reward": summary["mean_reward"], "val_std_reward": summary["std_reward"],
                    "val_best_mean_reward": max(r["mean_reward"] for r in self.rows)})

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"{i:04d}": w for i, w in enumerate(self.best_weights or [])}
        return {"rows": self.rows}, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Continue from what `state()` returned."""
        self.rows = meta["rows"]
        self.best_weights = [w for _, w in sorted(arrays.items())] or None


class Progress(rl.Callback):
    """Per-game history rows, step-level metrics every `log_every`, validation, the progress bar.

    keras-rl2's episodes may be single lives (`env.terminal_on_life_loss`); a history row
    is a whole game, from reset to game over.
    """

    def __init__(self, steps: int, log_every: int, sink: MetricsSink, validator: Validator):
        self.steps, self.log_every, self.sink, self.validator = steps, log_every, sink, validator
        self.load_state({"step": 0, "rows": [], "elapsed": 0.0, "window": [0, [], []], "game": [0.0, 0, [], []]})
        self.bar = None  # opened when training begins

    def state(self, step: int) -> dict:
        return {"step": step, "rows": self.rows, "elapsed": time.perf_counter() - self.start,
                "window": [self.window_start[0], self.window_losses, self.window_q],
                "game": [self.score, self.length, self.losses, self.q]}

    def load_state(self, state: dict) -> None:
        """Continue from `state(step)`: the next fit() starts counting at that step."""
        self.resumed_at = state["step"]
        self._resume_pending = bool(self.resumed_at)
        self.rows: list[dict] = state["rows"]
        self.start = time.perf_counter() - state["elapsed"]
        self.window_start = (state["window"][0], time.perf_counter())
        self.window_losses, self.window_q = state["window"][1], state["window"][2]
        self.score, self.length, self.losses, self.q = state["game"]

    def on_train_begin(self, logs={}):
        self.bar = tqdm(total=self.steps, initial=self.resumed_at, desc="train", unit="step", mininterval=1.0,
                        smoothing=0.05)

    def on_episode_begin(self, episode, logs={}):
        if self._resume_pending:
            # keras-rl2's fit() sets `step = 0` after on_train_begin, then begins the first
            # episode before its first step: a resumed run counts on from its checkpoint's step.
            self.model.step, self._resume_pending = self.resumed_at, False
        if self.env.game_over:  # a new game, not just a new life
            self.score, self.length, self.losses, self.q = 0.0, 0, [], []

    def on_step_begin(self, step, logs={}):
        done = int(self.model.step)
        if self.resumed_at < done < self.steps and self.validator.due(done):
            self.validator(done, self.sink)

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
        if done % self.log_every == 0:
            self._log_window(done)

    def _log_window(self, done: int) -> None:
        last_step, last_time = self.window_start
        now = time.perf_counter()
        metrics = {"steps_per_s": (done - last_step) / max(now - last_time, 1e-9),
                   "epsilon": float(self.model.policy.get_current_value())}
        if self.window_losses:
            metrics.update(train_loss=_mean(self.window_losses), train_mean_q=_mean(self.window_q))
        self.sink(done, metrics)
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
        recent = [r["reward"] for r in self.rows[-SMOOTHED_GAMES:]]
        self.sink(row["step"], {"episode_reward": row["reward"],
                                f"episode_reward_mean{SMOOTHED_GAMES}": _mean(recent),
                                "episode_length": row["length"]})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class RunState:
    """What a checkpoint holds of a training run, and how a resumed run gets it back, side by side:
    the agent (networks, Adam, replay memory), the game in progress, the validator's rows and kept
    network, the trainer's progress, and (`checkpoint.save` adds them) the global RNGs."""

    def __init__(self, agent, env: RLEnv, validator: Validator, progress: Progress, meta: dict | None = None):
        self.agent, self.env, self.validator, self.progress = agent, env, validator, progress
        self.meta = meta or {}  # tags every checkpoint (fingerprint, run id)

    def capture(self, step: int) -> tuple[dict[str, np.ndarray], dict]:
        env_arrays, env_meta = self.env.get_state()
        val_meta, best = self.validator.state()
        arrays = {**checkpoint.nest("agent", self.agent.get_state()), **checkpoint.nest("env", env_arrays),
                  **checkpoint.nest("best", best)}
        meta = {**self.meta, "env": env_meta, "progress": self.progress.state(step), "validation": val_meta}
        return arrays, meta

    def restore(self, saved: checkpoint.Checkpoint) -> None:
        with saved.arrays() as arrays:
            self.agent.set_state(checkpoint.part(arrays, "agent"))
            self.env.set_state(checkpoint.part(arrays, "env"), saved.meta["env"])
            self.validator.load_state(saved.meta["validation"], checkpoint.part(arrays, "best"))
        checkpoint.restore_rngs(saved.meta)
        self.progress.load_state(saved.meta["progress"])


class Checkpointer(rl.Callback):
    """Writes `run`'s state to `directory` every `every` steps (after that step's validation, which
    `Progress`, the callback before it, runs) and tells `on_saved(path, step)`."""

    def __init__(self, run: RunState, directory: Path, steps: int, every: int,
                 on_saved: Callable[[Path, int], None] | None = None):
        self.run, self.directory, self.steps, self.every, self.on_saved = run, directory, steps, every, on_saved

    def on_step_begin(self, step, logs={}):
        done = int(self.model.step)
        if self.run.progress.resumed_at < done < self.steps and done % self.every == 0:
            saved = checkpoint.save(self.directory, done, *self.run.capture(done))
            if self.on_saved:
                self.on_saved(saved, done)


def train(params: Params, model_path: Path, sink: MetricsSink | None = None, checkpoint_dir: Path | None = None,
          checkpoint_meta: dict | None = None, resume: checkpoint.Checkpoint | None = None,
          on_checkpoint: Callable[[Path, int], None] | None = None):
    """Train the network at `model_path` for `params.train.steps`; returns (agent, history rows,
    validator). The agent holds the last network; `save_networks` writes it and the kept one.

    With `checkpoint_dir`, a checkpoint (tagged with `checkpoint_meta`) is written there every
    `train.checkpoint_every` steps. `resume`, a checkpoint from `checkpoint.latest`, continues
    that run: the result is the same as if it had never stopped. `on_checkpoint(path, step)` is
    called after each checkpoint is written (a sweep trial hands it to Ray).
    """
    seed_everything(params.seed)
    agent = load_agent(model_path, params, training=True)
    env = RLEnv(make_env(params.env), params.stream_seed("train"),
                life_loss_ends_episode=params.env.terminal_on_life_loss)
    sink = sink or (lambda step, metrics: None)
    cfg = params.train
    validator = Validator(agent, params)
    progress = Progress(cfg.steps, cfg.log_every, sink, validator)
    run = RunState(agent, env, validator, progress, checkpoint_meta)
    if resume:
        run.restore(resume)
    callbacks = [progress]
    if checkpoint_dir:
        callbacks.append(Checkpointer(run, checkpoint_dir, cfg.steps, cfg.checkpoint_every, on_checkpoint))
    try:
        agent.fit(env, nb_steps=cfg.steps, verbose=0, callbacks=callbacks)
    finally:
        progress.close()
        env.close()
        # Something keeps the callbacks alive until exit, where ALE's bindings would report the
        # emulator as leaked on stderr, after the stage's last line: let it go.
        env = run.env = None
        for callback in callbacks:
            callback.env = None
    if int(agent.step) < cfg.steps:  # keras-rl2's fit swallows Ctrl-C and returns early
        raise KeyboardInterrupt(f"training stopped at step {int(agent.step)} of {cfg.steps}")
    if validator.enabled:
        validator(cfg.steps, sink)  # the last network is a candidate too
    return agent, progress.rows, validator


def save_networks(agent, validator: Validator, keep: str, out: Path) -> None:
    """`out/last.keras`, the network training ended with, and `out/model.keras`, the one `keep`
    selects: the best-validated one or that same last one."""
    save_network(agent.model, out / "last.keras")
    if keep == "best":
        agent.model.set_weights(validator.best_weights)
    save_network(agent.model, out / "model.keras")


def train_summary(params: Params, rows: list[dict], validation: list[dict], seconds: float) -> dict:
    """`data/train/metrics.json`: the run, and which network it kept (`selected_step`)."""
    last = [r["reward"] for r in rows[-10:]]
    best = max(validation, key=lambda r: r["mean_reward"], default=None)  # max keeps the first of ties
    selected = best if params.train.keep == "best" else (validation[-1] if validation else None)
    return {
        "steps": params.train.steps,
        "episodes": len(rows),
        "last10_mean_reward": float(np.mean(last)) if last else None,
        "keep": params.train.keep,
        "selected_step": selected["step"] if selected else params.train.steps,
        "selected_val_mean_reward": selected["mean_reward"] if selected else None,
        "duration_seconds": round(seconds, 1),
        "steps_per_s": round(params.train.steps / seconds, 2),
    }
