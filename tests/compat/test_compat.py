import gymnasium as gym
import numpy as np
import pytest
from conftest import merge

import invaders  # noqa: F401
from invaders.compat.keras_rl2 import adam, load_rl


@pytest.mark.unit
def test_keras_rl2_imports_and_eager_mode_survives():
    import tensorflow as tf

    rl = load_rl()
    assert rl.DQNAgent.__name__ == "DQNAgent"
    assert tf.executing_eagerly()  # quirk 3: rl.agents no longer switches the process to graph mode
    import tensorflow.keras

    assert tensorflow.keras.__version__  # quirk 1
    assert type(adam(1e-3)).__module__.startswith("tf_keras.src.optimizers.legacy")


class Corridor(gym.Env):
    """Ten steps to the end, whatever the action: an episode counter that is cheap to run."""

    observation_space = gym.spaces.Box(0, 255, (2,), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self):
        self.t = 0
        return np.zeros(2, np.uint8)

    def step(self, action):
        self.t += 1
        return np.full(2, self.t, np.uint8), 1.0, self.t == 10, {}


@pytest.mark.unit
def test_fit_runs_past_32767_steps_and_stops_on_its_budget():
    """Quirk 5: keras-rl2 counts steps in int16, which wraps at 32 768 and never ends."""
    import tf_keras

    rl = load_rl()
    inp = tf_keras.Input((1, 2))
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2)(tf_keras.layers.Flatten()(inp)))
    budget = 33_000
    policy = rl.LinearAnnealedPolicy(rl.EpsGreedyQPolicy(), attr="eps", value_max=1.0, value_min=0.1,
                                     value_test=0.0, nb_steps=40_000)
    agent = rl.DQNAgent(model=model, nb_actions=2, memory=rl.SequentialMemory(limit=100, window_length=1),
                        policy=policy, nb_steps_warmup=budget + 1, target_model_update=100)
    agent.compile(adam(1e-3))
    agent.compute_q_values = lambda state: np.zeros(2)  # only the counting is under test here
    history = agent.fit(Corridor(), nb_steps=budget, verbose=0)
    assert int(agent.step) == budget
    steps = history.history["nb_steps"]
    assert len(steps) == budget // 10 and steps[-1] == budget
    assert all(b - a == 10 for a, b in zip(steps, steps[1:]))
    # epsilon annealing reads agent.step: past 32 767 it must keep falling, not jump back to the start
    assert abs(policy.get_current_value() - (1.0 - 0.9 * budget / 40_000)) < 1e-9


@pytest.mark.e2e
def test_the_projects_own_training_runs_past_32767_steps_on_ale(tmp_path, tiny_params):
    """Quirk 5 where it matters: `training.train` (FastDQNAgent, the real ALE game, gradient steps on,
    prioritized 3-step replay, validation) crosses the int16 boundary and stops on its budget. A tiny
    linear network keeps it fast; the counting is the same for any network."""
    import tf_keras

    from invaders.config import parse_params
    from invaders.rl.model import save_network
    from invaders.rl.loop import train

    inputs = tf_keras.Input((4, 84, 84), dtype="uint8")
    flat = tf_keras.layers.Flatten()(tf_keras.layers.Rescaling(1 / 255)(inputs))
    save_network(tf_keras.Model(inputs, tf_keras.layers.Dense(6)(flat)), tmp_path / "tiny.keras")
    budget = 33_200
    params = parse_params(merge(tiny_params, {
        "env": {"max_episode_steps": 2000}, "agent": {"warmup_steps": 32_500, "epsilon": {"anneal_steps": 40_000}},
        "train": {"steps": budget, "eval_every": 16_600, "log_every": 100}}))
    logged = []
    agent, history, validator = train(params, tmp_path / "tiny.keras", sink=lambda step, m: logged.append((step, m)))
    assert int(agent.step) == budget
    assert history[-1]["step"] <= budget
    assert [r["step"] for r in validator.rows] == [16_600, 33_200]
    trained = [step for step, m in logged if "train_loss" in m]
    assert trained[0] == 32_600 and trained[-1] == budget  # gradient steps ran past the boundary
    assert abs(agent.policy.get_current_value() - (1.0 - 0.99 * budget / 40_000)) < 1e-9


