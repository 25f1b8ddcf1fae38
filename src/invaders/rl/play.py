"""A trained agent plays episodes side by side, batched forward passes, with gameplay video.

`parallel` emulators (slots) play the episodes in order, each slot taking the next episode when its
own ends. Every episode is a pure function of its seed and `parallel`, whatever its slot and whenever
the others end: its emulator is reset with its own seed (ALE reloads the ROM and re-seeds; the no-op
start comes from the env's re-seeded `np_random`), its ε draws come from its own generator, and its
Q-values come from a forward pass whose shape depends on `parallel` alone (tests/rl/test_play.py).

The slots play in two groups, each with its own batch: while the network runs on one group's batch
(TensorFlow releases the GIL), the other group's emulators step (ALE holds it: emulator threads would
not overlap). Each batch has a row per slot of its group and, if the group has more than one slot, a
last row that stays zero: XLA gives the last row of a batch other bits on the AVX2 path (its
convolutions' last, partial tile of positions falls in the last image), so no episode ever plays in
it. Idle slots' rows are zeros too.
"""

from __future__ import annotations

import errno
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from invaders.config import EnvConfig
from invaders.files import atomic_path
from invaders.rl.envs import make_env
from invaders.rl.episodes import Episode


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """Each episode's own seed, episode i's from (`seed`, i) alone: a run of more episodes begins with the same ones."""
    return [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(episodes)]


def batch_rows(parallel: int) -> tuple[int, int]:
    """(slots per group, rows per batch) for `parallel` episodes at a time."""
    group = -(-parallel // 2)
    return group, group + 1 if group > 1 else group


class Slot:
    """One emulator and the episode it plays; `window`, its row of a batch, holds the episode's last frames."""

    def __init__(self, env, window: np.ndarray):
        self.env, self.window = env, window
        self.episode: int | None = None  # its place in the play order; None while idle
        self.score, self.length = 0.0, 0
        self.rng: np.random.Generator | None = None

    def start(self, episode: int, seed: int) -> None:
        emulator, policy = np.random.SeedSequence(seed).spawn(2)
        obs, _ = self.env.reset(seed=int(emulator.generate_state(1)[0]))
        self.rng = np.random.default_rng(policy)
        # keras-rl2's window at a game's start: zeros, then the first frame; lives lost do not reset it.
        self.window[:] = 0
        self.window[-1] = obs
        self.episode, self.score, self.length = episode, 0.0, 0

    def act(self, q: np.ndarray, epsilon: float) -> int:
        """keras-rl2's ε-greedy test policy: one uniform draw a step, a random action below ε."""
        if self.rng.random() < epsilon:
            return int(self.rng.integers(len(q)))
        return int(np.argmax(q))

    def step(self, action: int) -> bool:
        """Play `action`; whether the episode is over (game over or truncated)."""
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.window[:-1] = self.window[1:]
        self.window[-1] = obs
        self.score += float(reward)  # the raw game score: nothing clips it here
        self.length += 1
        return bool(terminated or truncated)

    def finish(self) -> Episode:
        played = Episode(self.episode + 1, self.score, self.length)
        self.episode = None
        self.window[:] = 0
        return played


class Arcade:
    """The slots in their groups and batches, the episodes still to play, what the finished ones scored."""

    def __init__(self, agent, cfg: EnvConfig, seeds: list[int], parallel: int, record: bool, desc: str):
        group, rows = batch_rows(parallel)
        count = min(parallel, len(seeds))
        self.batches = np.zeros((-(-count // group), rows, *agent.model.input_shape[1:]), np.uint8)
        self.slots = [Slot(make_env(cfg, render=record and k == 0), self.batches[k // group, k % group])
                      for k in range(count)]
        self.groups = [self.slots[g * group:(g + 1) * group] for g in range(len(self.batches))]
        self.queue = iter(enumerate(seeds))
        self.record = record
        self.frames: list[np.ndarray] = []  # episode 0's, which slot 0 plays
        self.played: list[Episode] = []
        self.bar = tqdm(total=len(seeds), desc=desc, unit="episode")

    def play(self, q_values, epsilon: float) -> list[Episode]:
        """Every episode, `q_values(batch)` giving the Q-values; returned in episode order."""
        for slot in self.slots:
            slot.start(*next(self.queue))
        if self.record:
            self.frames.append(self.slots[0].env.render())
        with ThreadPoolExecutor(1, thread_name_prefix="q-values") as network:
            pending = [network.submit(q_values, batch) for batch in self.batches]
            while any(pending):
                for g, batch in enumerate(self.batches):
                    if pending[g] is None:  # its slots are idle for good: the queue is empty
                        continue
                    self._step(self.groups[g], pending[g].result(), epsilon)  # the other group's pass runs meanwhile
                    live = any(slot.episode is not None for slot in self.groups[g])
                    pending[g] = network.submit(q_values, batch) if live else None
        return sorted(self.played, key=lambda e: e.episode)

    def _step(self, group: list[Slot], q: np.ndarray, epsilon: float) -> None:
        for k, slot in enumerate(group):
            if slot.episode is None:
                continue
            done = slot.step(slot.act(q[k], epsilon))
            if self.record and slot.episode == 0:
                self.frames.append(slot.env.render())
            if done:
                self.played.append(slot.finish())
                self.bar.update(1)
                self.bar.set_postfix(reward=self.played[-1].reward)
                if (following := next(self.queue, None)) is not None:
                    slot.start(*following)

    def close(self) -> None:
        self.bar.close()
        for slot in self.slots:
            slot.env.close()


def play_agent(agent, cfg: EnvConfig, episodes: int, seed: int, parallel: int, video: Path | None = None,
               desc: str = "evaluate") -> list[Episode]:
    """`episodes` episodes seeded from `seed`, `parallel` at a time; the first is recorded to `video` if given."""
    return play_episodes(agent, cfg, episode_seeds(seed, episodes), parallel, video, desc)


def play_episodes(agent, cfg: EnvConfig, seeds: list[int], parallel: int, video: Path | None = None,
                  desc: str = "evaluate") -> list[Episode]:
    """One episode per seed, `parallel` at a time, at the agent's test ε; returned in order, numbered from 1.

    `agent` is a keras-rl2 DQN agent (its `compute_batch_q_values` and `test_policy.eps`). The first
    episode is recorded to `video` if given: its first screen and one after every step.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    arcade = Arcade(agent, cfg, seeds, parallel, record=video is not None, desc=desc)
    try:
        played = arcade.play(agent.compute_batch_q_values, float(agent.test_policy.eps))
    finally:
        arcade.close()
    if video is not None:
        write_video(arcade.frames, video, fps=60 / cfg.frame_skip)
    return played


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
