import numpy as np
import pytest
import tensorflow as tf

from invaders.rl.quantile import quantile_huber_loss

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kappa, expected", [(1.0, 0.625), (2.0, 0.40625), (float("inf"), 0.875)])
def test_loss_equals_a_hand_computed_example(kappa, expected):
    """Quantiles 0 and 2 (fractions 1/4 and 3/4) against target samples 1 and 3: u = t_j - p_i is
    [[1, 3], [-1, 1]], the weights |tau_i - 1{u < 0}| are [[1/4, 1/4], [1/4, 3/4]].
    kappa 1: Huber/kappa [[1/2, 5/2], [1/2, 1/2]] -> mean_j of rows 3/8 and 1/4, sum 5/8.
    kappa 2: [[1/4, 2], [1/4, 1/4]] -> 9/32 and 1/8, sum 13/32. Squared: [[1/2, 9/2], [1/2, 1/2]] -> 5/8, 1/4."""
    loss = quantile_huber_loss(tf.constant([[0.0, 2.0], [0.0, 2.0]]), tf.constant([[1.0, 3.0], [0.0, 2.0]]), kappa)
    assert loss.shape == (2,)
    assert float(loss[0]) == pytest.approx(expected, rel=1e-6)
    # Quantiles equal to the samples: every u is 0 or 2 in the right direction; the pairs (0, 2) and (2, 0) remain.
    u_pos = {1.0: 1.5, 2.0: 1.0, float("inf"): 2.0}[kappa]  # Huber/kappa of u = 2
    assert float(loss[1]) == pytest.approx(0.5 * (0.25 * u_pos + 0.25 * u_pos), rel=1e-6)


def test_the_target_carries_no_gradient_and_the_prediction_is_pushed_by_its_fraction():
    pred, target = tf.Variable([[0.0, 0.0]]), tf.Variable([[10.0, 10.0]])
    with tf.GradientTape() as tape:
        loss = quantile_huber_loss(pred, target, 1.0)
    d_pred, d_target = tape.gradient(loss, [pred, target])
    assert d_target is None
    # Far below the target the Huber slope is -1: each quantile's gradient is -tau (1/4 and 3/4).
    np.testing.assert_allclose(d_pred.numpy(), [[-0.25, -0.75]], rtol=1e-6)


def test_minimising_it_finds_the_quantiles_of_a_fixed_distribution():
    """Free quantiles fitted to samples of U(-2, 2) land on its quantiles at the midpoint fractions."""
    n, rng = 8, np.random.default_rng(0)
    theta = tf.Variable(tf.zeros((1, n)))
    optimizer = tf.keras.optimizers.SGD(0.05)

    @tf.function  # one graph, not 3000 eager steps
    def step(samples):
        with tf.GradientTape() as tape:
            loss = quantile_huber_loss(theta, samples, 0.01)
        optimizer.apply_gradients([(tape.gradient(loss, theta), theta)])

    for _ in range(3000):
        step(tf.constant(rng.uniform(-2, 2, (1, 64)), tf.float32))
    expected = -2 + 4 * (2 * np.arange(n) + 1) / (2 * n)
    np.testing.assert_allclose(theta.numpy()[0], expected, atol=0.12)
