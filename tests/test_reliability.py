"""Reliability of the trainer, in-process on fake envs: checkpoint round trip, corrupt-checkpoint fallback,
rotation and the logdir lock, incompatible checkpoints, terminated vs truncated targets, autoreset masking,
NaN guards, exact counters under concurrency, tf.function retracing and seeding.

The CLI-level faults (signals, kill -9, worker crash, full disk, bad input) are in test_reliability_cli.py.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import a3c
import checkpoints
import envs
import fakes
import hparams
import run_log
from batch_agents import BatchAgents, Rollout
from errors import RunError
from learner import A3CLearner
from helpers import SMALL, STEPS_PER_UPDATE, file_hashes, make_trainer, wait_until


def variables(trainer) -> list:
    """Every value a checkpoint holds: network weights, optimizer slots + iterations, counters."""
    return ([v.numpy() for v in trainer.learner.net.variables] +
            [v.numpy() for v in trainer.learner.optimizer.variables] +
            [trainer.store.state_vars[k].numpy() for k in ("env_steps", "episodes", "updates")])


def counters(trainer) -> tuple:
    c = trainer.counters
    return c.env_steps, c.episodes, c.updates


def assert_all_equal(a: list, b: list):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------------------------------------
# 2. Full state round trip
# ----------------------------------------------------------------------------------------------------------
def test_full_state_round_trip(tmp_path):
    first = make_trainer(tmp_path)
    assert first.run() == 0
    saved = variables(first)
    assert counters(first)[0::2] == (200, 200 // STEPS_PER_UPDATE)
    assert first.learner.optimizer.iterations.numpy() == first.counters.updates == 20
    assert all(np.any(s != 0) for s in first.learner.optimizer.second)  # slots really were trained

    second = make_trainer(tmp_path)
    try:
        assert "resuming from step 200" in second.out.getvalue()
        # Weights (every conv, fc and head variable), optimizer slots and iterations, counters.
        assert len(second.learner.net.variables) == 2 * (2 + 3)
        assert_all_equal(variables(second), saved)
        assert counters(second) == counters(first)
        assert second.counters.claimed_steps == 200
        assert abs(second.counters.wall_time_s - float(first.store.state_vars["wall_time_s"].numpy())) < 1e-9
        # The learning-rate schedule continues where it stopped (it is a function of env_steps).
        hp = second.hp
        assert hparams.learning_rate_at(hp, second.counters.env_steps) == hparams.learning_rate_at(hp, 200) == 0.0
        assert hparams.learning_rate_at(hp, 100) == pytest.approx(hp.learning_rate / 2)
    finally:
        second.close()


def _write_foreign_checkpoint(logdir, trainer, **objects):
    """A checkpoint in logdir's checkpoint dir holding `objects` instead of what the trainer saves."""
    ckpt_dir = os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR)
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # a trainer that never saved made none
    os.makedirs(ckpt_dir)
    prefix = tf.train.Checkpoint(**objects).write(os.path.join(ckpt_dir, "ckpt-20"))
    checkpoints.write_checkpoint_state(ckpt_dir, [prefix])


