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
for a sampled row index `idx` (1-based as keras-rl2 counts, see `_transitions`),
state0 is the window ending at frame `idx - 1`, action/reward/terminal1 are row `idx - 1`'s,
state1 is state0 shifted by one frame to frame `idx`; a window never reaches back across an
episode start (those frames are zeros), and a row whose frame is the previous episode's last
(the extra frame keras-rl2's fit appends after `done`) is never sampled as a state0.

With `n_step` > 1 a transition's reward is the discounted sum of the next n rewards and state1
is the state n steps later, both cut at the first terminal row (multi-step returns, as in Rainbow).
Each transition carries the discount its bootstrap is taken with: gamma ** n, or 0 where the
episode ended within those n rewards, so a gradient step needs neither gamma nor n.

Sampling differs on purpose: indices are drawn *with* replacement, from the memory's own
`np.random.Generator` seeded by `seed`, so sampling is reproducible and independent of
Python's and NumPy's global RNGs (keras-rl2 draws without replacement from `random`).

The arrays are allocated with `np.zeros` on the first stored transition: the OS maps untouched
pages lazily, so resident memory grows with the filled part, not with `limit`.
With `augment="shift"` every batch `sample_batch` returns has its states randomly shifted
(`augment.random_shift`, state0 then state1, from the same generator, after the rows are drawn);
the stored frames and keras-rl2's `sample` never are.

Memory per transition: the frame's bytes (7056 for 84x84) + 9 (int32 action, float32 reward,
bool terminal).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from invaders.compat.keras_rl2 import load_rl
from invaders.rl.augment import random_shift
from invaders.rl.sumtree import SumTree

rl = load_rl()


class Batch(NamedTuple):
    """One training batch: states shaped (batch, window, *frame)."""

    state0: np.ndarray  # uint8
    action: np.ndarray  # int32
    reward: np.ndarray  # float32: the discounted sum of up to n_step rewards
    state1: np.ndarray  # uint8: the state n_step steps later (any state where discount is 0)
    discount: np.ndarray  # float32: gamma ** n_step, 0 where an episode ended within the n_step rewards
    weights: np.ndarray  # float32 importance-sampling weights (all 1 for uniform sampling)
    positions: np.ndarray  # ring positions of the rows, for `update_priorities`


