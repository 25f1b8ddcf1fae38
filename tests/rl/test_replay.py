import io

import numpy as np
import pytest

from invaders.compat.keras_rl2 import load_rl
from invaders.rl.replay import PrioritizedReplayMemory, ReplayMemory

pytestmark = pytest.mark.unit

FRAME = (3, 5)


def _episodes(n_steps: int, seed: int):
    """What keras-rl2's fit appends: (observation, action, reward, terminal, training) per call.

    Episodes of 1 to 7 steps (shorter and longer than the window); after each `done` the fit
    loop appends the episode's last observation once more with terminal=False.
    """
    rng = np.random.default_rng(seed)
    out, t = [], 0
    while len(out) < n_steps:
        length = int(rng.integers(1, 8))
        for step in range(length):
            t += 1
            frame = np.full(FRAME, t % 251 + 1, np.uint8)  # never zero: zero-filled frames stand out
            frame[0, 0] = rng.integers(256)
            out.append((frame, int(rng.integers(6)), float(rng.integers(-1, 2)), step == length - 1))
        t += 1
        out.append((np.full(FRAME, t % 251 + 1, np.uint8), int(rng.integers(6)), 0.0, False))
    return out[:n_steps]


def _filled(n_steps: int, limit: int, window: int = 4, seed: int = 0):
    rl = load_rl()
    ours = ReplayMemory(limit, window_length=window, seed=seed)
    theirs = rl.SequentialMemory(limit=limit, window_length=window)
    for obs, action, reward, terminal in _episodes(n_steps, seed):
        ours.append(obs, action, reward, terminal)
        theirs.append(obs, action, reward, terminal)
    return ours, theirs


def _valid_idxs(memory) -> list[int]:
    """keras-rl2's batch_idxs whose row starts a transition (it would redraw the others at random)."""
    terminals = list(memory.terminals)
    return [i for i in range(memory.window_length, memory.nb_entries - 1) if not terminals[i - 1]]


@pytest.mark.parametrize("n_steps, limit, window", [(150, 1000, 4), (700, 256, 4), (300, 64, 1), (300, 97, 3)])
def test_transitions_equal_sequential_memorys(n_steps, limit, window):
    ours, theirs = _filled(n_steps, limit, window)
    assert ours.nb_entries == theirs.nb_entries == min(n_steps, limit)
    idxs = _valid_idxs(theirs)
    assert len(idxs) > ours.nb_entries // 2
    mine, ref = ours.sample(len(idxs), batch_idxs=idxs), theirs.sample(len(idxs), batch_idxs=idxs)
    zero_filled = 0
    for a, b in zip(mine, ref):
        np.testing.assert_array_equal(a.state0, np.asarray(b.state0, np.uint8))
        np.testing.assert_array_equal(a.state1, np.asarray(b.state1, np.uint8))
        assert (a.action, a.reward, a.terminal1) == (b.action, b.reward, b.terminal1)
        zero_filled += int((a.state0 == 0).all(axis=(1, 2)).any())
    assert window == 1 or zero_filled > 0  # windows across episode starts were exercised
    assert any(e.terminal1 for e in mine) and not all(e.terminal1 for e in mine)


def test_sample_batch_is_sample_as_arrays_and_draws_only_valid_rows():
    ours, theirs = _filled(700, 256)
    twin, _ = _filled(700, 256)
    state0, action, reward, state1, discount, _, _ = ours.sample_batch(500)
    experiences = twin.sample(500)  # the same seed draws the same rows
    assert (state0.dtype, action.dtype, reward.dtype, state1.dtype, discount.dtype) == (
        np.uint8, np.int32, np.float32, np.uint8, np.float32)
    assert state0.shape == state1.shape == (500, 4, *FRAME)
    np.testing.assert_array_equal(state0, [e.state0 for e in experiences])
    np.testing.assert_array_equal(state1, [e.state1 for e in experiences])
    np.testing.assert_array_equal(action, [e.action for e in experiences])
    np.testing.assert_array_equal(reward, [e.reward for e in experiences])
    np.testing.assert_array_equal(discount, np.float32([0.0 if e.terminal1 else 0.99 for e in experiences]))
    # Every drawn transition is one of keras-rl2's: compare with the reference by content.
    reference = {e.state0.tobytes() + np.asarray(e.state1, np.uint8).tobytes()
                 for e in theirs.sample(len(_valid_idxs(theirs)), batch_idxs=_valid_idxs(theirs))
                 for e in [e._replace(state0=np.asarray(e.state0, np.uint8))]}
    assert all(s0.tobytes() + s1.tobytes() in reference for s0, s1 in zip(state0, state1))