@pytest.mark.parametrize("kind", ["missing_optimizer", "extra_object"])
def test_restore_insists_every_object_matches(tmp_path, kind):
    trainer = make_trainer(tmp_path)
    trainer.close()
    objects = dict(model=trainer.learner.net, **trainer.store.state_vars)
    if kind == "extra_object":
        objects.update(optimizer=trainer.learner.optimizer, extra=tf.Variable(1.0))
    _write_foreign_checkpoint(tmp_path, trainer, **objects)
    with pytest.raises(RunError, match="does not fit this network"):
        make_trainer(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# 4. Corrupt checkpoints: fall back to the previous one with a warning, or stop - never restart silently
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory):
    """A run directory with checkpoints at steps 100, 200, 300 whose weights differ; {step: variables}."""
    logdir = tmp_path_factory.mktemp("three")
    trainer = make_trainer(logdir, checkpoints_kept=3)
    saved = {}
    for step in (100, 200, 300):
        trainer.counters.env_steps = step
        trainer.counters.updates = step // 10
        trainer.learner.net.variables[0].assign_add(tf.ones_like(trainer.learner.net.variables[0]))
        trainer.save()
        saved[step] = variables(trainer)
    trainer.close()
    return logdir, saved


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def _damage(ckpt_dir, what):
    data = lambda n: glob.glob(os.path.join(ckpt_dir, f"ckpt-{n}.data-*"))[0]  # noqa: E731
    index = lambda n: os.path.join(ckpt_dir, f"ckpt-{n}.index")  # noqa: E731
    state = os.path.join(ckpt_dir, "checkpoint")
    if what == "truncated_data":
        _truncate(data(300))
    elif what == "truncated_index":
        _truncate(index(300))
    elif what == "flipped_byte":  # bit rot inside a tensor: caught by TF's per-tensor CRC32C
        with open(data(300), "r+b") as f:
            f.seek(os.path.getsize(data(300)) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif what == "missing_data":
        os.remove(data(300))
    elif what == "two_newest_truncated":
        _truncate(data(300))
        _truncate(index(200), 0.3)
    elif what in ("state_garbage", "state_empty"):
        with open(state, "w") as f:
            f.write("\x00\x17 not a checkpoint state {{{" if what == "state_garbage" else "")
    elif what == "state_missing":
        os.remove(state)
    elif what == "all_truncated":
        for n in (100, 200, 300):
            _truncate(data(n))


@pytest.mark.parametrize("damage, resumed, skipped", [
    ("truncated_data", 200, ["ckpt-300"]),
    ("truncated_index", 200, ["ckpt-300"]),
    ("flipped_byte", 200, ["ckpt-300"]),
    ("missing_data", 200, ["ckpt-300"]),
    ("two_newest_truncated", 100, ["ckpt-300", "ckpt-200"]),
    ("state_garbage", 300, []),
    ("state_empty", 300, []),
    ("state_missing", 300, []),
])
def test_corrupt_checkpoint_falls_back_with_a_warning(tmp_path, capsys, three_checkpoints, damage, resumed, skipped):
    source, saved = three_checkpoints
    logdir = tmp_path / "run"
    shutil.copytree(source, logdir)
    _damage(os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR), damage)
    capsys.readouterr()
    trainer = make_trainer(logdir, checkpoints_kept=3)
    try:
        err = capsys.readouterr().err
        assert f"resuming from step {resumed}" in trainer.out.getvalue()
        assert counters(trainer)[0] == resumed and counters(trainer)[2] == resumed // 10
        assert_all_equal(variables(trainer)[:-3], saved[resumed][:-3])
        if skipped:  # one warning line naming the skipped checkpoint(s) and the one resumed from
            [line] = [l for l in err.splitlines() if l.startswith("warning:")]
            assert all(name in line for name in skipped) and f"ckpt-{resumed}" in line
        else:  # the lost state file is rebuilt from the checkpoints on disk, so rotation goes on
            assert "rebuilt" in err
            state = tf.train.get_checkpoint_state(trainer.store.ckpt_dir)
            assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-100", "ckpt-200",
                                                                                       "ckpt-300"]
            assert trainer.store.manager.checkpoints == list(state.all_model_checkpoint_paths)
    finally:
        trainer.close()


def test_no_readable_checkpoint_stops_instead_of_starting_over(tmp_path, three_checkpoints):
    source, _ = three_checkpoints
    logdir = tmp_path / "run"
    shutil.copytree(source, logdir)
    ckpt_dir = os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR)
    _damage(ckpt_dir, "all_truncated")
    before = file_hashes(ckpt_dir)
    with pytest.raises(RunError) as e:
        make_trainer(logdir)
    assert "no checkpoint in" in str(e.value) and all(f"ckpt-{n}" in str(e.value) for n in (100, 200, 300))
    assert "\n" not in str(e.value)
    assert file_hashes(ckpt_dir) == before
    make_trainer(logdir / "fresh").close()  # the lock was released


