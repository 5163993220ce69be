"""A3G's options on the trainer: per-thread optimizer statistics, per-thread rollout lengths, weight and gradient
histograms, and the learner's graphs in TensorBoard."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from errors import RunError
from helpers import make_trainer


def _tags(directory) -> set:
    acc = event_accumulator.EventAccumulator(str(directory), size_guidance={"tensors": 0})
    acc.Reload()
    return set(acc.Tags()["tensors"]), acc.Tags()["graph"]


def test_per_thread_statistics_are_separate_saved_and_resumed(tmp_path):
    first = make_trainer(tmp_path, per_thread_stats=True, optimizer="amsgrad", total_env_steps=100)
    assert first.run() == 0
    opts = first.learner.optimizers
    assert len(opts) == 2 and opts[0] is not opts[1]
    # Each thread counted its own updates; together they are all of them.
    counts = [int(o.iterations.numpy()) for o in opts]
    assert all(n > 0 for n in counts) and sum(counts) == first.counters.updates == 10
    assert not np.allclose(opts[0].second[0].numpy(), opts[1].second[0].numpy())
    assert all(len(o.max_second) == len(o.second) for o in opts)
    saved = [[v.numpy() for v in o.variables] for o in opts]
    reader = tf.train.load_checkpoint(first.store.saved_path)
    assert any(k.startswith("optimizer_thread1/") for k in reader.get_variable_to_shape_map())
    first.close()

    second = make_trainer(tmp_path, per_thread_stats=True, optimizer="amsgrad", total_env_steps=200)
    try:
        for opt, values in zip(second.learner.optimizers, saved):
            for v, x in zip(opt.variables, values):
                np.testing.assert_array_equal(v.numpy(), x)
    finally:
        second.close()
    with pytest.raises(RunError, match="holds the optimizer statistics of 2 threads"):
        make_trainer(tmp_path, per_thread_stats=True, optimizer="amsgrad", threads=3)


def test_per_thread_rollout_lengths_each_traced_once_and_reported(tmp_path):
    trainer = make_trainer(tmp_path, t_max_per_thread="3,7", total_env_steps=200, log_interval_s=0.2)
    assert trainer.run() == 0
    assert [trainer.hp.t_max_of(i) for i in range(2)] == [3, 7]
    # Both threads' rollout shapes go through one traced train step (shared statistics, one device).
    assert trainer.learner.train_step.experimental_get_tracing_count() == 1
    tags, _ = _tags(tmp_path)
    assert {"t_max_3/updates", "t_max_7/updates", "t_max_3/policy", "t_max_7/grad_norm"} <= tags
    # A 3-step rollout of 2 envs is 6 env steps, a 7-step one 14: the total adds up from both.
    c = trainer.counters
    assert c.env_steps >= 200 and (c.env_steps - 200) < 14


def test_histograms_every_n_updates_and_graphs_once(tmp_path):
    trainer = make_trainer(tmp_path, histogram_interval_updates=4, total_env_steps=200)
    assert trainer.run() == 0
    tags, _ = _tags(tmp_path)
    names = [getattr(v, "path", v.name) for v in trainer.learner.net.trainable_variables]
    assert {f"weights/{n}" for n in names} <= tags and {f"gradients/{n}" for n in names} <= tags
    for name in ("act", "train_step"):
        _, has_graph = _tags(tmp_path / "graphs" / name)
        assert has_graph, name
    written = os.listdir(tmp_path / "graphs" / "act")
    resumed = make_trainer(tmp_path, histogram_interval_updates=4, total_env_steps=240)
    assert resumed.run() == 0
    assert os.listdir(tmp_path / "graphs" / "act") == written  # once per run directory


def test_no_histograms_by_default(tmp_path):
    trainer = make_trainer(tmp_path, total_env_steps=100)
    assert trainer.run() == 0
    tags, _ = _tags(tmp_path)
    assert not [t for t in tags if t.startswith(("weights/", "gradients/"))]