def test_sampling_uses_its_own_seeded_generator():
    first = _filled(300, 1000, seed=3)[0]
    second = _filled(300, 1000, seed=3)[0]
    other = _filled(300, 1000, seed=4)[0]
    np.random.seed(1)
    a = first.sample_batch(32)[0]
    np.random.seed(2)  # the global RNG does not matter
    b = second.sample_batch(32)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.sample_batch(32)[0], other.sample_batch(32)[0])


def test_recent_state_equals_sequential_memorys():
    rl = load_rl()
    ours = ReplayMemory(50, window_length=4)
    theirs = rl.SequentialMemory(limit=50, window_length=4)
    checked = 0
    for i, (obs, action, reward, terminal) in enumerate(_episodes(200, seed=1)):
        current = np.full(FRAME, 255, np.uint8)
        np.testing.assert_array_equal(ours.get_recent_state(current),
                                      np.asarray(theirs.get_recent_state(current), np.uint8))
        checked += 1
        training = i % 50 < 40  # test-mode appends move the window but store nothing
        ours.append(obs, action, reward, terminal, training=training)
        theirs.append(obs, action, reward, terminal, training=training)
    assert ours.nb_entries == theirs.nb_entries
    assert checked == 200


def test_state_round_trips_through_savez_bit_exactly():
    memory, _ = _filled(700, 256)
    memory.sample_batch(32)  # move the generator off its seed
    buffer = io.BytesIO()
    np.savez(buffer, **memory.get_state())
    buffer.seek(0)
    restored = ReplayMemory(256, window_length=4, seed=99)  # a different seed: the state must win
    with np.load(buffer, allow_pickle=False) as saved:
        restored.set_state(dict(saved))
    current = np.full(FRAME, 7, np.uint8)
    np.testing.assert_array_equal(restored.get_recent_state(current), memory.get_recent_state(current))
    for a, b in zip(restored.sample_batch(64), memory.sample_batch(64)):
        np.testing.assert_array_equal(a, b)
    # Writing continues at the same ring position.
    for obs, action, reward, terminal in _episodes(100, seed=5):
        memory.append(obs, action, reward, terminal)
        restored.append(obs, action, reward, terminal)
    for a, b in zip(restored.sample_batch(64), memory.sample_batch(64)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="limit"):
        ReplayMemory(128, window_length=4).set_state(memory.get_state())


def test_empty_state_round_trips():
    memory = ReplayMemory(10, window_length=2)
    restored = ReplayMemory(10, window_length=2)
    restored.set_state(memory.get_state())
    assert restored.nb_entries == 0
    np.testing.assert_array_equal(restored.get_recent_state(np.ones(FRAME, np.uint8))[0], np.zeros(FRAME))


def test_one_frame_per_transition():
    memory = ReplayMemory(1000, window_length=4)
    memory.append(np.zeros((84, 84), np.uint8), 0, 0.0, False)
    assert memory.nbytes() / 1000 == 84 * 84 + 9
    with pytest.raises(TypeError, match="uint8"):
        memory.append(np.zeros((84, 84), np.float32), 0, 0.0, False)
    with pytest.raises(ValueError, match="at least"):
        memory.sample_batch(4)


def _numbered(limit: int, window: int, memory_class=ReplayMemory, **kwargs):
    """15 transitions whose frames and rewards are their number t; t = 8 ends an episode, t = 9 is
    the repeated last frame keras-rl2's fit appends, t = 10 starts the next episode. With
    limit 11 the ring has wrapped: t = 12 ... 15 overwrote t = 1 ... 4."""
    memory = memory_class(limit, window_length=window, seed=0, **kwargs)
    for t in range(1, 16):
        memory.append(np.full((2, 2), t, np.uint8), t % 6, float(t), t == 8)
    return memory