def test_crash_leftovers_are_ignored_and_cleaned(tmp_path, three_checkpoints):
    """What a crash mid-save leaves: ckpt-N_temp/ with shards (before the merge), or ckpt-N files the state file
    does not name yet (before the state update). Resume uses the newest checkpoint the state file names."""
    source, saved = three_checkpoints
    logdir = tmp_path / "run"
    shutil.copytree(source, logdir)
    ckpt_dir = os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR)
    os.makedirs(os.path.join(ckpt_dir, "ckpt-400_temp"))
    with open(os.path.join(ckpt_dir, "ckpt-400_temp", "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"half a shard")
    for path in glob.glob(os.path.join(ckpt_dir, "ckpt-300.*")):  # a complete ckpt-350 the state does not name
        shutil.copy(path, path.replace("ckpt-300", "ckpt-350"))
    trainer = make_trainer(logdir, checkpoints_kept=3)
    try:
        assert counters(trainer)[0] == 300
        assert not os.path.exists(os.path.join(ckpt_dir, "ckpt-400_temp"))
    finally:
        trainer.close()


# ----------------------------------------------------------------------------------------------------------
# 5. Incompatible checkpoints given to a3c.py: one line, exit 2, checkpoints untouched
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nature_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("nature")
    trainer = make_trainer(logdir, network="nature", total_env_steps=20)
    assert trainer.run() == 0
    return logdir


@pytest.mark.parametrize("change, message", [
    (["--network", "a3c"], "trained with network='nature'"),
    (["--env-id", "ALE/Breakout-v5"], "trained with env_id='ALE/Pong-v5'"),
    ({"num_actions": 4}, "policy over 6 actions"),
    ({"config_network": "a3c"}, "does not fit this network"),  # config.json lost its truth: the weights decide
    (["--optimizer", "adam"],
     "trained with optimizer='rmsprop' but this run has optimizer='adam'; pass --optimizer rmsprop"),
    (["--per-thread-stats"], "trained with per_thread_stats=False but this run has per_thread_stats=True; "
                             "pass --no-per-thread-stats"),
    (["--center-frames"], "trained with center_frames=False but this run has center_frames=True; "
                          "pass --no-center-frames"),
    # A config saved before the field existed was trained without centring.
    ({"drop_field": "center_frames", "argv": ["--center-frames"]}, "trained with center_frames=False"),
])
def test_incompatible_checkpoint_is_refused(tmp_path, capsys, monkeypatch, nature_run, change, message):
    logdir = tmp_path / "run"
    shutil.copytree(nature_run, logdir)
    argv = ["--logdir", str(logdir), "--threads", "2", "--envs-per-thread", "2", "--network", "nature",
            "--no-progress-bar", "--total-env-steps", "40"]
    monkeypatch.setenv(envs.FAKE_ENV_VAR, "fakes:make_env")
    if isinstance(change, list):
        argv += change
    elif "drop_field" in change:
        config_path = os.path.join(logdir, checkpoints.CONFIG_FILE)
        config = json.load(open(config_path))
        del config[change["drop_field"]]
        checkpoints.write_json_atomic(config_path, config)
        argv += change["argv"]
    elif "num_actions" in change:
        monkeypatch.setenv(fakes.OPTIONS_VAR, json.dumps({"num_actions": change["num_actions"]}))
    else:
        config_path = os.path.join(logdir, checkpoints.CONFIG_FILE)
        config = json.load(open(config_path))
        config["network"] = change["config_network"]
        checkpoints.write_json_atomic(config_path, config)
        argv[argv.index("nature")] = "a3c"
    before = file_hashes(os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR))
    capsys.readouterr()
    assert a3c.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert file_hashes(os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR)) == before


# ----------------------------------------------------------------------------------------------------------
# 6. Rotation and the logdir lock
# ----------------------------------------------------------------------------------------------------------
def test_rotation_keeps_exactly_checkpoints_kept_and_never_rewrites_one(tmp_path):
    trainer = make_trainer(tmp_path, checkpoints_kept=2)
    try:
        ckpt_dir = trainer.store.ckpt_dir
        for step in range(20, 140, 20):
            trainer.counters.env_steps = step
            trainer.save()
        indexes = sorted(glob.glob(os.path.join(ckpt_dir, "ckpt-*.index")), key=checkpoints.ckpt_number)
        assert [os.path.basename(p) for p in indexes] == ["ckpt-100.index", "ckpt-120.index"]
        assert len(glob.glob(os.path.join(ckpt_dir, "ckpt-*.data-*"))) == 2
        state = tf.train.get_checkpoint_state(ckpt_dir)
        assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-100", "ckpt-120"]
        # No progress since the last save: the checkpoint is not rewritten in place (a crash there would
        # corrupt the newest good checkpoint).
        before = file_hashes(ckpt_dir)
        trainer.learner.net.variables[0].assign_add(tf.ones_like(trainer.learner.net.variables[0]))
        assert trainer.save().endswith("ckpt-120")
        assert file_hashes(ckpt_dir) == before
        # A second trainer on the same logdir is refused while the first holds it.
        with pytest.raises(RunError, match="in use by another a3c.py process"):
            make_trainer(tmp_path)
    finally:
        trainer.close()
    make_trainer(tmp_path).close()  # and accepted once it is released


