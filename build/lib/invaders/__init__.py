"""invaders: a reproducible DQN pipeline for Atari Space Invaders."""

import os

# tf-keras (the Keras 2 API keras-rl2 needs) is selected only if this is set before
# TensorFlow is first imported, so it is set here, on importing the package.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
