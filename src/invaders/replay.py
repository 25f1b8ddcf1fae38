"""Replay memory: a NumPy ring buffer that stores each frame once and stacks windows on sampling.

keras-rl2's `SequentialMemory` keeps every observation as a separate Python object in deques
(slow random access as it grows) and assembles each sampled window frame by frame in Python.
`ReplayMemory` keeps the same transitions in four preallocated arrays, one row per `append`:

    frames[i]     the observation the agent acted on (uint8, the shape of one observation)
    actions[i]    the action taken in it
    rewards[i]    the reward that followed
    terminals[i]  whether the *next* observation ends the episode

and rebuilds the stacked states of a whole batch with one fancy-indexing gather. The
transition semantics are SequentialMemory's, exactly (tests compare the two on the same data):
for a sampled row index `idx` (1-based as keras-rl2 counts, see `_windows`),
state0 is the window ending at frame `idx - 1`, action/reward/terminal1 are row `idx - 1`'s,
state1 is state0 shifted by one frame to frame `idx`; a window never reaches back across an
episode start (those frames are zeros), and a row whose frame is the previous episode's last
(the extra frame keras-rl2's fit appends after `done`) is never sampled as a state0.

Sampling differs on purpose: indices are drawn *with* replacement, from the memory's own
`np.random.Generator` seeded by `seed`, so sampling is reproducible and independent of
Python's and NumPy's global RNGs (keras-rl2 draws without replacement from `random`).

The arrays are allocated with `np.zeros` on the first stored transition: the OS maps untouched
pages lazily, so resident memory grows with the filled part, not with `limit`.
Memory per transition: the frame's bytes (7056 for 84x84) + 9 (int32 action, float32 reward,
bool terminal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from invaders.compat import load_rl

rl = load_rl()


class ReplayMemory(rl.Memory):
    """keras-rl2's `Memory` interface over uint8 ring buffers; see the module docstring."""

    def __init__(self, limit: int, window_length: int, seed: int = 0, ignore_episode_boundaries: bool = False):
        if limit < window_length:
            raise ValueError(f"limit ({limit}) must be at least window_length ({window_length})")
        super().__init__(window_length=window_length, ignore_episode_boundaries=ignore_episode_boundaries)
        self.limit = limit
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._frames: np.ndarray | None = None  # allocated on the first stored transition
        self._actions = np.zeros(limit, np.int32)
        self._rewards = np.zeros(limit, np.float32)
        self._terminals = np.zeros(limit, bool)
        self._next = 0  # the row the next transition is written to
        self._size = 0

    # --- storing -------------------------------------------------------------------------

    def append(self, observation, action, reward, terminal, training=True):
        # The recent window (deques in the base class) always advances; the memory only in training.
        super().append(observation, action, reward, terminal, training=training)
        if not training:
            return
        frame = _as_frame(observation)
        if self._frames is None:
            self._frames = np.zeros((self.limit, *frame.shape), np.uint8)
        self._frames[self._next] = frame
        self._actions[self._next] = action
        self._rewards[self._next] = reward
        self._terminals[self._next] = terminal
        self._next = (self._next + 1) % self.limit
        self._size = min(self._size + 1, self.limit)

    @property
    def nb_entries(self) -> int:
        return self._size

    def nbytes(self) -> int:
        """Bytes held by the buffers (once filled; untouched pages are not resident)."""
        frames = 0 if self._frames is None else self._frames.nbytes
        return frames + self._actions.nbytes + self._rewards.nbytes + self._terminals.nbytes

    # --- the agent's current state -------------------------------------------------------

    def get_recent_state(self, current_observation) -> np.ndarray:
        """The window ending at `current_observation`, as one uint8 array (window, *frame).

        SequentialMemory's rule: walk back through the recently appended observations and stop
        at the first one that ended an episode (its predecessor's `terminal` is set).
        """
        current = _as_frame(current_observation)
        state = np.zeros((self.window_length, *current.shape), np.uint8)
        state[-1] = current
        n = len(self.recent_observations)
        for back in range(1, self.window_length):
            i = n - back
            if i < 0:
                break
            if not self.ignore_episode_boundaries and i >= 1 and self.recent_terminals[i - 1]:
                break
            state[-1 - back] = self.recent_observations[i]
        return state

    # --- sampling ------------------------------------------------------------------------

    def sample_batch(self, batch_size: int):
        """One training batch as arrays: (state0 uint8, action int32, reward float32,
        state1 uint8, not_terminal float32), states shaped (batch, window, *frame)."""
        return self._windows(self._draw(batch_size))

    def sample(self, batch_size, batch_idxs=None):
        """keras-rl2's interface: a list of `Experience`s.

        `batch_idxs` are keras-rl2's (drawn from [window_length, nb_entries - 1), the row is
        `idx + 1`); rows that cannot start a transition are redrawn as keras-rl2 does. Without
        them this draws exactly what `sample_batch` would.
        """
        if batch_idxs is None:
            rows = self._draw(batch_size)
        else:
            rows = np.asarray(batch_idxs, dtype=np.int64) + 1
            if len(rows) and (rows.min() < self.window_length + 1 or rows.max() >= self._size):
                raise ValueError(f"batch_idxs must lie in [{self.window_length}, {self._size - 1})")
            rows = self._redraw_invalid(rows)
        state0, action, reward, state1, not_terminal = self._windows(rows)
        return [
            rl.Experience(state0=state0[i], action=int(action[i]), reward=float(reward[i]), state1=state1[i],
                          terminal1=bool(not_terminal[i] == 0.0))
            for i in range(len(rows))
        ]

    def _draw(self, batch_size: int) -> np.ndarray:
        """Row indices (keras-rl2's 1-based `idx`), uniform over rows that start a transition."""
        self._check_enough()
        rows = self._rng.integers(self.window_length + 1, self._size, size=batch_size)
        return self._redraw_invalid(rows)

    def _redraw_invalid(self, rows: np.ndarray) -> np.ndarray:
        # Row idx - 1 holds the previous episode's last frame when row idx - 2 is terminal: redraw.
        self._check_enough()
        rows = rows.copy()
        for _ in range(1000):
            bad = self._terminals[self._physical(rows - 2)]
            if not bad.any():
                return rows
            rows[bad] = self._rng.integers(self.window_length + 1, self._size, size=int(bad.sum()))
        raise RuntimeError("replay memory: no row starts a valid transition (every transition is terminal)")

    def _check_enough(self) -> None:
        if self._size < self.window_length + 2:
            raise ValueError(f"replay memory holds {self._size} transitions; sampling needs at least"
                             f" window_length + 2 = {self.window_length + 2}")

    def _physical(self, logical: np.ndarray) -> np.ndarray:
        """Ring position of a logical row (0 = the oldest stored)."""
        return (self._next - self._size + logical) % self.limit

    def _windows(self, rows: np.ndarray):
        w = self.window_length
        # Logical rows rows - w ... rows: state0 is columns 0..w-1, state1 columns 1..w.
        span = rows[:, None] + np.arange(-w, 1)
        phys = self._physical(span)
        keep = np.ones(span.shape, bool)
        if not self.ignore_episode_boundaries:
            # Column j < w - 1 (an older frame of state0) is kept only if no frame from j to the
            # newest of state0 starts an episode, i.e. no terminal among rows span[j..w-2] - 1.
            starts = self._terminals[self._physical(span[:, : w - 1] - 1)]
            keep[:, : w - 1] = ~np.flip(np.logical_or.accumulate(np.flip(starts, 1), axis=1), 1)
        frames = self._frames[phys]  # (batch, w + 1, *frame)
        frames[~keep] = 0
        last = phys[:, w - 1]
        not_terminal = (~self._terminals[last]).astype(np.float32)
        return (np.ascontiguousarray(frames[:, :w]), self._actions[last], self._rewards[last],
                np.ascontiguousarray(frames[:, 1:]), not_terminal)

    # --- config and checkpoints ----------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(limit=self.limit, seed=self.seed)
        return config

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to restore this memory bit-exactly, as arrays `np.savez` can store.

        The buffers are views of the filled part, not copies: save them before the memory changes.
        """
        filled = slice(0, self._size)
        frame_shape = () if self._frames is None else self._frames.shape[1:]
        recent = list(self.recent_observations)
        if recent:
            frame_shape = frame_shape or np.shape(recent[0])
        return {
            "limit": np.array(self.limit),
            "window_length": np.array(self.window_length),
            "frame_shape": np.array(frame_shape, dtype=np.int64),
            "frames": self._frames[filled] if self._frames is not None else np.zeros((0, *frame_shape), np.uint8),
            "actions": self._actions[filled],
            "rewards": self._rewards[filled],
            "terminals": self._terminals[filled],
            "next": np.array(self._next),
            "size": np.array(self._size),
            "recent_observations": np.array([_as_frame(o) for o in recent], np.uint8).reshape(
                len(recent), *frame_shape),
            "recent_terminals": np.array(list(self.recent_terminals), bool),
            "rng": np.array(json.dumps(self._rng.bit_generator.state)),
        }

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `get_state` returned (for a memory with the same limit and window)."""
        for key, mine in (("limit", self.limit), ("window_length", self.window_length)):
            if int(state[key]) != mine:
                raise ValueError(f"replay memory state has {key} {int(state[key])}, this memory {mine}")
        size = int(state["size"])
        frame_shape = tuple(int(n) for n in state["frame_shape"])
        self._frames = np.zeros((self.limit, *frame_shape), np.uint8) if size else None
        if size:
            self._frames[:size] = state["frames"]
        for name in ("actions", "rewards", "terminals"):
            buffer = getattr(self, f"_{name}")
            buffer[:] = 0
            buffer[:size] = state[name]
        self._next, self._size = int(state["next"]), size
        self.recent_observations.clear()
        self.recent_terminals.clear()
        for observation, terminal in zip(state["recent_observations"], state["recent_terminals"]):
            self.recent_observations.append(observation.copy())
            self.recent_terminals.append(bool(terminal))
        self._rng.bit_generator.state = json.loads(str(state["rng"]))


def _as_frame(observation) -> np.ndarray:
    frame = np.asarray(observation)
    if frame.dtype != np.uint8:
        raise TypeError(f"replay memory stores uint8 frames, got {frame.dtype}")
    return frame
