"""Playing episodes: the random baseline, a trained agent, scores and gameplay video."""

from __future__ import annotations

import csv
import errno
import re
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from invaders.config import EnvConfig
from invaders.envs import RLEnv, make_env
from invaders.errors import UserError
from invaders.files import atomic_path, require

EPISODE_FIELDS = ["episode", "reward", "length"]


@dataclass(frozen=True)
class Episode:
    episode: int
    reward: float  # the raw game score, never clipped
    length: int  # agent steps


def score_summary(episodes: list[Episode]) -> dict[str, float | int]:
    rewards = np.array([e.reward for e in episodes], dtype=np.float64)
    return {
        "mean_reward": float(rewards.mean()),
        "std_reward": float(rewards.std()),
        "min_reward": float(rewards.min()),
        "max_reward": float(rewards.max()),
        "episodes": len(episodes),
    }


def episode_rows(episodes: list[Episode]) -> list[dict]:
    return [asdict(e) for e in episodes]


def read_rewards(path: str | Path) -> list[float]:
    """The `reward` column of an episodes CSV (as `episode_rows` writes it), in episode order."""
    with open(require(path), newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        rewards = [float(row["reward"]) for row in rows]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not an episodes CSV (columns {', '.join(EPISODE_FIELDS)})") from None
    if not rewards:
        raise UserError(f"{path}: no episodes")
    return rewards


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


def play_agent(agent, cfg: EnvConfig, episodes: int, seed: int, video: Path | None = None,
               desc: str = "evaluate") -> list[Episode]:
    """keras-rl2's test loop; the first episode is recorded to `video` if given.

    `seed` seeds the episodes and the test policy's ε draws; the global RNGs are left as they were.
    """
    import tensorflow as tf

    from invaders.agent import seeded_global_rngs
    from invaders.compat import load_rl

    rl = load_rl()
    tf.config.experimental.enable_op_determinism()

    class Recorder(rl.Callback):
        def __init__(self):
            self.played: list[Episode] = []
            self.frames: list[np.ndarray] = []
            self.score = 0.0
            self.bar = tqdm(total=episodes, desc=desc, unit="episode")

        def recording(self) -> bool:
            return video is not None and not self.played

        def on_episode_begin(self, episode, logs={}):
            self.score = 0.0

        def on_step_begin(self, step, logs={}):
            if step == 0 and self.recording():  # the first screen after reset
                self.frames.append(self.env.render())

        def on_step_end(self, step, logs={}):
            self.score += logs["info"]["raw_reward"]
            if self.recording():
                self.frames.append(self.env.render())

        def on_episode_end(self, episode, logs={}):
            self.played.append(Episode(episode + 1, self.score, int(logs["nb_steps"])))
            self.bar.update(1)
            self.bar.set_postfix(reward=self.score)

    env = RLEnv(make_env(cfg, render=video is not None), seed)
    recorder = Recorder()
    try:
        with seeded_global_rngs(seed):  # the test policy's ε draws use NumPy's global RNG
            agent.test(env, nb_episodes=episodes, visualize=False, verbose=0, callbacks=[recorder])
    finally:
        recorder.bar.close()
        env.close()
    if video is not None:
        write_video(recorder.frames, video, fps=60 / cfg.frame_skip)
    return recorder.played


def write_video(frames: list[np.ndarray], path: str | Path, fps: float) -> None:
    """H.264 MP4 by the ffmpeg binary that ships inside imageio-ffmpeg, with the command imageio runs;
    atomic. We run it ourselves because imageio ignores ffmpeg's exit status: a full disk would leave
    a truncated video in place of the previous one."""
    import imageio_ffmpeg

    height, width = frames[0].shape[0] * 2, frames[0].shape[1] * 2
    with atomic_path(path) as tmp:
        ffmpeg = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
             "-pix_fmt", "rgb24", "-r", str(Fraction(fps).limit_denominator()), "-i", "-", "-an", "-vcodec", "libx264",
             "-pix_fmt", "yuv420p", "-v", "error", str(tmp)],
            # Python's ignored SIGXFSZ is kept, so a file-size limit is an error ffmpeg reports, not its death.
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, restore_signals=False)
        try:
            for frame in frames:  # x2 so the 160-pixel-wide screen is watchable (and its sides even, for yuv420p)
                ffmpeg.stdin.write(np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped early: its exit status and message say why
        _, err = ffmpeg.communicate()
        if ffmpeg.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or [f"ffmpeg exited with {ffmpeg.returncode}"]
            raise OSError(errno.EIO, re.sub(r"^\[[^]]*\] ", "", lines[-1]))


def improvement(mean: float, baseline_mean: float) -> float | None:
    """Ratio of the agent's mean score to the random baseline's (None if that is not positive)."""
    return mean / baseline_mean if baseline_mean > 0 else None
