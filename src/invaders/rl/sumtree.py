"""A sum tree in NumPy: proportional sampling and batched priority updates in O(log n) per item.

The tree is one float64 array: leaves at `[size, size + capacity)` (size = capacity rounded up
to a power of two), node i holds the sum of nodes 2i and 2i+1, the root (node 1) the total.
A parent is always recomputed from its two children, never adjusted by a difference, so the
tree is a pure function of its leaves: no rounding drift, and restoring the leaves restores the
tree bit for bit. Updates and sampling work on whole batches, one NumPy operation per level.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._size = 1 << max(capacity - 1, 1).bit_length()
        self._tree = np.zeros(2 * self._size, np.float64)

    @property
    def total(self) -> float:
        return float(self._tree[1])

    @property
    def leaves(self) -> np.ndarray:
        """The priorities, one per position (a read-only view)."""
        view = self._tree[self._size:self._size + self.capacity]
        view.flags.writeable = False
        return view

    def set(self, positions: np.ndarray, priorities: np.ndarray) -> None:
        """Set the leaves at `positions` (a repeated position takes its last priority) and their sums."""
        nodes = np.asarray(positions, np.int64) + self._size
        self._tree[nodes] = priorities
        nodes = np.unique(nodes >> 1)
        while nodes[0] >= 1:
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]
            nodes = np.unique(nodes >> 1)

    def set_one(self, position: int, priority: float) -> None:
        """`set` for one leaf, without NumPy's per-call overhead (once per stored transition)."""
        tree, node = self._tree, position + self._size
        tree[node] = priority
        node >>= 1
        while node:
            tree[node] = tree[2 * node] + tree[2 * node + 1]
            node >>= 1

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each value in [0, total), the position whose prefix-sum interval contains it."""
        tree = self._tree
        nodes = np.ones(len(mass), np.int64)
        mass = np.asarray(mass, np.float64).copy()
        while nodes[0] < self._size:  # every node is on the same level
            left = 2 * nodes
            go_right = mass >= tree[left]
            mass -= np.where(go_right, tree[left], 0.0)
            nodes = left + go_right
        positions = nodes - self._size
        # Rounding can walk past the last positive leaf into zero ones: step back to it.
        return np.minimum(positions, self.capacity - 1)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` positions drawn in proportion to their priorities, one from each of `n` equal
        slices of the total (stratified, as in Schaul et al. 2016)."""
        if self.total <= 0:
            raise ValueError("sum tree: every priority is zero")
        mass = (np.arange(n) + rng.random(n)) * (self.total / n)
        return self.find(np.minimum(mass, np.nextafter(self.total, 0)))

    def load(self, leaves: np.ndarray) -> None:
        """Replace every leaf (positions past `len(leaves)` become zero) and rebuild the sums."""
        self._tree[:] = 0.0
        self._tree[self._size:self._size + len(leaves)] = leaves
        for level in range(self._size.bit_length() - 2, -1, -1):
            lo, hi = 1 << level, 2 << level
            self._tree[lo:hi] = self._tree[2 * lo:2 * hi:2] + self._tree[2 * lo + 1:2 * hi:2]