def test_the_lock_names_its_holder_and_a_forked_child_does_not_keep_it(tmp_path):
    """A child forked without exec (an AsyncVectorEnv worker) that outlives its trainer must not refuse the resume."""
    lock = checkpoints.LogdirLock(str(tmp_path))
    with pytest.raises(RunError, match=rf"in use by another a3c.py process \(pid {os.getpid()}\)"):
        checkpoints.LogdirLock(str(tmp_path))
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only says it runs (its fork hooks are done) and waits to be killed
        os.write(ready_w, b"x")
        time.sleep(60)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        lock.release()  # the trainer is gone, its child lives on
        checkpoints.LogdirLock(str(tmp_path)).release()
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        os.close(ready_r), os.close(ready_w)


def _orphaned_lock(logdir, hold_s: float, zombie: bool = False) -> tuple[subprocess.Popen, subprocess.Popen]:
    """A process that holds the logdir's flock for `hold_s` while the lock file names a trainer that has exited
    (reaped, or a zombie nobody has waited for yet), as a worker a killed trainer started would."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    if zombie:
        wait_until(lambda: open(f"/proc/{gone.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", 30, "a zombie")
    else:
        gone.wait()
    holder = subprocess.Popen([sys.executable, "-c", f"""if True:
        import fcntl, sys, time
        f = open({os.path.join(str(logdir), checkpoints.LOCK_FILE)!r}, "a+")
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0); f.truncate(); f.write("{gone.pid}"); f.flush()
        print("held", flush=True)
        time.sleep({hold_s})"""], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder, gone  # the caller keeps `gone`: dropping the Popen would reap the zombie


def test_a_lock_left_to_a_dead_trainers_child_is_waited_for_then_refused_naming_the_holder(tmp_path, capsys):
    holder, gone = _orphaned_lock(tmp_path, hold_s=1.0)
    try:
        checkpoints.LogdirLock(str(tmp_path), orphan_grace_s=30).release()  # the holder lets go within the grace
        assert holder.wait(10) == 0  # it ran its hold out: the lock was not taken from under it
        assert f"(pid {gone.pid}) has exited; waiting up to 30 s" in capsys.readouterr().err
    finally:
        holder.kill(), holder.wait()
    holder, gone = _orphaned_lock(tmp_path, hold_s=60, zombie=True)  # an unreaped trainer counts as gone too
    try:
        with pytest.raises(RunError, match=rf"\(pid {gone.pid} has exited; pid {holder.pid} still holds the lock\); "
                                            "stop it or choose another --logdir"):
            checkpoints.LogdirLock(str(tmp_path), orphan_grace_s=0.5)
    finally:
        holder.kill(), holder.wait(), gone.wait()
    checkpoints.LogdirLock(str(tmp_path), orphan_grace_s=0).release()


# ----------------------------------------------------------------------------------------------------------
# 7. Terminated vs truncated, and 8. autoreset transitions never enter the loss
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def learner():
    hp = hparams.HParams(gamma=0.9, gae_lambda=1.0, clip_rewards=False, value_coef=0.5, entropy_beta=0.01)
    keras.utils.set_random_seed(1)
    learner = A3CLearner(hp, 3, device="/CPU:0")
    learner.net.value_head.bias.assign([2.0])  # values far from 0, so "no bootstrap" and "V" differ clearly
    return learner


def snapshot(learner) -> list:
    return [v.numpy() for v in learner.net.variables + list(learner.optimizer.variables)]


def load(learner, values):
    for v, x in zip(learner.net.variables + list(learner.optimizer.variables), values):
        v.assign(x)


@pytest.mark.parametrize("end", ["terminated", "truncated"])
def test_termination_targets_use_zero_and_truncation_bootstraps_from_v(learner, end):
    """One env whose episodes last one step: t=0 ends the episode, t=1 is the autoreset transition. The train
    step's value target for t=0 is r_0 after a termination, r_0 + gamma * V(final observation) after a
    truncation - read back through the metrics train_step returns (advantage = target - V(s_0))."""
    env = fakes.FakeAtariVectorEnv(1, num_actions=3, episode_length=1)
    agent = BatchAgents(env, seed=3)
    rollout, _ = agent.collect(learner.policy(), 2)
    if end == "truncated":  # the fake env alternates: episode 0 terminates, episode 1 is truncated
        rollout, _ = agent.collect(learner.policy(), 2)
    assert rollout.terminated[0, 0] == (end == "terminated") and rollout.truncated[0, 0] == (end == "truncated")
    assert list(rollout.valid[:, 0]) == [True, False]
    v = learner.net(rollout.obs[:, 0]).value.numpy()  # V(s_0), V(s_1): s_1 is the episode's final observation
    v_next_episode = float(rollout.bootstrap_value[0])
    r = float(rollout.rewards[0, 0])
    before = snapshot(learner)
    metrics = learner.train_on(rollout, 0.0)
    load(learner, before)
    target = r if end == "terminated" else r + 0.9 * v[1]
    assert metrics["advantage"] == pytest.approx(target - v[0], abs=1e-5)
    assert metrics["value"] == pytest.approx(0.5 * (target - v[0]) ** 2, rel=1e-5)
    wrong = [r + 0.9 * v[1], r + 0.9 * v_next_episode] if end == "terminated" else [r, r + 0.9 * v_next_episode]
    for other in wrong:  # the alternatives are well outside the 1e-5 tolerance used above
        assert abs(metrics["advantage"] - (other - v[0])) > 1e-3


def _rollout(poison: bool, reset_valid: bool = False) -> Rollout:
    """T=3, B=2: t=0 ends env 0's episode (terminated) and env 1's (truncated); t=1 is the autoreset transition
    of both; t=2 is a normal step. `poison` fills the autoreset transition with a huge reward, junk flags, another
    action and (env 0, whose final observation is never used) a different observation."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (3, 2, 4, 84, 84), dtype=np.uint8)
    actions = np.array([[1, 2], [0, 0], [2, 1]], np.int32)
    rewards = np.array([[1.0, -1.0], [0.0, 0.0], [0.5, 0.0]], np.float32)
    terminated = np.array([[True, False], [False, False], [False, False]])
    truncated = np.array([[False, True], [False, False], [False, False]])
    valid = np.array([[True, True], [reset_valid, reset_valid], [True, True]])
    resets = np.array([[True, True], [False, False], [True, True]])
    if poison:
        obs[1, 0] = 255 - obs[1, 0]
        actions[1] = [2, 1]
        rewards[1] = [1e6, -1e6]
        terminated[1] = True
        truncated[1] = True
    return Rollout(obs, actions, rewards, terminated, truncated, valid, resets, np.zeros((2, 0), np.float32),
                   np.array([0.3, -0.2], np.float32))


