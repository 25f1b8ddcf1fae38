"""The quantile regression loss of QR-DQN (Dabney et al. 2018), as a pure TensorFlow function."""

from __future__ import annotations

import math

import tensorflow as tf


def quantile_huber_loss(predicted: tf.Tensor, target: tf.Tensor, kappa: float) -> tf.Tensor:
    """Per-sample loss of `predicted` quantiles (batch, N) against `target` samples (batch, N').

    Quantile i estimates the midpoint fraction tau_i = (2i + 1) / 2N. For every pair (i, j) with
    u = target_j - predicted_i the loss is |tau_i - 1{u < 0}| * Huber_kappa(u) / kappa (0.5 u**2 when
    kappa is infinite), summed over i and averaged over j, as Dopamine's quantile agent does.
    The target carries no gradient.
    """
    n = predicted.shape[1]
    tau = (2.0 * tf.range(n, dtype=tf.float32) + 1.0) / (2.0 * n)
    u = tf.stop_gradient(target)[:, None, :] - predicted[:, :, None]  # (batch, N, N')
    if math.isinf(kappa):
        huber = 0.5 * tf.square(u)
    else:
        huber = tf.where(tf.abs(u) <= kappa, 0.5 * tf.square(u), kappa * (tf.abs(u) - 0.5 * kappa)) / kappa
    weight = tf.abs(tau[None, :, None] - tf.cast(u < 0.0, tf.float32))
    return tf.reduce_sum(tf.reduce_mean(weight * huber, axis=2), axis=1)
