import numpy as np
import pytest
from conftest import merge

from invaders.rl.agent import FastDQNAgent, build_agent
from invaders.seeding import seed_everything
from invaders.compat.keras_rl2 import load_rl
from invaders.config import parse_params
from invaders.rl.model import build_q_network

pytestmark = pytest.mark.unit


ONE_STEP_UNIFORM = {"n_step": 1, "prioritized": {"enabled": False}}  # keras-rl2's own algorithm


def _pair(params):
    """keras-rl2's DQNAgent and ours, on identical networks and identical replay memories."""
    rl = load_rl()
    seed_everything(params.seed)  # the networks' initial weights: the same in every run of the test
    rng = np.random.default_rng(0)
    net = build_q_network(params.model, (84, 84), params.agent.window_length, 6, params.agent.head_quantiles)
    agents = []
    for cls in (rl.DQNAgent, FastDQNAgent):
        clone = build_q_network(params.model, (84, 84), params.agent.window_length, 6, params.agent.head_quantiles)
        clone.set_weights(net.get_weights())
        agent = build_agent(clone, params, training=True, agent_class=cls)
        agent.training = True
        agents.append(agent)
    for t in range(80):
        obs = rng.integers(0, 256, (84, 84), dtype=np.uint8)
        action, reward, terminal = int(rng.integers(6)), float(rng.integers(-1, 2)), t % 37 == 36
        for agent in agents:
            agent.memory.append(obs, action, reward, terminal)
    return agents


