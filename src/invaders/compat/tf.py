"""TensorFlow and tf-keras private APIs the project relies on, for TensorFlow 2.21 and tf-keras 2.21."""

from __future__ import annotations

from invaders.compat import require

require("tensorflow", "2.21", "2.22")
require("tf-keras", "2.21", "2.22")


def call_flat(function, args: list, captures: list):
    """Call a concrete function with `args` (tensors of its traced signature, in order) without its
    argument binding: `ConcreteFunction._call_flat`. `captures` are its `captured_inputs`."""
    return function._call_flat(args, captures)


def create_slots(optimizer, variables) -> None:
    """Make a legacy tf-keras optimizer create its slots (Adam's moments) for `variables` now, so that
    `get_weights`/`set_weights` see all of them before the first update: `_create_all_weights`."""
    optimizer._create_all_weights(variables)


def eager_context_started() -> bool:
    """Whether TensorFlow's eager context exists, i.e. its first op has run: `_context_handle`."""
    from tensorflow.python.eager import context

    return context.context()._context_handle is not None