def _train_from(learner, start, rollout):
    load(learner, start)
    metrics = learner.train_on(rollout, 1e-3)
    after = snapshot(learner)
    load(learner, start)
    return metrics, after


def test_autoreset_transition_never_enters_the_loss(learner):
    start = snapshot(learner)
    clean, clean_after = _train_from(learner, start, _rollout(poison=False))
    poisoned, poisoned_after = _train_from(learner, start, _rollout(poison=True))
    assert clean["applied"] and poisoned["applied"]
    for key in ("loss", "policy", "value", "entropy", "advantage", "grad_norm"):
        assert poisoned[key] == pytest.approx(clean[key], rel=1e-6, abs=1e-7), key
    for a, b in zip(clean_after, poisoned_after):  # identical gradients -> identical updated weights and slots
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    # Control: were the transition counted, the poison would dominate the loss.
    counted, _ = _train_from(learner, start, _rollout(poison=True, reset_valid=True))
    assert counted["value"] > 1e9


# ----------------------------------------------------------------------------------------------------------
# 11. NaN / inf never reach the shared weights
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_batch_is_skipped_before_the_weights_change(learner, bad):
    start = snapshot(learner)
    iterations = int(learner.optimizer.iterations.numpy())
    rollout = _rollout(poison=False)
    rollout.rewards[0, 0] = bad
    metrics = learner.train_on(rollout, 1e-3)
    assert not metrics["applied"] and metrics["iteration"] == iterations
    assert_all_equal(snapshot(learner), start)
    assert all(np.all(np.isfinite(v)) for v in snapshot(learner))


