"""A trained agent plays episodes (keras-rl2's test loop), with gameplay video."""

from __future__ import annotations

import errno
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from invaders.config import EnvConfig
from invaders.files import atomic_path
from invaders.rl.envs import RLEnv, make_env
from invaders.rl.episodes import Episode


def play_agent(agent, cfg: EnvConfig, episodes: int, seed: int, video: Path | None = None,
               desc: str = "evaluate") -> list[Episode]:
    """keras-rl2's test loop; the first episode is recorded to `video` if given.

    `seed` seeds the episodes and the test policy's ε draws; the global RNGs are left as they were.
    """
    import tensorflow as tf

    from invaders.seeding import seeded_global_rngs
    from invaders.compat.keras_rl2 import load_rl

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
