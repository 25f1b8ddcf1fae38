"""Model files by the thousand (tests/fuzz.py): cut, bytes flipped, random bytes, a zip whose config,
metadata or weights were changed or removed, layers turned into Lambdas. Each loads (in safe mode) as
one Q-network, or is refused in one line; nothing else escapes. A tiny Q-network (8x8 frames) keeps each
load to milliseconds; found cases are kept below."""

import json
import zipfile

import pytest
from fuzz import ACTIONS, FRAME, TALLY, WINDOW, cases, check, failed, model_files, zip_entries
from hypothesis import given

from invaders.config import ModelConfig  # noqa: F401
from invaders.rl.model import ModelFileError, check_fits, load_network, save_network

pytestmark = pytest.mark.unit


def tiny_q_network():
    import tf_keras
    from tf_keras import layers

    frames = layers.Input(shape=(WINDOW, *FRAME), dtype="uint8", name="frames")
    x = layers.Flatten(name="flatten")(layers.Rescaling(1 / 255, name="scale")(frames))
    return tf_keras.Model(frames, layers.Dense(ACTIONS, name="q_values")(x), name="tiny_dqn")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import tf_keras

    root = tmp_path_factory.mktemp("models")
    save_network(tiny_q_network(), root / "good.keras")
    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, tf_keras.layers.Lambda(lambda t: t * 2)(inp)).save(root / "lambda.keras")
    return root


def load_and_fit(path):
    model = load_network(path)
    check_fits(model, path, FRAME, WINDOW, ACTIONS)
    return model


def test_model_files_load_as_one_q_network_or_are_refused_in_one_line(files):
    path = files / "case.keras"

    @cases(150)
    @given(model_files((files / "good.keras").read_bytes(), (files / "lambda.keras").read_bytes()))
    def one(data: bytes):
        import tf_keras

        path.write_bytes(data)
        if TALLY.get("model", {}).get("tried", 0) % 100 == 99:  # thousands of loaded models: let Keras forget them
            tf_keras.backend.clear_session()
        result = check("model", load_and_fit, path, describe=lambda: repr(data[:200]))
        if result is not None and not isinstance(result, ModelFileError):
            assert result.input_shape == (None, WINDOW, *FRAME) and result.output_shape == (None, ACTIONS)
            try:
                with zipfile.ZipFile(path) as archive:
                    assert '"Lambda"' not in archive.read("config.json").decode(errors="replace")
            except zipfile.BadZipFile:
                pass

    one()
    failed("model")


def with_config(files, name, change) -> str:
    with zipfile.ZipFile(files / "good.keras") as z:
        entries = {info.filename: z.read(info) for info in z.infolist()}
    config = json.loads(entries["config.json"])
    change(config)
    (files / name).write_bytes(zip_entries({**entries, "config.json": json.dumps(config).encode()}))
    return files / name


# Found by the fuzzing: each escaped as another exception, or loaded as something that is not a Q-network.
def test_a_config_no_keras_wrote_is_refused_in_one_line(files):
    empty_layers = with_config(files, "no-layers.keras", lambda c: c["config"].update(layers=[]))
    with pytest.raises(ModelFileError, match=r"no-layers.keras: not a loadable Keras model \(AssertionError\)"):
        load_network(empty_layers)  # Keras asserts: an AssertionError was a traceback
    with_config(files, "empty.keras", lambda c: c.clear())
    with pytest.raises(ModelFileError, match=r"empty.keras: not a Q-network \(a Keras model with one input and one"):
        load_network(files / "empty.keras")  # Keras returned the dict {} as "the model"


def test_a_network_without_a_known_window_is_refused_before_play_reads_it(files):
    import tf_keras

    inp = tf_keras.Input((None, 8))
    save_network(tf_keras.Model(inp, tf_keras.layers.Dense(ACTIONS)(tf_keras.layers.GlobalAveragePooling1D()(inp))),
                 files / "any-window.keras")
    with pytest.raises(ModelFileError, match=r"any-window.keras: not a Q-network: input \(None, 8\) and output \(6,\)"):
        load_network(files / "any-window.keras")  # `invaders play` took int(None) for the window