def test_trainer_counts_skipped_updates_and_stops_after_too_many(tmp_path, capsys):
    trainer = make_trainer(tmp_path, factory=fakes.factory(nan_rewards=True), threads=1, total_env_steps=10_000)
    start = variables(trainer)
    assert trainer.run() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FloatingPointError" in err and "NaN/inf in 10 updates in a row" in err
    c = trainer.counters
    assert (c.updates, c.skipped_updates) == (0, a3c.MAX_CONSECUTIVE_NONFINITE)
    assert int(trainer.learner.optimizer.iterations.numpy()) == 0
    assert_all_equal(variables(trainer)[:-3], start[:-3])  # weights and slots unchanged and finite
    # The last good state (the untouched weights) is saved.
    resumed = make_trainer(tmp_path, threads=1, total_env_steps=10_000)
    try:
        assert_all_equal(variables(resumed)[:-3], start[:-3])
        assert counters(resumed)[2] == 0
    finally:
        resumed.close()


def test_logs_that_cannot_be_opened_fail_before_training_and_release_the_logdir(tmp_path):
    trainer = make_trainer(tmp_path, threads=1, total_env_steps=10_000)
    os.makedirs(tmp_path / "progress.csv")  # the CSV cannot be opened for appending
    with pytest.raises(RunError, match="cannot write logs to"):
        trainer.run()
    assert trainer.counters.env_steps == 0
    os.rmdir(tmp_path / "progress.csv")
    again = make_trainer(tmp_path, threads=1, total_env_steps=10_000)  # the logdir lock was released
    again.close()


# ----------------------------------------------------------------------------------------------------------
# 10. (the crash itself is tested through the CLI) A thread stuck inside env.step cannot hang the exit
# ----------------------------------------------------------------------------------------------------------
class HangingEnv(fakes.FakeAtariVectorEnv):
    def __init__(self, num_envs, hang_at_step):
        super().__init__(num_envs)
        self.hang_at_step = hang_at_step
        self.hanging = threading.Event()
        self.release = threading.Event()

    def step(self, actions):
        if self.steps + 1 == self.hang_at_step:
            self.hanging.set()
            self.release.wait()
        return super().step(actions)


def test_a_thread_stuck_in_the_env_does_not_hang_the_exit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(a3c, "JOIN_TIMEOUT_S", 2.0)
    envs = {}

    def factory(index, num_envs):
        envs[index] = HangingEnv(num_envs, hang_at_step=7 if index == 1 else 0)  # in its 2nd rollout
        return envs[index]
    trainer = make_trainer(tmp_path, factory=factory, total_env_steps=10**9)

    stopped_at = []

    def stop_once_hanging():  # as a signal would
        envs[1].hanging.wait(60)
        stopped_at.append(time.monotonic())
        trainer.stop_event.set()
    timer = threading.Thread(target=stop_once_hanging)
    timer.start()
    try:
        assert trainer.run() == 0
        # the join timeout (2 s) and a save, not the hang (which lasts until `release`); the margin is for a
        # loaded machine (pytest -n 2 runs another test beside this one)
        assert time.monotonic() - stopped_at[0] < 20
        err = capsys.readouterr().err
        assert "learner thread(s) [1] did not stop within 2 s" in err
        assert trainer.store.saved_path and checkpoints.checkpoint_problem(trainer.store.saved_path) is None
    finally:
        envs[1].release.set()
        timer.join()


# ----------------------------------------------------------------------------------------------------------
# 12. Concurrency: exact counts
# ----------------------------------------------------------------------------------------------------------
def test_threads_apply_exactly_n_times_k_updates(learner):
    start = snapshot(learner)
    iterations = int(learner.optimizer.iterations.numpy())
    N, K = 4, 6
    errors = []

    def work(i):
        try:
            for k in range(K):
                rollout = _rollout(poison=False)
                assert learner.train_on(rollout._replace(rewards=rollout.rewards * (i + 1)), 1e-4)["applied"]
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert int(learner.optimizer.iterations.numpy()) == iterations + N * K
    assert all(np.all(np.isfinite(v)) for v in snapshot(learner))
    load(learner, start)


