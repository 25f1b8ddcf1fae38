import numpy as np
import pytest
from conftest import merge

from invaders.rl.agent import build_agent
from invaders.config import EnvConfig, parse_params
from invaders.rl.envs import RLEnv, action_count, make_env, observation_shape
from invaders.rl.play import play_agent
from invaders.rl.model import build_q_network, save_network
from invaders.rl.loop import train


@pytest.mark.unit
@pytest.mark.parametrize("observation", ["deepmind", "raw"])
def test_adapter_speaks_the_old_gym_api(observation):
    cfg = EnvConfig(observation=observation, max_episode_steps=20)
    env = RLEnv(make_env(cfg), seed=3)
    obs = env.reset()
    assert obs.shape == observation_shape(cfg) and obs.dtype == np.uint8
    result = env.step(0)
    assert len(result) == 4
    obs, reward, done, info = result
    assert obs.shape == observation_shape(cfg) and isinstance(reward, float) and done is False
    env.close()


@pytest.mark.unit
def test_truncation_ends_the_episode():
    env = RLEnv(make_env(EnvConfig(max_episode_steps=7)), seed=0)
    env.reset()
    dones = [env.step(1)[2] for _ in range(7)]
    assert dones == [False] * 6 + [True]


def _trajectory(seed: int, cfg: EnvConfig) -> list[np.ndarray]:
    env = RLEnv(make_env(cfg), seed=seed)
    frames = [env.reset()]
    rng = np.random.default_rng(0)
    for _ in range(3):  # three episodes: later resets continue the seeded stream
        done = False
        while not done:
            obs, _, done, _ = env.step(int(rng.integers(env.action_space.n)))
            frames.append(obs)
        frames.append(env.reset())
    env.close()
    return frames


@pytest.mark.unit
def test_seeded_episodes_repeat_exactly_and_seeds_matter():
    cfg = EnvConfig(max_episode_steps=60)  # sticky actions and no-op starts both draw on the seed
    a, b, c = _trajectory(1, cfg), _trajectory(1, cfg), _trajectory(2, cfg)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or any(not np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.unit
def test_space_invaders_has_six_actions():
    assert action_count(EnvConfig()) == 6


@pytest.mark.unit
def test_life_loss_ends_the_agents_episode_but_not_the_game():
    env = RLEnv(make_env(EnvConfig(max_episode_steps=5000)), seed=0, life_loss_ends_episode=True)
    obs, rng = env.reset(), np.random.default_rng(0)
    lives_lost, games = 0, 0
    while games == 0:
        obs, _, done, info = env.step(int(rng.integers(env.action_space.n)))
        if done and not env.game_over:
            lives_lost += 1
            frame = info["frame_number"]
            assert np.array_equal(env.reset(), obs)  # the game goes on from where it was
            _, _, _, info = env.step(0)
            assert info["frame_number"] > frame
        elif done:
            games += 1
    assert lives_lost == 2  # Space Invaders has three lives: two life losses, then game over
    env.close()


@pytest.mark.e2e
def test_training_learns_from_clipped_rewards_while_scores_stay_raw(tmp_path, tiny_params):
    """Space Invaders pays 5 to 30 points an invader: the replay memory stores sign(reward) (1), the
    history's per-game score and the evaluation's are the game's own points."""
    params = parse_params(merge(tiny_params, {"train": {"steps": 400, "eval_every": 400}}))
    save_network(build_q_network(params.model, (84, 84), 4, 6), tmp_path / "model.keras")
    agent, history, _ = train(params, tmp_path / "model.keras")
    stored = agent.memory._rewards[: agent.memory.nb_entries]
    assert set(np.unique(stored)) <= {-1.0, 0.0, 1.0} and (stored == 1.0).any()
    assert any(row["reward"] > 1 and row["reward"] % 5 == 0 for row in history)
    player = build_agent(agent.model, params, training=False)
    scores = [e.reward for e in play_agent(player, params.env, 2, seed=1, parallel=params.evaluate.parallel_episodes)]
    assert any(score > 1 and score % 5 == 0 for score in scores)


@pytest.mark.e2e
@pytest.mark.parametrize("observation", ["deepmind", "raw"])
def test_restored_env_continues_exactly_with_sticky_actions(observation):
    """A checkpointed env continues as the original does, whatever action ALE was holding: its sticky
    actions repeat the last applied action, which ALE's cloneState leaves out (the smoke run's
    step-100 checkpoint resumed on a NOOP where the uninterrupted run repeated RIGHTFIRE)."""
    cfg = EnvConfig(observation=observation, max_episode_steps=400)
    actions = np.random.default_rng(0).integers(0, 6, 300)
    original = RLEnv(make_env(cfg), 7)
    original.reset()
    diverged = []
    for t, action in enumerate(actions):
        if t % 10 == 9:  # a checkpoint here: a fresh env restored from it must play the next steps the same
            restored = RLEnv(make_env(cfg), 7)
            restored.set_state(*original.get_state())
            saved = original.get_state()
            ahead = [restored.step(a)[0] for a in actions[t:t + 3]]
            played = [original.step(a)[0] for a in actions[t:t + 3]]
            restored.close()
            if not all(np.array_equal(a, b) for a, b in zip(ahead, played)):
                diverged.append(t)
            original.set_state(*saved)  # back to the checkpoint, itself restored, for the steps below
        _, _, done, _ = original.step(action)
        if done:
            original.reset()
    original.close()
    assert not diverged
