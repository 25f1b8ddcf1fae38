import io

import numpy as np
import pytest

from invaders.rl.sumtree import SumTree

pytestmark = pytest.mark.unit


def test_sampling_follows_the_priorities():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(rng, 32) for _ in range(2000)])
    counts = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(counts, [0.1, 0.0, 0.2, 0.3, 0.4], atol=0.01)
    assert counts[1] == 0  # a zero priority is never drawn


def test_find_walks_the_prefix_sums():
    tree = SumTree(6)  # not a power of two: padded leaves stay zero
    tree.set(np.arange(6), np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    edges = np.cumsum([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 20.99, 21.0 - 1e-12])),
                                  [0, 0, 1, 1, 2, 5, 5])
    assert tree.total == edges[-1]


def test_batched_updates_with_repeats_keep_every_sum_exact():
    rng = np.random.default_rng(1)
    tree = SumTree(1000)
    reference = np.zeros(1000)
    for _ in range(200):
        positions = rng.integers(0, 1000, 32)  # with repeats, as sampling with replacement gives
        values = rng.random(32)
        tree.set(positions, values)
        for p, v in zip(positions, values):  # the last write of a repeated position wins
            reference[p] = v
        one = int(rng.integers(1000))
        tree.set_one(one, 0.5)
        reference[one] = 0.5
    np.testing.assert_array_equal(tree.leaves, reference)
    assert tree.total == pytest.approx(reference.sum(), rel=1e-12)
    rebuilt = SumTree(1000)
    rebuilt.load(tree.leaves.copy())
    assert rebuilt.total == tree.total  # the same sums, bit for bit: parents come only from children
    np.testing.assert_array_equal(rebuilt._tree, tree._tree)


def test_round_trips_through_savez():
    tree = SumTree(300)
    tree.set(np.arange(0, 300, 3), np.linspace(0.1, 5.0, 100))
    buffer = io.BytesIO()
    np.savez(buffer, leaves=tree.leaves)
    buffer.seek(0)
    restored = SumTree(300)
    restored.load(np.load(buffer)["leaves"])
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(tree.sample(a, 64), restored.sample(b, 64))
    with pytest.raises(ValueError, match="every priority is zero"):
        SumTree(4).sample(a, 2)