@pytest.mark.parametrize("double_dqn, delta_clip", [(True, 1.0), (False, float("inf"))])
def test_fast_gradient_step_equals_keras_rl2s(tiny_params, double_dqn, delta_clip):
    params = parse_params(merge(tiny_params, {"agent": {
        "double_dqn": double_dqn, "delta_clip": delta_clip, "train_interval": 1, "warmup_steps": 40,
        "target_update": 1000, **ONE_STEP_UNIFORM}}))
    plain, fast = _pair(params)
    # Make the target net differ from the online one so both networks matter in the target.
    for agent in (plain, fast):
        agent.target_model.set_weights([w * 0.5 for w in agent.target_model.get_weights()])
    state = plain.memory.get_recent_state(np.zeros((84, 84), np.uint8))
    np.testing.assert_allclose(fast.compute_q_values(state), plain.compute_q_values(state), rtol=1e-5, atol=1e-6)

    results = []
    for agent in (plain, fast):
        agent.step = 41
        agent.recent_observation, agent.recent_action = np.zeros((84, 84), np.uint8), 0
        # Identical memories with the same seed: keras-rl2's `sample` and our `sample_batch` draw the same batch.
        metrics = agent.backward(0.0, terminal=False)
        results.append((dict(zip(agent.metrics_names, metrics)), agent.model.get_weights()))
    (m_plain, w_plain), (m_fast, w_fast) = results
    for name in ("loss", "mae", "mean_q"):
        assert m_fast[name] == pytest.approx(m_plain[name], rel=1e-4, abs=1e-6), name
    moved = False
    for a, b, before in zip(w_plain, w_fast, fast.target_model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
        moved |= not np.allclose(a, before * 2)
    assert moved  # the update did change the weights
    # compute_q_values calls the compiled forward pass directly: the same numbers as through its public call,
    # with the weights the update just wrote.
    import tensorflow as tf

    public = fast._q_values(tf.constant(np.asarray(state, np.uint8)[None])).numpy()[0]
    assert np.array_equal(fast.compute_q_values(state), public)
    np.testing.assert_allclose(public, fast.model(np.asarray(state, np.uint8)[None]).numpy()[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_forward_picks_keras_rl2s_actions_and_runs_the_network_only_for_greedy_ones(tiny_params, training):
    """The same draws from NumPy's global RNG in the same order, so the same actions; Q only when greedy."""
    params = parse_params(merge(tiny_params, {"agent": {"epsilon": {"start": 1.0, "end": 0.1, "anneal_steps": 200,
                                                                     "test": 0.3}}}))
    plain, fast = _pair(params)
    calls = []
    compute = fast.compute_q_values
    fast.compute_q_values = lambda state: calls.append(1) or compute(state)
    rng = np.random.default_rng(1)
    observations = rng.integers(0, 256, (300, 84, 84), dtype=np.uint8)
    actions = []
    for agent in (plain, fast):
        agent.training = training
        np.random.seed(7)
        played = []
        for step, obs in enumerate(observations):
            agent.step = step
            played.append(int(agent.forward(obs)))
        actions.append(played)
    assert actions[1] == actions[0]
    greedy = len(calls)
    assert 0 < greedy < 300  # some steps random, some greedy: only the greedy ones ran the network
    assert fast.policy.metrics == plain.policy.metrics  # the annealed ε keras-rl2 reports


def test_target_network_updates_on_schedule(tiny_params):
    params = parse_params(merge(tiny_params, {"agent": {"target_update": 50, "warmup_steps": 40}}))
    _, fast = _pair(params)
    fast.model.set_weights([w + 1 for w in fast.model.get_weights()])
    for step, expect_equal in ((49, False), (50, True)):
        fast.step = step
        fast.recent_observation, fast.recent_action = np.zeros((84, 84), np.uint8), 0
        fast.backward(0.0, terminal=False)
        same = all(np.array_equal(a, b) for a, b in zip(fast.model.get_weights(), fast.target_model.get_weights()))
        assert same == expect_equal


def test_bfloat16_gradient_step_is_close_to_float32s(tiny_params):
    params = parse_params(merge(tiny_params, {"agent": {"train_interval": 1, "warmup_steps": 40}}))
    fast32 = _pair(params)[1]
    fast16 = _pair(parse_params(merge(tiny_params, {"agent": {
        "train_interval": 1, "warmup_steps": 40, "precision": "bfloat16"}})))[1]
    fast16.model.set_weights(fast32.model.get_weights())  # the same start; memories are equal already
    fast16.target_model.set_weights(fast32.target_model.get_weights())
    assert fast16.model.get_layer("conv1").compute_dtype == "bfloat16"
    assert fast16.target_model.get_layer("conv1").compute_dtype == "bfloat16"
    results = []
    for agent in (fast32, fast16):
        before = agent.model.get_weights()
        agent.step = 41
        agent.recent_observation, agent.recent_action = np.zeros((84, 84), np.uint8), 0
        metrics = dict(zip(agent.metrics_names, agent.backward(0.0, terminal=False)))
        assert any(not np.array_equal(a, b) for a, b in zip(before, agent.model.get_weights()))
        results.append(metrics)
    m32, m16 = results
    assert m16["loss"] != m32["loss"]
    # bfloat16 keeps 8 significant bits: across seeds the loss agrees within 0.2%, mean_q (a max over
    # near-tied small Q-values) within 3.2%.
    assert m16["loss"] == pytest.approx(m32["loss"], rel=0.01)
    assert m16["mean_q"] == pytest.approx(m32["mean_q"], rel=0.05)


def test_gradient_step_bootstraps_n_steps_and_weights_each_sample(tiny_params):
    """The compiled step's TD errors against a NumPy reference (double DQN, gamma ** n), and its
    loss scaled by the importance weights."""
    params = parse_params(merge(tiny_params, {"agent": {"n_step": 3, "warmup_steps": 40, "gamma": 0.9}}))
    fast = _pair(params)[1]
    assert type(fast.memory).__name__ == "PrioritizedReplayMemory"
    fast.target_model.set_weights([w * 0.5 for w in fast.target_model.get_weights()])
    batch = fast.memory.sample_batch(32, progress=0.5)
    q0, q1 = fast.model.predict_on_batch(batch.state0), fast.model.predict_on_batch(batch.state1)
    target = fast.target_model.predict_on_batch(batch.state1)
    best = target[np.arange(32), q1.argmax(axis=1)]
    np.testing.assert_array_equal(np.unique(batch.discount), np.float32([0.0, 0.9 ** 3]))
    returns = batch.reward + batch.discount * best
    expected = np.abs(returns - q0[np.arange(32), batch.action])
    assert (batch.discount == 0).any() and (batch.discount > 0).any()
    before = fast.model.get_weights()
    losses = []
    for scale in (0.0, 1.0, 2.0):
        fast.model.set_weights(before)
        weights = np.full(32, scale, np.float32)
        metrics, td = fast._train_step(batch.state0, batch.action, batch.reward, batch.state1, batch.discount,
                                       weights)
        np.testing.assert_allclose(td.numpy(), expected, rtol=1e-4, atol=1e-5)
        losses.append(float(metrics[0]))
        if scale == 0.0:  # no weight, no gradient: Adam leaves the network as it was
            assert all(np.array_equal(a, b) for a, b in zip(before, fast.model.get_weights()))
    assert losses[0] == 0.0 and losses[2] == pytest.approx(2 * losses[1], rel=1e-6) and losses[1] > 0


def test_backward_sends_td_errors_to_the_prioritized_memory(tiny_params):
    params = parse_params(merge(tiny_params, {"agent": {"train_interval": 1, "warmup_steps": 40}}))
    fast = _pair(params)[1]
    leaves = fast.memory._tree.leaves.copy()
    fast.step = 41
    fast.recent_observation, fast.recent_action = np.zeros((84, 84), np.uint8), 0
    fast.backward(0.0, terminal=False)
    changed = np.flatnonzero(fast.memory._tree.leaves != leaves)
    assert 1 < len(changed) <= 33  # the sampled rows got their TD errors' priorities, the new row max priority
    assert fast.memory._max_priority >= fast.memory._tree.leaves.max()


QUANTILE = {"head": "quantile", "quantiles": 8}


def _quantile_loss(pred, target, kappa):
    """NumPy's reading of the quantile Huber loss (`quantile.quantile_huber_loss`)."""
    tau = (2 * np.arange(pred.shape[1]) + 1) / (2 * pred.shape[1])
    u = target[:, None, :] - pred[:, :, None]
    huber = np.where(np.abs(u) <= kappa, 0.5 * u ** 2, kappa * (np.abs(u) - 0.5 * kappa)) / kappa
    return (np.abs(tau[None, :, None] - (u < 0)) * huber).mean(axis=2).sum(axis=1)


def test_quantile_step_bootstraps_the_distribution_and_sends_its_losses_as_priorities(tiny_params):
    """n-step distributional target with double DQN's action (the online net's quantile means), the quantile
    Huber loss scaled by the importance weights, and each sample's loss back to the memory as its priority."""
    import tf_keras

    params = parse_params(merge(tiny_params, {"agent": {"n_step": 3, "warmup_steps": 40, "gamma": 0.9,
                                                        "train_interval": 1, **QUANTILE}}))
    fast = _pair(params)[1]
    assert fast.quantiles == 8
    fast.target_model.set_weights([w * 0.5 for w in fast.target_model.get_weights()])
    batch = fast.memory.sample_batch(32, progress=0.5)

    def dist(model, x):
        return tf_keras.Model(model.input, model.get_layer("quantiles").output).predict_on_batch(x)

    rows = np.arange(32)
    best = dist(fast.model, batch.state1).mean(axis=1).argmax(axis=1)
    next_z = dist(fast.target_model, batch.state1)[rows, :, best]  # (32, 8)
    returns = batch.reward[:, None] + batch.discount[:, None] * next_z
    chosen = dist(fast.model, batch.state0)[rows, :, batch.action]
    expected = _quantile_loss(chosen, returns, 1.0)
    assert (batch.discount == 0).any() and (batch.discount > 0).any()
    before = fast.model.get_weights()
    losses = []
    for scale in (0.0, 1.0, 2.0):
        fast.model.set_weights(before)
        metrics, per_sample = fast._train_step(batch.state0, batch.action, batch.reward, batch.state1,
                                               batch.discount, np.full(32, scale, np.float32))
        np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-4, atol=1e-5)
        losses.append(float(metrics[0]))
        if scale == 0.0:
            assert all(np.array_equal(a, b) for a, b in zip(before, fast.model.get_weights()))
    assert losses[0] == 0.0 and losses[2] == pytest.approx(2 * losses[1], rel=1e-6) and losses[1] > 0
    assert float(metrics[1]) == pytest.approx(np.abs(returns.mean(1) - chosen.mean(1)).mean(), rel=1e-4)

    fast.model.set_weights(before)
    leaves = fast.memory._tree.leaves.copy()
    fast.step = 41
    fast.recent_observation, fast.recent_action = np.zeros((84, 84), np.uint8), 0
    fast.backward(0.0, terminal=False)
    changed = np.flatnonzero(fast.memory._tree.leaves != leaves)
    assert 1 < len(changed) <= 33


def test_quantile_step_learns_a_fixed_return_distribution(tiny_params):
    """One state, one action, episodes that end at once with a reward from U(-2, 2): the real gradient step
    moves that action's quantiles to the distribution's quantiles at the midpoint fractions."""
    params = parse_params(merge(tiny_params, {"agent": {"warmup_steps": 40, "learning_rate": 1e-3,
                                                        "delta_clip": 0.01, "head": "quantile", "quantiles": 8}}))
    fast = _pair(params)[1]
    rng = np.random.default_rng(0)
    state = np.broadcast_to(rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8), (32, 4, 84, 84))
    action, discount, weights = np.full(32, 2, np.int32), np.zeros(32, np.float32), np.ones(32, np.float32)
    for _ in range(250):
        fast._train_step(state, action, rng.uniform(-2, 2, 32).astype(np.float32), state, discount, weights)
    z = fast._online_dist(state[:1])[0].numpy()[0, :, 2]
    np.testing.assert_allclose(z, -2 + 4 * (2 * np.arange(8) + 1) / 16, atol=0.2)


def test_quantile_head_trains_in_bfloat16(tiny_params):
    runs = []
    for precision in ("float32", "bfloat16"):
        params = parse_params(merge(tiny_params, {"agent": {"train_interval": 1, "warmup_steps": 40,
                                                            "precision": precision, **QUANTILE}}))
        runs.append(_pair(params)[1])
    fast32, fast16 = runs
    fast16.model.set_weights(fast32.model.get_weights())
    fast16.target_model.set_weights(fast32.target_model.get_weights())
    assert fast16.model.get_layer("conv1").compute_dtype == "bfloat16"
    assert fast16.model.get_layer("quantiles").compute_dtype == "float32"
    losses = []
    for agent in (fast32, fast16):
        agent.step = 41
        agent.recent_observation, agent.recent_action = np.zeros((84, 84), np.uint8), 0
        losses.append(dict(zip(agent.metrics_names, agent.backward(0.0, terminal=False)))["loss"])
    assert losses[0] != losses[1] and losses[1] == pytest.approx(losses[0], rel=0.02)