def test_trainer_counters_are_exact_with_four_threads(tmp_path):
    made = []

    def factory(index, num_envs):
        made.append(fakes.FakeAtariVectorEnv(num_envs, episode_length=3))
        return made[-1]
    N, K = 4, 5
    total = N * K * STEPS_PER_UPDATE
    trainer = make_trainer(tmp_path, factory=factory, threads=N, total_env_steps=total)
    assert trainer.run() == 0
    c = trainer.counters
    assert c.env_steps == c.claimed_steps == total  # the step budget is met exactly, never overshot
    assert c.updates == int(trainer.learner.optimizer.iterations.numpy()) == N * K
    assert c.skipped_updates == 0 and c.in_flight == 0
    assert c.env_steps == sum(env.steps for env in made) * SMALL["envs_per_thread"]
    assert c.episodes == sum(env.episodes_ended for env in made) > 0
    assert all(np.all(np.isfinite(v)) for v in variables(trainer))
    assert all(env.closed for env in made)


def test_checkpoint_waits_for_updates_in_flight(tmp_path):
    """A periodic checkpoint is a consistent snapshot: taken between updates, its counters, optimizer iterations
    and weights belong together even while the threads train."""
    trainer = make_trainer(tmp_path, threads=2, total_env_steps=10**9,
                           factory=fakes.factory(step_sleep_s=0.002), checkpoints_kept=10)
    saves = []

    def save_while_training():
        while trainer.counters.updates < 3:
            time.sleep(0.01)
        for _ in range(3):
            saves.append(trainer.save())
            time.sleep(0.05)
        trainer.stop_event.set()
    runner = threading.Thread(target=save_while_training)
    runner.start()
    assert trainer.run() == 0
    runner.join()
    for prefix in saves:
        reader = tf.train.load_checkpoint(prefix)
        updates = reader.get_tensor("updates/.ATTRIBUTES/VARIABLE_VALUE")
        assert reader.get_tensor("optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE") == updates
        assert reader.get_tensor("env_steps/.ATTRIBUTES/VARIABLE_VALUE") == updates * STEPS_PER_UPDATE


# ----------------------------------------------------------------------------------------------------------
# 13. No retracing across the batch shapes training sees
# ----------------------------------------------------------------------------------------------------------
def test_train_step_and_act_trace_once(tmp_path):
    hp = hparams.HParams(clip_rewards=True)
    learner = A3CLearner(hp, 4, device="/CPU:0")
    rng = np.random.default_rng(0)
    for T, B in [(5, 2), (3, 4), (1, 1), (20, 3)]:
        rollout = Rollout(rng.integers(0, 256, (T, B, 4, 84, 84), dtype=np.uint8),
                          rng.integers(0, 4, (T, B)).astype(np.int32), rng.normal(size=(T, B)).astype(np.float32),
                          rng.random((T, B)) < 0.2, rng.random((T, B)) < 0.2, rng.random((T, B)) < 0.9,
                          rng.random((T, B)) < 0.2, np.zeros((B, 0), np.float32),
                          rng.normal(size=B).astype(np.float32))
        learner.train_on(rollout, 1e-4 * T)
    for B in (1, 2, 7):
        for greedy in (False, True):
            learner.policy(greedy)(rng.integers(0, 256, (B, 4, 84, 84), dtype=np.uint8), np.zeros((B, 0), np.float32),
                                   np.zeros(B, bool), np.array([0, B], np.int32))
    assert learner.train_step.experimental_get_tracing_count() == 1
    assert learner.act.experimental_get_tracing_count() == 1

    trainer = make_trainer(tmp_path, total_env_steps=100)  # a whole run, too
    assert trainer.run() == 0
    assert trainer.learner.train_step.experimental_get_tracing_count() == 1
    assert trainer.learner.act.experimental_get_tracing_count() == 1


# ----------------------------------------------------------------------------------------------------------
# 15. Seeds
# ----------------------------------------------------------------------------------------------------------
def test_every_env_and_thread_gets_a_distinct_seed(tmp_path):
    made = []

    def factory(index, num_envs):
        made.append(fakes.FakeAtariVectorEnv(num_envs))
        return made[-1]
    trainer = make_trainer(tmp_path, factory=factory, threads=3, envs_per_thread=4, seed=10)
    try:
        seeds = [s for env in made for s in env.reset_seeds[0]]
        assert seeds == list(range(10, 10 + 12))  # env j of thread i: seed + i * envs_per_thread + j
        assert len({tuple(agent.sample_seed[:1]) for agent in trainer.agents}) == 3  # per-thread action sampling
    finally:
        trainer.close()