@pytest.mark.unit
@pytest.mark.parametrize("module, package", [
    ("invaders.compat.tf", "tensorflow"), ("invaders.compat.tf", "tf-keras"), ("invaders.compat.ale", "ale-py"),
    ("invaders.compat.ale", "gymnasium"), ("invaders.compat.keras_rl2", "keras-rl2"), ("invaders.compat.ray", "ray"),
])
def test_each_compat_module_refuses_an_upstream_version_it_was_not_written_for(monkeypatch, module, package):
    import importlib.metadata
    import importlib.util

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0.0" if name == package else real(name))
    spec = importlib.util.find_spec(module)
    with pytest.raises(ImportError, match=rf"^{package} 99\.0\.0 is installed; .* written for {package}>=[\d.]+,<"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # a fresh copy: the imported one stays


@pytest.mark.unit
def test_require_names_a_missing_package():
    from invaders.compat import require

    with pytest.raises(ImportError, match=r"no-such-package is not installed; .*no-such-package>=1\.0,<2\.0"):
        require("no-such-package", "1.0", "2.0")
    assert require("numpy", "1.0", "99") == np.__version__


@pytest.mark.unit
def test_tf_private_apis():
    import tensorflow as tf

    from invaders.compat import tf as tf_compat

    tf.constant(1.0) + 1.0  # an op has run: the eager context exists
    assert tf_compat.eager_context_started()
    function = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec((2,), tf.float32)]).get_concrete_function()
    out = tf_compat.call_flat(function, [tf.constant([1.0, 3.0])], function.captured_inputs)
    np.testing.assert_array_equal(out.numpy(), [2.0, 6.0])
    variables = [tf.Variable(np.ones(3, np.float32))]
    optimizer = adam(1e-3)
    assert optimizer.get_weights() == []
    tf_compat.create_slots(optimizer, variables)
    assert len(optimizer.get_weights()) == 3  # iterations and Adam's two moments


@pytest.mark.unit
def test_ale_private_state():
    from invaders.compat import ale as ale_compat
    from invaders.config import EnvConfig
    from invaders.rl.envs import make_env

    for observation, frames in (("deepmind", 4), ("raw", 3)):
        env = make_env(EnvConfig(observation=observation, frame_skip=frames, sticky_action_prob=0.25,
                                 max_episode_steps=50))
        env.reset(seed=0)
        assert ale_compat.frames_per_step(env) == frames
        assert [ale_compat.action_id(env, a) for a in range(env.action_space.n)][:2] == [0, 1]  # NOOP, FIRE
        # The RNG copy is ALE's: a step draws twice a frame from it.
        ale = env.unwrapped.ale
        before = ale_compat.ale_rng(ale)
        env.step(0)
        before.random_raw(2 * frames)
        after = ale_compat.ale_rng(ale).state["state"]
        assert after["pos"] == before.state["state"]["pos"]
        np.testing.assert_array_equal(after["key"], before.state["state"]["key"])
        limit = next(w for w in _wrappers(env) if type(w).__name__ == "TimeLimit")
        assert ale_compat.elapsed_steps(limit) == 1
        ale_compat.set_elapsed_steps(limit, 49)
        assert env.step(1)[3]  # truncated at 50
        env.close()


def _wrappers(env):
    while hasattr(env, "env"):
        yield env
        env = env.env


@pytest.mark.unit
def test_the_ray_probe_gives_up_on_a_silent_port_and_names_what_is_not_a_head():
    """The sweep driver's call to a cluster's head is bounded: a port that takes the connection and never
    answers (here one that never accepts) is an error after the timeout, and a server that is not a Ray
    head (here HTTP) is named as such at once. (A real head, open or with a token: tests/sweep.)"""
    import http.server
    import socket
    import threading
    import time

    from invaders.compat.ray import ClusterUnusable, gcs_call

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(ClusterUnusable, match=r"^no answer from a Ray cluster's head there within 1 s$"):
            gcs_call(f"127.0.0.1:{silent.getsockname()[1]}", timeout=1)
        assert time.monotonic() - started < 5
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ClusterUnusable, match=r"^what answers there is not a Ray cluster's head \(UNAVAILABLE: "):
            gcs_call(f"127.0.0.1:{server.server_address[1]}", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
