"""The keras-rl2 DQN agent, configured from params."""

from __future__ import annotations

import random

import numpy as np

from invaders.compat import adam, load_rl
from invaders.config import AgentConfig, Params


def seed_everything(seed: int) -> None:
    """Python, NumPy's global RNG (keras-rl2's policies and memory use it) and TensorFlow."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def make_processor(clip_rewards: bool):
    rl = load_rl()

    class AtariProcessor(rl.Processor):
        """Keeps frames uint8 (the network scales them) and clips rewards when training asks."""

        def process_state_batch(self, batch):
            return np.asarray(batch, dtype=np.uint8)

        def process_reward(self, reward):
            return float(np.sign(reward)) if clip_rewards else reward

    return AtariProcessor()


def load_agent(model_path, params: Params, training: bool = True, test_epsilon: float | None = None):
    """A compiled DQNAgent around the saved network at `model_path`.
    """
    rl = load_rl()
    from invaders.model import load_network

    model = load_network(model_path)
    n_actions = int(model.output_shape[-1])
    cfg: AgentConfig = params.agent
    eps = cfg.epsilon
    policy = rl.LinearAnnealedPolicy(
        rl.EpsGreedyQPolicy(), attr="eps", value_max=eps.start, value_min=eps.end,
        value_test=eps.test, nb_steps=eps.anneal_steps,
    )
    agent = rl.DQNAgent(
        model=model,
        nb_actions=n_actions,
        memory=rl.SequentialMemory(limit=cfg.memory_limit if training else cfg.window_length, window_length=cfg.window_length),
        policy=policy,
        test_policy=rl.EpsGreedyQPolicy(eps=eps.test if test_epsilon is None else test_epsilon),
        processor=make_processor(params.env.clip_rewards and training),
        gamma=cfg.gamma,
        batch_size=cfg.batch_size,
        nb_steps_warmup=cfg.warmup_steps,
        target_model_update=cfg.target_update,
        train_interval=cfg.train_interval,
        delta_clip=cfg.delta_clip,
        enable_double_dqn=cfg.double_dqn,
        enable_dueling_network=False,  # the dueling head is part of the model (compat quirk 2)
    )
    agent.compile(adam(cfg.learning_rate), metrics=["mae"])
    return agent
