"""How this project's processes import and configure TensorFlow.

Owns: importing TensorFlow quietly (so a user error stays one line on stderr) and the process-wide settings
that must be made before the first op runs: TF's thread pools, the seeds of TF and Keras, op determinism.
Must not build networks, read checkpoints or touch files: it is the first thing every command imports.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep the C++ start-up chatter off the console

from hparams import HParams  # noqa: E402


def import_tensorflow():
    """Import TensorFlow with fd 2 muted: TF 2.21 prints absl start-up lines that TF_CPP_MIN_LOG_LEVEL does not
    silence, and a user error must stay one line on stderr. Python exceptions still show."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tf.get_logger().setLevel("ERROR")  # e.g. an unreadable `checkpoint` state file: we report it ourselves
    return tf


def configure_tensorflow(hp: HParams):
    """Thread pools, seeds and determinism for this process; returns the tensorflow module."""
    tf = import_tensorflow()
    import keras
    try:
        tf.config.threading.set_intra_op_parallelism_threads(hp.resolved_intra_op_threads())
        tf.config.threading.set_inter_op_parallelism_threads(hp.resolved_inter_op_threads())
    except RuntimeError:
        pass  # already initialised in this process (tests); the first setting stays
    # Not just tf.random.set_seed: Keras 3 initialisers draw from Keras' own seed generator, which is seeded
    # from Python's `random` - without this the initial weights differ between runs with the same --seed.
    keras.utils.set_random_seed(hp.seed)
    if hp.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    return tf
