"""Q-networks, built from built-in Keras layers only.

Inputs are uint8 frame stacks of shape (window, *frame); scaling to [0, 1] happens inside
the network, so replay memory and batches stay uint8. The dueling head is built from
built-in layers (no Python lambda), so every saved model loads in Keras safe mode.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import tf_keras
from tf_keras import layers

from invaders.config import ModelConfig
from invaders.errors import ModelFileError, first_line, named
from invaders.files import atomic_path


def build_q_network(cfg: ModelConfig, frame_shape: tuple[int, ...], window: int, n_actions: int,
                    quantiles: int | None = None) -> tf_keras.Model:
    """`nature`: the DeepMind Nature CNN on (window, 84, 84) grayscale stacks.

    `seed`: the reference article's net. Its convolutions run on each of the `window` raw
    RGB frames separately (a 5-D input; Keras treats the leading axes as batch) and the
    result is flattened: 34,812,326 parameters with 6 actions and no dueling head. keras-rl2's
    dueling head, as the article used it, adds 257 (the value stream).

    With `quantiles` N the head is QR-DQN's: a layer named `quantiles` of shape (N, actions), and
    the model's output is their mean, the Q-values. The saved network is a Q-network either way, so
    playing and evaluating need nothing else; training finds the `quantiles` layer by its name.
    """
    inputs = layers.Input(shape=(window, *frame_shape), dtype="uint8", name="frames")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    if cfg.architecture == "nature":
        x = layers.Permute((2, 3, 1), name="channels_last")(x)
        x = layers.Conv2D(32, 8, strides=4, activation="relu", name="conv1")(x)
        x = layers.Conv2D(64, 4, strides=2, activation="relu", name="conv2")(x)
        x = layers.Conv2D(64, 3, strides=1, activation="relu", name="conv3")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(512, activation="relu", name="dense1")(x)
    else:  # seed
        x = layers.Conv2D(32, 8, strides=4, activation="relu", name="conv1")(x)
        x = layers.Conv2D(64, 4, strides=2, activation="relu", name="conv2")(x)
        x = layers.Conv2D(64, 3, strides=1, activation="relu", name="conv3")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(512, activation="relu", name="dense1")(x)
        x = layers.Dense(256, activation="relu", name="dense2")(x)
    q = _q_head(x, cfg.dueling, n_actions) if quantiles is None else _quantile_head(x, cfg.dueling, n_actions, quantiles)
    return tf_keras.Model(inputs, q, name=f"{cfg.architecture}_dqn")


def _q_head(x, dueling: str, n_actions: int):
    """Q = V + A - mean(A) (avg) or - max(A) (max), as keras-rl2's dueling types define it."""
    if dueling == "none":
        return layers.Dense(n_actions, name="q_values")(x)
    value = layers.Dense(1, name="value")(x)
    advantage = layers.Dense(n_actions, name="advantage")(x)
    column = layers.Reshape((n_actions, 1), name="advantage_column")(advantage)
    pool = layers.GlobalAveragePooling1D if dueling == "avg" else layers.GlobalMaxPooling1D
    baseline = pool(name=f"advantage_{dueling}")(column)
    centred = layers.Subtract(name="advantage_centred")([advantage, baseline])
    return layers.Add(name="q_values")([value, centred])


def _quantile_head(x, dueling: str, n_actions: int, n: int):
    """Quantiles Z (n, actions); dueling per quantile: Z_i = V_i + A_i - mean_a A_i (or max_a). Q = mean_i Z_i."""
    if dueling == "none":
        z = layers.Reshape((n, n_actions), name="quantiles")(layers.Dense(n * n_actions, name="quantile_values")(x))
    else:
        value = layers.Reshape((n, 1), name="value_quantiles")(layers.Dense(n, name="value")(x))
        advantage = layers.Reshape((n, n_actions), name="advantage_quantiles")(
            layers.Dense(n * n_actions, name="advantage")(x))
        pool = layers.GlobalAveragePooling1D if dueling == "avg" else layers.GlobalMaxPooling1D
        baseline = pool(data_format="channels_first", name=f"advantage_{dueling}")(advantage)  # over actions
        baseline = layers.Reshape((n, 1), name="advantage_baseline")(baseline)
        centred = layers.Subtract(name="advantage_centred")([advantage, baseline])
        z = layers.Add(name="quantiles")([value, centred])
    return layers.GlobalAveragePooling1D(name="q_values")(z)  # the mean over quantiles


