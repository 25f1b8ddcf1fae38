"""Episodes played side by side (`invaders.rl.play`): each one a function of its seed and the batch size alone."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run

from invaders.config import EnvConfig, Params
from invaders.rl import play
from invaders.rl.agent import build_agent
from invaders.rl.envs import make_env
from invaders.rl.model import build_q_network
from invaders.rl.play import batch_rows, episode_seeds, play_agent, play_episodes
from invaders.seeding import seed_everything

pytestmark = pytest.mark.unit

# Breakout's games end after 120 to 330 steps of this play and Space Invaders' after 350 or more: with
# Breakout and a cap of 200 steps, the episodes of a batch end at different times.
BREAKOUT = EnvConfig(id="ALE/Breakout-v5", max_episode_steps=200)


def _agent(n_actions: int, epsilon: float):
    """A test-mode agent around a freshly built network (the same weights in every run of the tests)."""
    seed_everything(0)
    params = Params()
    return build_agent(build_q_network(params.model, (84, 84), 4, n_actions), params, training=False,
                       test_epsilon=epsilon)


@pytest.fixture(scope="module")
def breakout_agent():
    return _agent(4, epsilon=0.3)  # both the network's choices and the ε stream's matter


@pytest.fixture(scope="module")
def invaders_agent():
    return _agent(6, epsilon=0.01)


def _trajectory(env, seed: int, actions) -> list:
    obs, _ = env.reset(seed=seed)
    steps = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        steps += [obs, reward]
        if terminated or truncated:
            break
    return steps


def test_a_seeded_reset_replays_the_episode_whatever_the_env_played_before():
    """ALE reloads the ROM and re-seeds on a seeded reset, and the no-op start is drawn from the env's re-seeded
    generator: with sticky actions and no-op starts, an episode is a function of its seed, not of the env's past."""
    cfg = EnvConfig(max_episode_steps=300)
    actions = np.random.default_rng(0).integers(0, 6, 150)
    fresh, used = make_env(cfg), make_env(cfg)
    _trajectory(used, 9, actions[::-1])
    used.step(3)  # in the middle of an episode
    first, again, other = _trajectory(fresh, 4, actions), _trajectory(used, 4, actions), _trajectory(fresh, 5, actions)
    fresh.close(), used.close()
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(first) != len(other) or any(not np.array_equal(a, b) for a, b in zip(first, other))


def positions_agree(agent, parallel: int) -> bool:
    """Whether a state gets the same Q-value bits in every row a slot plays in, the other rows random or zero."""
    group, rows = batch_rows(parallel)
    rng = np.random.default_rng(parallel)
    state = rng.integers(0, 256, (4, 84, 84), dtype=np.uint8)
    seen = []
    for position in range(group):
        shape = (rows, 4, 84, 84)
        batch = rng.integers(0, 256, shape, dtype=np.uint8) if position % 2 else np.zeros(shape, np.uint8)
        batch[position] = state
        seen.append(agent.compute_batch_q_values(batch)[position])
    return all(np.array_equal(q, seen[0]) for q in seen)


PARALLEL = (2, 3, 8, 16)
# The check in a process of its own, in portable mode (the AVX2 kernels, as the pipeline runs them) on one thread
# (playing) or `reproducibility.threads` (validation, inside training): TensorFlow fixes both at its first op.
PORTABLE = """
import json, sys
from invaders import reproducibility
from invaders.config import Params
params = Params()
reproducibility.apply(params, playing=sys.argv[1] == "playing")
sys.path[:0] = sys.argv[2:]  # this module and the conftest it imports
from test_play import PARALLEL, _agent, positions_agree
agent = _agent(6, epsilon=0.01)
print(json.dumps({n: positions_agree(agent, n) for n in PARALLEL}))
"""


def test_every_row_an_episode_plays_in_gives_the_same_q_values(invaders_agent):
    """The batched pass's rows are independent, but XLA gives a batch's last row other bits on the AVX2 path (its
    convolutions' last, partial tile falls in it): no slot plays in that row, and the others give the same bits."""
    assert [batch_rows(n) for n in (1, 2, 3, 8)] == [(1, 1), (1, 1), (2, 3), (4, 5)]
    assert all(positions_agree(invaders_agent, n) for n in PARALLEL)  # this process: native, all cores