class ReplayMemory(rl.Memory):
    """keras-rl2's `Memory` interface over uint8 ring buffers; see the module docstring."""

    def __init__(self, limit: int, window_length: int, seed: int = 0, n_step: int = 1, gamma: float = 0.99,
                 augment: str = "none"):
        if augment not in ("none", "shift"):
            raise ValueError(f"augment must be none or shift, not {augment!r}")
        if limit < window_length + n_step + 2:
            raise ValueError(f"limit ({limit}) must be at least window_length + n_step + 2"
                             f" ({window_length + n_step + 2})")
        super().__init__(window_length=window_length)
        self.limit = limit
        self.seed = seed
        self.n_step = n_step
        self.augment = augment
        self._discounts = np.array([gamma ** k for k in range(n_step)], np.float64)  # libm: see _power
        # The bootstrap's discount, rounded to float32 as the gradient step's arithmetic is.
        self._bootstrap = np.float32(gamma ** n_step)
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
            if i >= 1 and self.recent_terminals[i - 1]:
                break
            state[-1 - back] = self.recent_observations[i]
        return state

    # --- sampling ------------------------------------------------------------------------

    def sample_batch(self, batch_size: int, progress: float = 0.0) -> Batch:
        """One training batch. `progress` (the fraction of training done) anneals prioritized
        replay's importance sampling; uniform sampling ignores it."""
        rows = self._draw(batch_size)
        state0, action, reward, state1, discount = self._transitions(rows)
        if self.augment == "shift":
            state0, state1 = random_shift(state0, self._rng), random_shift(state1, self._rng)
        return Batch(state0, action, reward, state1, discount, self._weights(rows, progress), self._physical(rows - 1))

    def _weights(self, rows: np.ndarray, progress: float) -> np.ndarray:
        return np.ones(len(rows), np.float32)

    def update_priorities(self, positions: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform sampling has no priorities; `PrioritizedReplayMemory` sets them from TD errors."""

    def sample(self, batch_size, batch_idxs=None):
        """keras-rl2's interface: a list of `Experience`s.

        `batch_idxs` are keras-rl2's (drawn from [window_length, nb_entries - n_step), the row is
        `idx + 1`); rows that cannot start a transition are redrawn as keras-rl2 does. Without
        them this draws exactly what `sample_batch` would.
        """
        if batch_idxs is None:
            rows = self._draw(batch_size)
        else:
            rows = np.asarray(batch_idxs, dtype=np.int64) + 1
            if len(rows) and (rows.min() < self.window_length + 1 or rows.max() > self._size - self.n_step):
                raise ValueError(f"batch_idxs must lie in [{self.window_length}, {self._size - self.n_step})")
            rows = self._redraw_invalid(rows)
        state0, action, reward, state1, discount = self._transitions(rows)
        return [
            rl.Experience(state0=state0[i], action=int(action[i]), reward=float(reward[i]), state1=state1[i],
                          terminal1=bool(discount[i] == 0.0))  # gamma > 0: only an ended episode has 0
            for i in range(len(rows))
        ]

    def _draw(self, batch_size: int) -> np.ndarray:
        """Row indices (keras-rl2's 1-based `idx`), uniform over rows that start a transition."""
        self._check_enough()
        return self._redraw_invalid(self._draw_rows(batch_size))

    def _draw_rows(self, n: int) -> np.ndarray:
        """`n` rows by this memory's sampling rule (uniform), before they are checked."""
        # The newest n_step rows have no n-step successor yet.
        return self._rng.integers(self.window_length + 1, self._size - self.n_step + 1, size=n)

    def _invalid(self, rows: np.ndarray) -> np.ndarray:
        # Row idx - 1 holds the previous episode's last frame when row idx - 2 is terminal.
        return self._terminals[self._physical(rows - 2)]

    def _redraw_invalid(self, rows: np.ndarray) -> np.ndarray:
        self._check_enough()
        rows = rows.copy()
        for _ in range(1000):
            bad = self._invalid(rows)
            if not bad.any():
                return rows
            rows[bad] = self._draw_rows(int(bad.sum()))
        raise RuntimeError("replay memory: no row starts a valid transition (every transition is terminal)")

    def _check_enough(self) -> None:
        least = self.window_length + self.n_step + 1
        if self._size < least:
            raise ValueError(f"replay memory holds {self._size} transitions; sampling needs at least"
                             f" window_length + n_step + 1 = {least}")

    def _physical(self, logical: np.ndarray) -> np.ndarray:
        """Ring position of a logical row (0 = the oldest stored)."""
        return (self._next - self._size + logical) % self.limit

    def _window(self, last: np.ndarray) -> np.ndarray:
        """The stacked states whose newest frame is logical row `last`: (batch, window, *frame).

        SequentialMemory's rule: an older frame f is zero if an episode starts after it, i.e. a
        row in f - 1 ... last - 2 is terminal (the row after a terminal one holds the ended
        episode's last frame again, so the first frame of the next episode is two rows on).
        """
        w = self.window_length
        span = last[:, None] + np.arange(1 - w, 1)
        frames = self._frames[self._physical(span)]  # a copy: zeroing it leaves the memory alone
        if w > 1:
            # Column j < w - 1 is kept only if no terminal among rows span[j] - 1 ... last - 2.
            ends = self._terminals[self._physical(span[:, : w - 1] - 1)]
            dropped = np.flip(np.logical_or.accumulate(np.flip(ends, 1), axis=1), 1)
            frames[:, : w - 1][dropped] = 0
        return frames

    def _transitions(self, rows: np.ndarray):
        """(state0, action, n-step reward, state1, discount) for keras-rl2 row indices `rows`.

        The transition is logical row r = idx - 1: its reward is the discounted sum of the rewards
        of rows r ... r + n - 1, cut after the first terminal one; state1 is the window ending at
        frame r + n, or, if the episode ended at row r + k, at r + k + 1 (unused: its discount is 0).
        """
        r = rows - 1
        steps = r[:, None] + np.arange(self.n_step)
        terminal = self._terminals[self._physical(steps)]
        ended = np.logical_or.accumulate(terminal, axis=1)  # an episode ended at or before this step
        counted = np.ones_like(ended)
        counted[:, 1:] = ~ended[:, :-1]
        reward = (self._rewards[self._physical(steps)] * counted) @ self._discounts
        not_terminal = ~ended[:, -1]
        ahead = np.where(not_terminal, self.n_step, np.argmax(terminal, axis=1) + 1)
        # float32(gamma ** n) times 1 or 0: exact, so `reward + discount * next_q` rounds as
        # `reward + gamma ** n * next_q * not_terminal` did.
        discount = self._bootstrap * not_terminal.astype(np.float32)
        return (self._window(r), self._actions[self._physical(r)], reward.astype(np.float32),
                self._window(r + ahead), discount)

    # --- config and checkpoints ----------------------------------------------------------

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


class PrioritizedReplayMemory(ReplayMemory):
    """Proportional prioritized experience replay (Schaul et al. 2016) over `ReplayMemory`.

    Each ring position has a priority in a `SumTree`; a batch is drawn in proportion to them
    (stratified), with importance-sampling weights (N P(i))^-beta normalised by the batch's
    largest, beta rising linearly from `beta_start` to 1 over training. A new transition gets
    the largest priority seen so far; the gradient step's TD errors set (|delta| + epsilon)^alpha.
    Rows that cannot start a transition (an episode's repeated last frame, the newest n_step
    rows, the oldest window) are redrawn from the tree, like the uniform memory redraws them.
    """

    def __init__(self, limit: int, window_length: int, seed: int = 0, n_step: int = 1, gamma: float = 0.99,
                 augment: str = "none", alpha: float = 0.5, beta_start: float = 0.4, epsilon: float = 1e-6):
        super().__init__(limit, window_length, seed=seed, n_step=n_step, gamma=gamma, augment=augment)
        self.alpha, self.beta_start, self.epsilon = alpha, beta_start, epsilon
        self._tree = SumTree(limit)
        self._max_priority = 1.0

    def append(self, observation, action, reward, terminal, training=True):
        position = self._next
        follows_terminal = self._size > 0 and self._terminals[(position - 1) % self.limit]
        super().append(observation, action, reward, terminal, training=training)
        if training:  # an episode's repeated last frame never starts a transition: priority 0
            self._tree.set_one(position, 0.0 if follows_terminal else self._max_priority)

    def _draw(self, batch_size: int) -> np.ndarray:
        self._check_enough()
        return self._redraw_invalid(self._rows(self._tree.sample(self._rng, batch_size)))  # stratified

    def _draw_rows(self, n: int) -> np.ndarray:
        return self._rows(self._tree.find(self._rng.random(n) * self._tree.total))

    def _weights(self, rows: np.ndarray, progress: float) -> np.ndarray:
        beta = self.beta_start + (1.0 - self.beta_start) * min(max(progress, 0.0), 1.0)
        p = self._tree.leaves[self._physical(rows - 1)]
        return _power(p / p.min(), -beta).astype(np.float32)  # (N P(i))^-beta / max_j (N P(j))^-beta

    def update_priorities(self, positions: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = _power(np.abs(np.asarray(td_errors, np.float64)) + self.epsilon, self.alpha)
        self._tree.set(positions, priorities)
        self._max_priority = max(self._max_priority, float(priorities.max()))

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """keras-rl2 row indices (1-based logical) of ring positions."""
        return (positions - (self._next - self._size)) % self.limit + 1

    def _invalid(self, rows: np.ndarray) -> np.ndarray:
        outside = (rows < self.window_length + 1) | (rows > self._size - self.n_step)
        return outside | super()._invalid(rows)

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "priorities": self._tree.leaves[: self._size],
                "max_priority": np.array(self._max_priority)}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        super().set_state(state)
        self._tree.load(state["priorities"])
        self._max_priority = float(state["max_priority"])


def _as_frame(observation) -> np.ndarray:
    frame = np.asarray(observation)
    if frame.dtype != np.uint8:
        raise TypeError(f"replay memory stores uint8 frames, got {frame.dtype}")
    return frame


def _power(base: np.ndarray, exponent: float) -> np.ndarray:
    """`base ** exponent` element by element through the C library's pow, the same on every x86-64 CPU.

    NumPy's own float64 `power` takes another code path on CPUs with AVX-512, whose last bits differ
    (measured): priorities and importance weights would then depend on the CPU. A batch is 32 values.
    """
    return np.fromiter((math.pow(b, exponent) for b in base.ravel()), np.float64, base.size).reshape(base.shape)