def test_same_seed_same_initial_weights_different_seed_different(tmp_path):
    """Keras 3 initialisers do not follow tf.random.set_seed; configure_tensorflow seeds them too."""
    weights = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        trainer = make_trainer(tmp_path / name, seed=seed)
        weights[name] = [v.numpy() for v in trainer.learner.net.variables]
        trainer.close()
    assert_all_equal(weights["a"], weights["b"])
    assert not np.array_equal(weights["a"][0], weights["c"][0])


def test_resume_carries_the_recent_episode_window(tmp_path):
    """The logged "mean of the last 100 episodes" continues across a resume instead of restarting empty."""
    first = make_trainer(tmp_path)
    assert first.run() == 0
    log = first.run_log
    expected = (list(zip(log.recent_returns, log.recent_lengths)) + log.pending_episodes)[-run_log.RETURN_WINDOW:]
    first.close()
    assert len(expected) >= 5  # the fake env's episodes are 7-9 steps long: 200 steps end many of them
    second = make_trainer(tmp_path, total_env_steps=400)
    assert list(zip(second.run_log.recent_returns, second.run_log.recent_lengths)) == expected
    second.close()


def test_a_stale_episode_window_is_ignored(tmp_path):
    """A window saved for another step (the resume fell back to an older checkpoint) is not used."""
    first = make_trainer(tmp_path)
    assert first.run() == 0
    first.close()
    path = os.path.join(tmp_path, "checkpoints", checkpoints.EPISODE_WINDOW_FILE)
    with open(path) as f:
        saved = json.load(f)
    saved["env_steps"] += 1
    with open(path, "w") as f:
        json.dump(saved, f)
    second = make_trainer(tmp_path, total_env_steps=400)
    assert len(second.run_log.recent_returns) == 0
    second.close()


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_lost_run_config_falls_back_to_the_copy_beside_the_checkpoints(tmp_path, capsys, damage):
    first = make_trainer(tmp_path)
    assert first.run() == 0
    first.close()
    config_path = os.path.join(tmp_path, checkpoints.CONFIG_FILE)
    copy_path = os.path.join(tmp_path, checkpoints.CHECKPOINT_SUBDIR, checkpoints.CONFIG_FILE)
    if damage == "corrupt":
        with open(config_path, "w") as f:
            f.write('{"env_id": "ALE/Po')
    else:
        os.remove(config_path)
    capsys.readouterr()
    second = make_trainer(tmp_path, total_env_steps=400)
    try:
        assert "resuming from step 200" in second.out.getvalue()
        warning = capsys.readouterr().err
        assert f"using the copy saved with the checkpoints, {copy_path}" in warning and config_path in warning
        with open(config_path) as f:  # rewritten whole from this run's settings
            assert json.load(f)["total_env_steps"] == 400
    finally:
        second.close()


def test_both_configs_unreadable_is_one_error_naming_both(tmp_path):
    first = make_trainer(tmp_path)
    assert first.run() == 0
    first.close()
    config_path = os.path.join(tmp_path, checkpoints.CONFIG_FILE)
    copy_path = os.path.join(tmp_path, checkpoints.CHECKPOINT_SUBDIR, checkpoints.CONFIG_FILE)
    for path in (config_path, copy_path):
        with open(path, "w") as f:
            f.write("not json")
    ckpt_dir = os.path.join(tmp_path, checkpoints.CHECKPOINT_SUBDIR)
    before = file_hashes(ckpt_dir)
    with pytest.raises(RunError) as e:
        make_trainer(tmp_path)
    assert config_path in str(e.value) and f"the copy {copy_path} cannot be read either" in str(e.value)
    assert "\n" not in str(e.value)
    assert file_hashes(ckpt_dir) == before
    make_trainer(tmp_path / "fresh").close()  # the lock was released


@pytest.mark.parametrize("env_threads, words", [(1, "1 emulator thread per vector env"),
                                                (2, "2 emulator threads per vector env")])
def test_start_up_line_counts_emulator_threads_in_words(tmp_path, env_threads, words):
    trainer = make_trainer(tmp_path, env_threads=env_threads)
    trainer.close()
    assert words in trainer.out.getvalue()
