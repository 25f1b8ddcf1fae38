"""The RL core: environments, Q-networks, replay memory, the DQN agent and its training loop, playing."""
