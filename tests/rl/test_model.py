import zipfile

import numpy as np
import pytest

import invaders  # noqa: F401
from invaders.config import ModelConfig
from invaders.rl.model import (
    ModelFileError,
    build_q_network,
    load_network,
    save_network,
    summarize,
    uses_bfloat16,
    with_precision,
)

pytestmark = pytest.mark.unit


def nature(dueling="avg"):
    import tensorflow as tf

    tf.random.set_seed(0)  # the same initial weights in every run of a test
    return build_q_network(ModelConfig(architecture="nature", dueling=dueling), (84, 84), 4, 6)


def test_seed_net_has_the_articles_parameter_count():
    net = build_q_network(ModelConfig(architecture="seed", dueling="none"), (210, 160, 3), 3, 6)
    assert net.count_params() == 34_812_326
    assert net.input_shape == (None, 3, 210, 160, 3) and net.output_shape == (None, 6)
    # keras-rl2's dueling head adds the value stream: Dense(256 -> 1).
    dueling = build_q_network(ModelConfig(architecture="seed", dueling="avg"), (210, 160, 3), 3, 6)
    assert dueling.count_params() == 34_812_326 + 257


def test_nature_cnn_parameter_count():
    conv = (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64)
    dense = 7 * 7 * 64 * 512 + 512
    assert nature("none").count_params() == conv + dense + 512 * 6 + 6
    assert nature("avg").count_params() == conv + dense + (512 + 1) + (512 * 6 + 6)


@pytest.mark.parametrize("dueling", ["avg", "max"])
def test_dueling_head_computes_keras_rl2s_formula(dueling):
    net = nature(dueling)
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 84, 84), dtype=np.uint8)
    features = net.get_layer("dense1").output
    import tf_keras

    torso = tf_keras.Model(net.input, features)
    h = torso.predict_on_batch(x)
    wv, bv = net.get_layer("value").get_weights()
    wa, ba = net.get_layer("advantage").get_weights()
    value, adv = h @ wv + bv, h @ wa + ba
    pooled = adv.mean(axis=1, keepdims=True) if dueling == "avg" else adv.max(axis=1, keepdims=True)
    np.testing.assert_allclose(net.predict_on_batch(x), value + adv - pooled, rtol=1e-4, atol=1e-4)


def test_save_load_round_trip_in_safe_mode(tmp_path):
    net = nature()
    save_network(net, tmp_path / "m.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left
    loaded = load_network(tmp_path / "m.keras")
    x = np.full((2, 4, 84, 84), 128, dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), net.predict_on_batch(x))
    assert summarize(loaded)["params"] == net.count_params()
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:  # no Python code inside
        assert "Lambda" not in archive.read("config.json").decode()


def test_a_model_carrying_python_code_is_refused(tmp_path):
    import tf_keras

    inp = tf_keras.Input((4,))
    evil = tf_keras.Model(inp, tf_keras.layers.Lambda(lambda t: t * 2)(inp))
    evil.save(tmp_path / "evil.keras")
    with pytest.raises(ModelFileError, match="evil.keras: not a loadable Keras model"):
        load_network(tmp_path / "evil.keras")


def test_missing_and_truncated_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_network(tmp_path / "absent.keras")
    save_network(nature(), tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.keras: not a loadable Keras model"):
        load_network(tmp_path / "cut.keras")


def test_bfloat16_copy_shares_the_weights_and_saves_as_float32(tmp_path):
    net = nature()
    fast = with_precision(net, "bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in fast.layers}
    assert policies["conv1"] == policies["dense1"] == "mixed_bfloat16"
    assert policies["q_values"] == policies["value"] == "float32"  # the head stays float32
    assert uses_bfloat16(fast) and not uses_bfloat16(net)
    for a, b in zip(fast.get_weights(), net.get_weights()):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 256, (4, 4, 84, 84), dtype=np.uint8)
    exact, approx = net.predict_on_batch(x), fast.predict_on_batch(x)
    assert approx.dtype == np.float32 and not np.array_equal(approx, exact)  # other arithmetic ...
    np.testing.assert_allclose(approx, exact, rtol=0.05, atol=0.01)  # ... about the same Q-values
    save_network(fast, tmp_path / "m.keras")
    loaded = load_network(tmp_path / "m.keras")
    assert not uses_bfloat16(loaded)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), exact)


@pytest.mark.parametrize("dueling", ["avg", "max", "none"])
def test_quantile_head_duels_per_quantile_and_outputs_their_mean(dueling, tmp_path):
    import tensorflow as tf
    import tf_keras

    from invaders.rl.model import quantile_count

    tf.random.set_seed(0)
    net = build_q_network(ModelConfig(architecture="nature", dueling=dueling), (84, 84), 4, 6, quantiles=5)
    assert quantile_count(net) == 5 and quantile_count(nature(dueling)) is None
    assert net.get_layer("quantiles").output_shape == (None, 5, 6) and net.output_shape == (None, 6)
    x = np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    h = tf_keras.Model(net.input, net.get_layer("dense1").output).predict_on_batch(x)
    if dueling == "none":
        w, b = net.get_layer("quantile_values").get_weights()
        z = (h @ w + b).reshape(3, 5, 6)
    else:
        wv, bv = net.get_layer("value").get_weights()
        wa, ba = net.get_layer("advantage").get_weights()
        value, adv = (h @ wv + bv)[:, :, None], (h @ wa + ba).reshape(3, 5, 6)
        z = value + adv - (adv.mean(axis=2, keepdims=True) if dueling == "avg" else adv.max(axis=2, keepdims=True))
    got = tf_keras.Model(net.input, net.get_layer("quantiles").output).predict_on_batch(x)
    np.testing.assert_allclose(got, z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(net.predict_on_batch(x), z.mean(axis=1), rtol=1e-4, atol=1e-4)
    save_network(net, tmp_path / "q.keras")  # a Q-network like any other, in safe mode
    loaded = load_network(tmp_path / "q.keras")
    assert quantile_count(loaded) == 5
    np.testing.assert_array_equal(loaded.predict_on_batch(x), net.predict_on_batch(x))