def test_n_step_returns_cross_an_episode_end_and_the_ring_wrap():
    memory = _numbered(11, 2, n_step=3, gamma=0.5)
    # Stored: t = 5 ... 15 (logical rows 0 ... 10). Rows that start a 3-step transition: t = 7 ... 12
    # (two frames of window behind them, three rows ahead), except t = 9, the repeated frame.
    expected = {  # t: (state0 frames, reward, state1 frames or None where the episode ended)
        7: ([6, 7], 7 + 0.5 * 8, None),  # cut after t = 8's terminal reward
        8: ([7, 8], 8.0, None),
        10: ([0, 10], 10 + 0.5 * 11 + 0.25 * 12, [12, 13]),  # t = 9 belongs to the ended episode; t = 12, 13 wrapped
        11: ([10, 11], 11 + 0.5 * 12 + 0.25 * 13, [13, 14]),
        12: ([11, 12], 12 + 0.5 * 13 + 0.25 * 14, [14, 15]),
    }
    idxs = [t - 5 for t in expected]  # keras-rl2's batch_idxs: the logical row
    for t, e in zip(expected, memory.sample(len(idxs), batch_idxs=idxs)):
        state0, reward, state1 = expected[t]
        assert [int(f[0, 0]) for f in e.state0] == state0, t
        assert e.reward == reward, t
        assert e.action == t % 6
        assert e.terminal1 == (state1 is None), t
        if state1 is not None:
            assert [int(f[0, 0]) for f in e.state1] == state1, t
    assert len(idxs) == 5
    # Uniform draws only ever pick those rows.
    batch = memory.sample_batch(2000)
    drawn = batch.state0[:, -1, 0, 0]
    assert set(drawn.tolist()) == set(expected)
    # The bootstrap discount is gamma ** 3 (0 where the episode ended within the three rewards).
    ended = np.array([expected[t][2] is None for t in drawn.tolist()])
    np.testing.assert_array_equal(batch.discount, np.where(ended, np.float32(0), np.float32(0.125)))
    with pytest.raises(ValueError, match="batch_idxs"):
        memory.sample(1, batch_idxs=[13 - 5])  # t = 13 has no frame three steps on yet


def test_one_step_returns_are_the_stored_rewards():
    memory = _numbered(11, 2)
    batch = memory.sample_batch(500)
    t = batch.state0[:, -1, 0, 0].astype(np.float32)
    np.testing.assert_array_equal(batch.reward, t)
    np.testing.assert_array_equal(batch.discount, np.where(t != 8, np.float32(0.99), np.float32(0)))
    np.testing.assert_array_equal(batch.weights, np.ones(500, np.float32))


def test_prioritized_sampling_follows_td_errors_and_weights_correct_for_it():
    memory = _numbered(11, 2, PrioritizedReplayMemory, n_step=3, gamma=0.5, alpha=0.5, beta_start=0.4,
                       epsilon=0.0)
    first = memory.sample_batch(64)
    assert set(first.state0[:, -1, 0, 0].tolist()) <= {7, 8, 10, 11, 12}
    np.testing.assert_array_equal(first.weights, np.ones(64))  # every new transition has the same priority
    # TD errors 1, 4, 9, 16, 25 for t = 7, 8, 10, 11, 12: priorities (alpha 0.5) 1, 2, 3, 4, 5.
    valid = np.array([7, 8, 10, 11, 12])
    positions = (valid - 1) % 11  # t was written to ring position t - 1 mod limit
    memory.update_priorities(positions, np.array([1.0, 4.0, 9.0, 16.0, 25.0]))
    draws = np.concatenate([memory.sample_batch(32).state0[:, -1, 0, 0] for _ in range(500)])
    share = np.array([(draws == t).mean() for t in valid])
    np.testing.assert_allclose(share, np.array([1, 2, 3, 4, 5]) / 15, atol=0.015)
    for progress, beta in ((0.0, 0.4), (0.5, 0.7), (1.0, 1.0), (3.0, 1.0)):
        batch = memory.sample_batch(32, progress=progress)
        p = batch.state0[:, -1, 0, 0].astype(np.float64)
        priority = np.select([p == t for t in valid], [1.0, 2.0, 3.0, 4.0, 5.0])
        np.testing.assert_allclose(batch.weights, (priority / priority.min()) ** -beta, rtol=1e-6)
        assert batch.weights.max() == 1.0
    # A new transition gets the largest priority so far (5), the repeated frame after an episode end 0.
    memory.append(np.full((2, 2), 16, np.uint8), 0, 16.0, True)
    memory.append(np.full((2, 2), 17, np.uint8), 0, 0.0, False)
    leaves = memory._tree.leaves
    assert leaves[15 % 11] == 5.0 and leaves[16 % 11] == 0.0


