"""Dead ReLU units: the per-layer share the network reports, what a training run logs of it, and progress.csv:
files of older versions (without those columns) that a resume rewrites, one row per step count."""
import csv

import numpy as np
import pytest
import tensorflow as tf

import network
from helpers import make_trainer, progress_rows, small_hp
from checkpoints import RunCounts
from run_log import PROGRESS_FIELDS, RunLog

NUM_ACTIONS = 6


def _frames(batch, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(batch,) + network.OBS_SHAPE, dtype=np.uint8)


def _kill_first_layer_channels(net, channels):
    """Zero the channels' kernels and give them bias -1 (ReLU output 0 on any input); give every other channel
    bias +10 (> 0 on any frame, whose pixels are in [0, 1])."""
    kernel, bias = net.conv0.kernel.numpy(), np.full(net.conv0.bias.shape, 10.0, np.float32)
    kernel[..., channels] = 0.0
    bias[channels] = -1.0
    net.conv0.kernel.assign(kernel)
    net.conv0.bias.assign(bias)


@pytest.mark.parametrize("kind, convs", [("a3c", 2), ("nature", 3)])
def test_relu_layers_are_the_torso_in_order(kind, convs):
    net = network.build_network(NUM_ACTIONS, kind, device="/CPU:0")
    obs = tf.constant(_frames(3))
    layers = net.relu_layers(obs)
    assert [name for name, _ in layers] == [f"conv{i}" for i in range(convs)] + ["fc"]
    np.testing.assert_array_equal(layers[-1][1].numpy(), net.torso(obs).numpy())
    assert all(float(tf.reduce_min(x)) >= 0 for _, x in layers)


@pytest.mark.parametrize("space_to_depth", [True, False])
def test_dead_share_counts_units_dead_on_every_frame_and_position(space_to_depth):
    net = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", space_to_depth=space_to_depth)
    _kill_first_layer_channels(net, [0, 5, 9])
    layers = net.relu_layers(tf.constant(_frames(4)))
    shares = {name: float(v) for name, v in network.dead_unit_fractions(layers).items()}
    assert shares["conv0"] == pytest.approx(3 / 16)
    # The same count written out: a unit is dead when its largest output over frames and positions is 0.
    for name, x in layers:
        x = x.numpy().reshape(-1, x.shape[-1])
        assert shares[name] == pytest.approx(np.mean([x[:, u].max() <= 0 for u in range(x.shape[1])]))


def test_a_unit_alive_at_one_position_of_one_frame_is_not_dead():
    x = np.zeros((2, 3, 3, 4), np.float32)
    x[1, 2, 0, 3] = 0.5  # channel 3, only here
    shares = network.dead_unit_fractions([("conv", tf.constant(x)), ("fc", tf.constant(x.reshape(2, -1)))])
    assert float(shares["conv"]) == pytest.approx(3 / 4)
    assert float(shares["fc"]) == pytest.approx(35 / 36)


def test_the_mlp_has_no_relu_layers():
    net = network.build_network(2, "mlp", device="/CPU:0", obs=network.ObsSpec((4,), tf.float32))
    assert net.relu_layers(tf.zeros((3, 4))) == []
    assert network.dead_unit_fractions([]) == {}


def test_training_logs_the_dead_share_of_the_first_layer_and_the_features(tmp_path):
    trainer = make_trainer(tmp_path / "run", total_env_steps=400, log_interval_s=0.05)
    assert trainer.run() == 0
    rows = [r for r in progress_rows(tmp_path / "run") if r["dead_conv0"] != ""]
    assert rows, "no row carried the dead-unit shares"
    for r in rows:
        assert 0.0 <= float(r["dead_conv0"]) <= 1.0 and 0.0 <= float(r["dead_fc"]) <= 1.0


def test_a_network_whose_first_layer_died_shows_it_in_every_row(tmp_path):
    trainer = make_trainer(tmp_path / "run", total_env_steps=400, log_interval_s=0.05)
    _kill_first_layer_channels(trainer.learner.net, list(range(16)))
    assert trainer.run() == 0
    rows = [r for r in progress_rows(tmp_path / "run") if r["dead_conv0"] != ""]
    assert rows and all(float(r["dead_conv0"]) == 1.0 for r in rows)
    # Nothing reaches conv1 but its biases (0 at init, and no gradient flows back through a dead layer to move
    # conv0): the whole torso is dead and the policy is the same on every frame.
    assert all(float(r["dead_fc"]) == 1.0 for r in rows)


def test_an_older_progress_csv_gets_the_new_columns_and_keeps_its_rows(tmp_path):
    old_fields = PROGRESS_FIELDS[:-2]
    with open(tmp_path / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_fields)
        writer.writeheader()
        writer.writerow({k: "1" for k in old_fields} | {"env_steps": "100", "mean_return": "-20.5"})
        writer.writerow({k: "" for k in old_fields} | {"env_steps": "200"})
    run_log = RunLog(small_hp(tmp_path))
    run_log.open(200)
    run_log.close()
    with open(tmp_path / "progress.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == PROGRESS_FIELDS
    assert [r["env_steps"] for r in rows] == ["100", "200"] and rows[0]["mean_return"] == "-20.5"
    assert rows[0]["dead_conv0"] == "" and rows[0]["time_other"] == "1"


def test_a_resumed_run_writes_no_second_row_at_a_step_count_already_written(tmp_path):
    run_log = RunLog(small_hp(tmp_path))
    run_log.open(200)  # resumed at 200, where the previous session's last row is
    assert not run_log.row_due(200) and run_log.row_due(201)
    run_log.write(RunCounts(300, 4, 10, 1.0), 0, [(1.0, 50)], 100.0, 1e-3)
    assert not run_log.row_due(300) and run_log.row_due(320)
    run_log.close()
    assert [r["env_steps"] for r in csv.DictReader(open(tmp_path / "progress.csv"))] == ["300"]