def quantile_count(model: tf_keras.Model) -> int | None:
    """N of a network with a quantile head, None for a scalar head."""
    names = {layer.name for layer in model.layers}
    return int(model.get_layer("quantiles").output_shape[1]) if "quantiles" in names else None


# The layers `with_precision` switches: the convolutions and hidden dense layers hold nearly all
# the arithmetic. The Q head stays float32, so Q-values and the loss keep float32 precision.
_TRUNK = ("conv", "dense")


def with_precision(model: tf_keras.Model, precision: str) -> tf_keras.Model:
    """A copy of `model`, same weights, whose trunk computes in `precision` ("float32" or "bfloat16").

    bfloat16 is Keras's `mixed_bfloat16` policy: float32 variables, bfloat16 arithmetic.
    """
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]

    def clone(layer):
        config = layer.get_config()
        if layer.name.startswith(_TRUNK):
            config["dtype"] = policy
        return type(layer).from_config(config)

    copy = tf_keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def uses_bfloat16(model: tf_keras.Model) -> bool:
    return any(layer.compute_dtype == "bfloat16" for layer in model.layers)


def save_network(model: tf_keras.Model, path: str | Path) -> None:
    """Atomic, float32, and byte-identical for identical networks.

    A `.keras` file is a zip; Keras stamps the save time into `metadata.json` and into the
    weights entry's zip header. Both are dropped, so equal weights give equal files.
    """
    if uses_bfloat16(model):
        model = with_precision(model, "float32")
    with atomic_path(path) as tmp:
        model.save(tmp)
        _strip_save_time(tmp)


def _strip_save_time(path: Path) -> None:
    with zipfile.ZipFile(path) as src:
        entries = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            if name == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def load_network(path: str | Path) -> tf_keras.Model:
    """Load a saved Q-network in safe mode: no code from the file is ever run. Anything else (not a model,
    a model of several inputs or outputs, or one without a known window of frames) is a ModelFileError."""
    path = Path(path)
    where = named(path)
    if not path.is_file():
        raise ModelFileError(f"{where}: no such model file")
    try:
        model = tf_keras.models.load_model(path, compile=False, safe_mode=True)
    # Safe mode runs no code from the file, so whatever Keras raises on rebuilding it is the file's: not HDF5
    # or a zip (OSError), a bad CRC (BadZipFile), no config (KeyError), bad JSON or a refused layer
    # (ValueError), an unknown class (TypeError), and for configs no Keras wrote, anything (AssertionError ...).
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{where}: not a loadable Keras model ({first_line(exc)})") from None
    if not isinstance(model, tf_keras.Model) or len(model.inputs or ()) != 1 or len(model.outputs or ()) != 1:
        raise ModelFileError(f"{where}: not a Q-network (a Keras model with one input and one output)")
    frames, actions = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    if len(frames) < 2 or None in frames or len(actions) != 1 or actions[0] is None:
        raise ModelFileError(f"{where}: not a Q-network: input {frames} and output {actions}; it needs a known window"
                             " of frames in and one Q-value per action out")
    return model


def check_fits(model: tf_keras.Model, source: str | Path, frame_shape: tuple[int, ...], window: int,
               n_actions: int) -> None:
    """A network built for other frames, another window or another game is the user's to fix."""
    got = (tuple(model.input_shape[1:]), int(model.output_shape[-1]))
    need = ((window, *frame_shape), n_actions)
    if got != need:
        raise ModelFileError(
            f"{source}: built for input {got[0]} and {got[1]} actions, but these params need input {need[0]}"
            f" and {need[1]} actions (see env.id, env.observation, agent.window_length)"
        )


def summarize(model: tf_keras.Model) -> dict:
    """Parameter count and layer table, in layer order."""
    rows = []
    for layer in model.layers:
        shape = layer.output_shape
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": list(shape[0] if isinstance(shape, list) else shape),
            "params": int(layer.count_params()),
        })
    return {
        "name": model.name,
        "params": int(model.count_params()),
        "input_shape": list(model.input_shape),
        "n_actions": int(model.output_shape[-1]),
        "layers": rows,
    }


def summary_text(model: tf_keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"