def test_prioritized_state_round_trips_bit_exactly():
    per = PrioritizedReplayMemory(256, window_length=4, seed=1, n_step=3, gamma=0.9)
    for obs, action, reward, terminal in _episodes(700, seed=0):
        per.append(obs, action, reward, terminal)
    batch = per.sample_batch(32, progress=0.3)
    per.update_priorities(batch.positions, np.linspace(0.0, 3.0, 32))
    buffer = io.BytesIO()
    np.savez(buffer, **per.get_state())
    buffer.seek(0)
    restored = PrioritizedReplayMemory(256, window_length=4, seed=99, n_step=3, gamma=0.9)
    with np.load(buffer, allow_pickle=False) as saved:
        restored.set_state(dict(saved))
    np.testing.assert_array_equal(restored._tree._tree, per._tree._tree)
    for a, b in zip(restored.sample_batch(64, 0.5), per.sample_batch(64, 0.5)):
        np.testing.assert_array_equal(a, b)
    for obs, action, reward, terminal in _episodes(50, seed=5):
        per.append(obs, action, reward, terminal)
        restored.append(obs, action, reward, terminal)
    for a, b in zip(restored.sample_batch(64, 0.9), per.sample_batch(64, 0.9)):
        np.testing.assert_array_equal(a, b)



@pytest.mark.parametrize("memory_class", [ReplayMemory, PrioritizedReplayMemory])
def test_shift_augments_the_sampled_states_only_and_is_a_pure_function_of_the_seed(memory_class):
    from invaders.rl.augment import random_shift

    def filled(augment):
        memory = memory_class(500, window_length=4, seed=5, n_step=3, augment=augment)
        for obs, action, reward, terminal in _episodes(300, 0):
            memory.append(np.repeat(np.repeat(obs, 12, 0), 12, 1), action, reward, terminal)  # 36x60 frames
        return memory

    plain, shifted, again = filled("none"), filled("shift"), filled("shift")
    stored = plain._frames.copy()
    before = plain._rng.bit_generator.state
    p, s = plain.sample_batch(16, 0.5), shifted.sample_batch(16, 0.5)
    for name in ("action", "reward", "discount", "weights", "positions"):  # the same rows
        np.testing.assert_array_equal(getattr(s, name), getattr(p, name))
    # After drawing the rows, state0's offsets then state1's come from the memory's own generator.
    rng = np.random.default_rng()
    rng.bit_generator.state = before
    plain._rng.bit_generator.state = before
    plain._draw(16)
    rng.bit_generator.state = plain._rng.bit_generator.state
    for name in ("state0", "state1"):
        assert getattr(s, name).shape == getattr(p, name).shape and getattr(s, name).dtype == np.uint8
        np.testing.assert_array_equal(getattr(s, name), random_shift(getattr(p, name), rng))
        assert not np.array_equal(getattr(s, name), getattr(p, name))
    np.testing.assert_array_equal(plain._frames, stored)  # the memory keeps its frames as they were
    batches = [s] + [shifted.sample_batch(16, 0.5) for _ in range(2)]
    for batch in batches:  # the same seed, the same batches
        for x, y in zip(again.sample_batch(16, 0.5), batch):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="augment must be none or shift"):
        ReplayMemory(100, 4, augment="crop")
