import gymnasium as gym
import numpy as np

import invaders  # noqa: F401
from invaders.compat import adam, load_rl


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