@pytest.mark.parametrize("threads", ["playing", "training"])
def test_every_row_an_episode_plays_in_gives_the_same_q_values_in_portable_mode(threads):
    out = run([sys.executable, "-c", PORTABLE, threads, str(Path(__file__).parent), str(REPO / "tests")], REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {str(n): True for n in PARALLEL}


def test_an_episode_scores_the_same_in_every_slot_and_whenever_the_others_end(breakout_agent):
    """One seed's episode, alone in a padded batch of 4, in each of the 4 slots among episodes that end before it,
    and started in a slot another episode has freed: the same score and length every time."""
    seeds = episode_seeds(11, 4)
    first = play_episodes(breakout_agent, BREAKOUT, seeds, 4)
    lengths = [e.length for e in first]
    longest = int(np.argmax(lengths))
    assert min(lengths) < lengths[longest]  # the others end first
    target, others = seeds[longest], [s for i, s in enumerate(seeds) if i != longest]
    expected = (first[longest].reward, first[longest].length)
    alone = play_episodes(breakout_agent, BREAKOUT, [target], 4)[0]
    assert (alone.reward, alone.length) == expected
    for position in range(4):
        order = others[:position] + [target] + others[position:]
        played = play_episodes(breakout_agent, BREAKOUT, order, 4)
        assert (played[position].reward, played[position].length) == expected, position
    later = play_episodes(breakout_agent, BREAKOUT, others + [others[0], target], 4)[-1]  # in a slot freed by another
    assert (later.reward, later.length) == expected
    assert [e.episode for e in first] == [1, 2, 3, 4]  # in episode order, whichever ended first


def test_the_video_is_the_first_episodes_and_recording_changes_nothing(breakout_agent, monkeypatch, tmp_path):
    videos = []
    monkeypatch.setattr(play, "write_video", lambda frames, path, fps: videos.append(frames))
    seeds = episode_seeds(3, 4)
    recorded = play_episodes(breakout_agent, BREAKOUT, seeds, 4, video=tmp_path / "a.mp4")
    assert recorded == play_episodes(breakout_agent, BREAKOUT, seeds, 4)
    assert len({e.length for e in recorded}) > 1  # the first episode's end is not the batch's
    alone = play_episodes(breakout_agent, BREAKOUT, seeds[:1], 4, video=tmp_path / "b.mp4")
    assert alone[0] == recorded[0]
    together, by_itself = videos
    assert len(together) == recorded[0].length + 1  # its first screen, then one after every step
    assert len(together) == len(by_itself) and all(np.array_equal(a, b) for a, b in zip(together, by_itself))
    assert together[0].shape == (210, 160, 3)


def test_one_and_eight_at_a_time_agree_here_though_their_passes_differ_in_the_last_bits(invaders_agent):
    """N = 1 runs batches of one, N = 8 two batches of five: XLA's kernels for other batch sizes sum in another
    order, so the Q-values may differ in their last bits (about 1e-7 here) and a near-tie could, rarely, pick
    another action. With this network the 8 episodes' scores and lengths agree."""
    cfg = EnvConfig(max_episode_steps=150)
    state = np.random.default_rng(0).integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    one = invaders_agent.compute_batch_q_values(state)[0]
    five = invaders_agent.compute_batch_q_values(np.concatenate([state, np.zeros((4, 4, 84, 84), np.uint8)]))[0]
    np.testing.assert_allclose(one, five, rtol=1e-5, atol=1e-6)
    assert play_agent(invaders_agent, cfg, 8, 5, parallel=1) == play_agent(invaders_agent, cfg, 8, 5, parallel=8)


def test_episode_seeds_are_each_episodes_own():
    assert episode_seeds(0, 5)[:3] == episode_seeds(0, 3)  # more episodes begin with the same ones
    assert len(set(episode_seeds(0, 100) + episode_seeds(1, 100))) == 200
