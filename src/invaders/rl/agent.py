"""The keras-rl2 DQN agent, configured from params."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from invaders.compat import tf as tf_compat
from invaders.compat.keras_rl2 import adam, load_rl
from invaders.config import AgentConfig, Params
from invaders.rl import checkpoint
from invaders.errors import ModelFileError, named
from invaders.rl.model import check_fits, load_network, quantile_count, uses_bfloat16, with_precision
from invaders.rl.quantile import quantile_huber_loss
from invaders.rl.replay import PrioritizedReplayMemory, ReplayMemory

rl = load_rl()


class AtariProcessor(rl.Processor):
    """Keeps frames uint8 (the network scales them) and clips rewards when training asks."""

    def __init__(self, clip_rewards: bool):
        self.clip_rewards = clip_rewards

    def process_state_batch(self, batch):
        return np.asarray(batch, dtype=np.uint8)

    def process_reward(self, reward):
        return float(np.sign(reward)) if self.clip_rewards else reward


class FastDQNAgent(rl.DQNAgent):
    """keras-rl2's DQNAgent with the two hot paths compiled into single TensorFlow graphs.

    keras-rl2 spends most of its time outside the maths: `predict_on_batch` overhead for every
    action, object-array batches, and four Keras calls per gradient step. This subclass keeps
    its policies, callbacks and fit/test loops, and replaces only
    - `forward`: the ε-greedy draw first, the network only for greedy actions (the same actions);
    - `compute_batch_q_values` (and `compute_q_values`, its one-state case): one compiled call on a
      uint8 batch of states;
    - the gradient step in `backward`: targets, masked Huber loss and the Adam update in one
      compiled call, computing exactly what `DQNAgent.backward` computes (tests compare them),
      on a batch of arrays from the memory's `sample_batch` (a `replay.ReplayMemory`).
    With a quantile head (a `quantiles` layer, `model.build_q_network`) the step is QR-DQN's instead:
    the n-step distributional target r + discount * Z'(s', a*), a* by the online (double DQN) or the
    target net's Q-means, against the taken action's quantiles under the quantile Huber loss
    (threshold `delta_clip`); each sample's loss is its priority.
    It adds what keras-rl2 lacks: multi-step targets (the memory sums n rewards and gives each
    transition its bootstrap discount, gamma ** n or 0) and importance-weighted losses whose TD
    errors go back to a `PrioritizedReplayMemory` as priorities. With n = 1 and uniform sampling
    every weight is 1 and the update is keras-rl2's.
    """

    training_steps = 1  # fit's nb_steps: how far prioritized replay's beta has annealed

    def compile(self, optimizer, metrics=[]):
        super().compile(optimizer, metrics)
        self.optimizer = optimizer
        state = tf.TensorSpec((None, *self.model.input_shape[1:]), tf.uint8)
        # Concrete functions: called with tensors they skip tf.function's per-call signature matching.
        # XLA fuses the one-state forward pass into a single kernel launch: about 0.6 ms instead of
        # 0.9 ms on 2 cores, most of it dispatch; playing's batches of 5 to 9 are faster too (1.9 against
        # 2.1 ms for 8 on one thread), for batches of 32 TF's own kernels are faster.
        # XLA's CPU bfloat16 convolutions are slow, so a bfloat16 network keeps TF's kernels.
        self._q_values = tf.function(
            lambda x: self.model(x, training=False), input_signature=[state],
            jit_compile=not uses_bfloat16(self.model),
        ).get_concrete_function()
        self._q_captures = self._q_values.captured_inputs  # the network's variables, the same objects for good
        self.quantiles = quantile_count(self.model)
        if self.quantiles is not None:  # the quantiles and their means in one call; the target's layers share names
            self._online_dist = _distribution(self.model)
            self._target_dist = _distribution(self.target_model)
        step = self._gradient_step if self.quantiles is None else self._quantile_step
        self._train_step = tf.function(step, input_signature=[
            state, tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.float32), state,
            tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.float32),
        ]).get_concrete_function()

    def get_state(self) -> dict[str, np.ndarray]:
        """Online and target weights, Adam's slots and the replay memory, for a checkpoint."""
        tf_compat.create_slots(self.optimizer, self.model.trainable_variables)  # slots exist from then on
        arrays = checkpoint.nest("memory", self.memory.get_state())
        for name, weights in (("online", self.model.get_weights()), ("target", self.target_model.get_weights()),
                              ("optimizer", self.optimizer.get_weights())):
            arrays.update(checkpoint.nest(name, {f"{i:04d}": w for i, w in enumerate(weights)}))
        return arrays

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `get_state()`'s arrays (the step counter is the trainer's: `loop.Progress`)."""
        def weights(name: str) -> list[np.ndarray]:
            return [w for _, w in sorted(checkpoint.part(arrays, name).items())]

        self.model.set_weights(weights("online"))
        self.target_model.set_weights(weights("target"))
        tf_compat.create_slots(self.optimizer, self.model.trainable_variables)
        self.optimizer.set_weights(weights("optimizer"))
        self.memory.set_state(checkpoint.part(arrays, "memory"))

    @property
    def metrics_names(self):
        # keras-rl2 reads these from the Keras training model, which never trains here.
        names = ["loss", "mae", "mean_q"] + self.policy.metrics_names
        return names + (self.processor.metrics_names if self.processor is not None else [])

    def compute_batch_q_values(self, state_batch):
        # `call_flat` skips the concrete function's argument binding, about 0.14 of the 1 ms a call costs on one
        # thread (measured): its one input is always a uint8 tensor of the traced shape, so there is nothing to bind.
        # XLA compiles once per batch size: callers that play keep theirs fixed (`play` pads its batch).
        states = tf.constant(np.asarray(state_batch, dtype=np.uint8))
        return tf_compat.call_flat(self._q_values, [states], self._q_captures).numpy()

    def compute_q_values(self, state):
        return self.compute_batch_q_values(np.asarray(state, dtype=np.uint8)[None])[0]

    def forward(self, observation):
        # keras-rl2 computes Q-values for every step, then its ε-greedy policy draws whether to act at
        # random. The same draws in the same order (NumPy's global RNG: one uniform, then a randint if it is
        # below ε), but Q is computed only when the action is greedy: the same actions, without the pass.
        state = self.memory.get_recent_state(observation)
        policy = self.policy if self.training else self.test_policy
        if isinstance(policy, rl.LinearAnnealedPolicy):  # what its select_action does before the inner one's
            setattr(policy.inner_policy, policy.attr, policy.get_current_value())
            policy = policy.inner_policy
        if np.random.uniform() < policy.eps:
            action = np.random.randint(0, self.nb_actions)
        else:
            action = np.argmax(self.compute_q_values(state))
        self.recent_observation, self.recent_action = observation, action
        return action

    def _gradient_step(self, state0, action, reward, state1, discount, weights):
        target_q = self.target_model(state1, training=False)
        if self.enable_double_dqn:  # the online net picks the action, the target net values it
            best = tf.argmax(self.model(state1, training=False), axis=1, output_type=tf.int32)
        else:
            best = tf.argmax(target_q, axis=1, output_type=tf.int32)
        next_q = tf.gather(target_q, best, axis=1, batch_dims=1)
        returns = reward + discount * next_q
        taken = tf.one_hot(action, self.nb_actions)
        with tf.GradientTape() as tape:
            q = self.model(state0, training=True)
            error = returns - tf.reduce_sum(q * taken, axis=1)
            if np.isinf(self.delta_clip):
                per_sample = 0.5 * tf.square(error)
            else:
                linear = self.delta_clip * (tf.abs(error) - 0.5 * self.delta_clip)
                per_sample = tf.where(tf.abs(error) < self.delta_clip, 0.5 * tf.square(error), linear)
            loss = tf.reduce_mean(weights * per_sample)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        # keras-rl2's metrics: 'mae' of Q against the (zero except taken action) target row.
        mae = tf.reduce_mean(tf.abs(taken * returns[:, None] - q))
        mean_q = tf.reduce_mean(tf.reduce_max(q, axis=1))
        return tf.stack([loss, mae, mean_q]), tf.abs(error)

    def _quantile_step(self, state0, action, reward, state1, discount, weights):
        target_z, target_q = self._target_dist(state1, training=False)  # (batch, N, actions), (batch, actions)
        if self.enable_double_dqn:
            best = tf.argmax(self.model(state1, training=False), axis=1, output_type=tf.int32)
        else:
            best = tf.argmax(target_q, axis=1, output_type=tf.int32)
        next_z = tf.gather(target_z, best, axis=2, batch_dims=1)  # (batch, N)
        returns = reward[:, None] + discount[:, None] * next_z
        with tf.GradientTape() as tape:
            z, q = self._online_dist(state0, training=True)
            chosen = tf.gather(z, action, axis=2, batch_dims=1)
            per_sample = quantile_huber_loss(chosen, returns, self.delta_clip)
            loss = tf.reduce_mean(weights * per_sample)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        mae = tf.reduce_mean(tf.abs(tf.reduce_mean(returns, axis=1) - tf.reduce_mean(chosen, axis=1)))
        mean_q = tf.reduce_mean(tf.reduce_max(q, axis=1))
        return tf.stack([loss, mae, mean_q]), per_sample

    def backward(self, reward, terminal):
        if self.step % self.memory_interval == 0:
            self.memory.append(self.recent_observation, self.recent_action, reward, terminal,
                               training=self.training)
        metrics = [np.nan for _ in self.metrics_names]
        if not self.training:
            return metrics
        if self.step > self.nb_steps_warmup and self.step % self.train_interval == 0:
            batch = self.memory.sample_batch(self.batch_size, progress=self.step / self.training_steps)
            step_metrics, td_errors = self._train_step(*(tf.constant(a) for a in batch[:-1]))
            self.memory.update_priorities(batch.positions, td_errors.numpy())
            metrics = step_metrics.numpy().tolist() + self.policy.metrics
            if self.processor is not None:
                metrics += self.processor.metrics
        if self.target_model_update >= 1 and self.step % self.target_model_update == 0:
            self.update_target_model_hard()
        return metrics


def _distribution(model):
    """(quantiles, Q-values) of a network with a quantile head, from one call."""
    return tf_keras.Model(model.inputs, [model.get_layer("quantiles").output, model.output])


def load_agent(model_path, params: Params, training: bool = True, test_epsilon: float | None = None):
    """A compiled agent around the saved network at `model_path`. Training needs the head params ask for;
    playing needs only Q-values, which every head gives."""
    from invaders.rl.envs import action_count, observation_shape

    model = load_network(model_path)
    check_fits(model, model_path, observation_shape(params.env), params.agent.window_length, action_count(params.env))
    has, wants = quantile_count(model), params.agent.head_quantiles
    if training and has != wants:
        def head(n):
            return "a scalar head" if n is None else f"a quantile head of {n} quantiles"
        raise ModelFileError(f"{named(model_path)}: built with {head(has)}, but agent.head and agent.quantiles ask for"
                             f" {head(wants)}; rebuild it (dvc repro build)")
    return build_agent(model, params, training=training, test_epsilon=test_epsilon)


def build_agent(model, params: Params, training: bool = True, test_epsilon: float | None = None, agent_class=None,
                memory=None):
    """A compiled agent around `model`: FastDQNAgent with a ReplayMemory seeded from `params.seed`
    unless `agent_class` or `memory` say otherwise (the benchmark's keras-rl2 baseline does)."""
    agent_class = agent_class or FastDQNAgent
    if training and params.agent.precision != "float32":
        model = with_precision(model, params.agent.precision)
    n_actions = int(model.output_shape[-1])
    cfg: AgentConfig = params.agent
    eps = cfg.epsilon
    policy = rl.LinearAnnealedPolicy(
        rl.EpsGreedyQPolicy(), attr="eps", value_max=eps.start, value_min=eps.end,
        value_test=eps.test, nb_steps=eps.anneal_steps,
    )
    if memory is None and training:
        per, common = cfg.prioritized, {"seed": params.stream_seed("replay"), "n_step": cfg.n_step, "gamma": cfg.gamma,
                                        "augment": cfg.augment}
        memory = (PrioritizedReplayMemory(cfg.memory_limit, cfg.window_length, **common, alpha=per.alpha,
                                          beta_start=per.beta_start, epsilon=per.epsilon)
                  if per.enabled else ReplayMemory(cfg.memory_limit, cfg.window_length, **common))
    elif memory is None:  # playing only needs the last window of frames, not a replay memory
        memory = ReplayMemory(cfg.window_length + 3, cfg.window_length)
    agent = agent_class(
        model=model,
        nb_actions=n_actions,
        memory=memory,
        policy=policy,
        test_policy=rl.EpsGreedyQPolicy(eps=eps.test if test_epsilon is None else test_epsilon),
        processor=AtariProcessor(clip_rewards=params.env.clip_rewards and training),
        gamma=cfg.gamma,
        batch_size=cfg.batch_size,
        nb_steps_warmup=cfg.warmup_steps,
        target_model_update=cfg.target_update,
        train_interval=cfg.train_interval,
        delta_clip=cfg.delta_clip,
        enable_double_dqn=cfg.double_dqn,
        enable_dueling_network=False,  # the dueling head is part of the model (compat quirk 2)
    )
    agent.training_steps = params.train.steps
    agent.compile(adam(cfg.learning_rate), metrics=["mae"])
    return agent
