"""Reliability of the real command lines, in subprocesses: signals, kill -9 mid-save, a crashing learner thread, a
full disk, bad input, incompatible checkpoints for a3c_test.py, the env config stored with checkpoints, and
reproducibility with one thread.

a3c.py runs on the fake env through its test hook (A3C_FAKE_ENV=fakes:make_env); a3c_test.py, which has no such
hook, evaluates checkpoints trained on the fake env with the real Pong env (same 6 actions). Every subprocess
pays ~8 s of TensorFlow start-up, so independent ones run concurrently and each serves several assertions.
"""
import glob
import json
import os
import re
import resource
import shutil
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

import a3c_test
import checkpoints
from helpers import (Proc, cli_env, file_hashes, make_trainer, one_error_line, progress_rows,
                     run, wait_until)

SMOKE = ["--preset", "smoke", "--no-progress-bar"]  # 2 threads x 4 envs x t_max 5: 20 env steps per update
SMOKE_STEPS_PER_UPDATE = 20
SAVED = re.compile(r"saved (\S+): (\d+) env steps, (\d+) episodes, (\d+) updates")


def saved_line(out: str) -> tuple[str, int, int, int]:
    m = SAVED.search(out)
    assert m, out
    return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))


def ckpt_counters(prefix: str) -> tuple[int, int, int]:
    reader = tf.train.load_checkpoint(prefix)
    return tuple(int(reader.get_tensor(f"{k}/.ATTRIBUTES/VARIABLE_VALUE"))
                 for k in ("env_steps", "episodes", "updates"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished in-process run on the fake env (6 actions, like Pong) with non-default env settings."""
    logdir = tmp_path_factory.mktemp("trained") / "run"
    trainer = make_trainer(logdir, total_env_steps=40, frameskip=3, repeat_action_probability=0.1)
    assert trainer.run() == 0
    return logdir


# ----------------------------------------------------------------------------------------------------------
# 1. SIGINT / SIGTERM: clean stop, final checkpoint, exit 0, and the next run continues the counters
#    (6. a second trainer on the same logdir is refused meanwhile)
# ----------------------------------------------------------------------------------------------------------
def test_sigint_and_sigterm_stop_save_and_the_next_run_continues(tmp_path):
    logdir = tmp_path / "run"
    env = cli_env(step_sleep_s=0.002)
    args = SMOKE + ["--logdir", logdir, "--total-env-steps", 10**9, "--log-interval-s", 0.5]

    first = Proc("a3c.py", args, tmp_path, env, "first")
    wait_until(lambda: any(int(r["updates"]) >= 3 for r in progress_rows(logdir)), 90, "3 updates", first)
    code, _, err = run("a3c.py", args, tmp_path, env, "intruder", timeout=60)
    assert code == 2 and "is in use by another a3c.py process" in one_error_line(err)
    first.p.send_signal(signal.SIGINT)
    assert first.wait(60) == 0, first.err
    assert "SIGINT: stopped all threads" in first.err and "Traceback" not in first.err
    path1, steps1, episodes1, updates1 = saved_line(first.out)
    assert steps1 > 0 and updates1 == steps1 // SMOKE_STEPS_PER_UPDATE
    assert ckpt_counters(path1) == (steps1, episodes1, updates1)

    second = Proc("a3c.py", args, tmp_path, env, "second")
    wait_until(lambda: any(int(r["env_steps"]) >= steps1 + 3 * SMOKE_STEPS_PER_UPDATE for r in progress_rows(logdir)),
               90, "3 more updates", second)
    second.p.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0, second.err
    assert f"resuming from step {steps1} ({path1})" in second.out
    assert "SIGTERM: stopped all threads" in second.err and "Traceback" not in second.err
    path2, steps2, episodes2, updates2 = saved_line(second.out)
    assert steps2 >= steps1 + 3 * SMOKE_STEPS_PER_UPDATE and updates2 == steps2 // SMOKE_STEPS_PER_UPDATE
    assert episodes2 > episodes1

    # And after SIGTERM: the next session (in-process here, to spare a TF start-up) resumes from its checkpoint.
    trainer = make_trainer(logdir, threads=2, envs_per_thread=4)
    trainer.close()
    assert f"resuming from step {steps2} ({path2})" in trainer.out.getvalue()
    assert (trainer.counters.env_steps, trainer.counters.episodes, trainer.counters.updates) == (steps2, episodes2,
                                                                                                 updates2)
    assert int(trainer.learner.optimizer.iterations.numpy()) == updates2
    # progress.csv over both sessions: every counter only goes up.
    rows = progress_rows(logdir)
    for key in ("env_steps", "episodes", "updates"):
        values = [int(r[key]) for r in rows]
        assert values == sorted(values), key
    wall = [float(r["wall_time_s"]) for r in rows]
    assert wall == sorted(wall)


# ----------------------------------------------------------------------------------------------------------
# 3. kill -9 in the middle of a checkpoint save
# ----------------------------------------------------------------------------------------------------------
def test_kill_9_during_a_save_leaves_a_loadable_latest_checkpoint(tmp_path):
    # Two real kills: mid-write (tensors in ckpt-N_temp/, not merged) and mid-rotation (state file names the new
    # checkpoint, the oldest is half deleted). kill_during_save.py's third point, "merged" (ckpt-N complete but
    # not recorded), leaves what test_reliability.py::test_crash_leftovers_are_ignored_and_cleaned builds by hand.
    points = ["shards", "sweep"]
    procs = {}
    for point in points:
        env = cli_env(step_sleep_s=0.002)
        env.update(KILL_POINT=point, KILL_AT_SAVE="2")
        args = SMOKE + ["--logdir", tmp_path / point, "--total-env-steps", 10**9, "--checkpoint-interval-s", 1,
                        "--checkpoints-kept", 1]
        procs[point] = Proc("tests/kill_during_save.py", args, tmp_path, env, point)
    for point, proc in procs.items():
        wait_until(lambda: "FROZEN" in proc.out, 120, f"the {point} freeze", proc)
        proc.p.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL

    for point in points:
        ckpt_dir = os.path.join(tmp_path, point, checkpoints.CHECKPOINT_SUBDIR)
        listing = sorted(os.listdir(ckpt_dir))
        if point == "shards":
            assert any(name.endswith("_temp") for name in listing), listing
        first_prefix = tf.train.latest_checkpoint(ckpt_dir)
        trainer = make_trainer(tmp_path / point, threads=2, envs_per_thread=4, checkpoints_kept=1)
        try:
            resumed = trainer.store.saved_path
            assert resumed is not None and checkpoints.checkpoint_problem(resumed) is None
            assert trainer.counters.env_steps == ckpt_counters(resumed)[0] > 0
            # shards: the save in progress never became "latest", the one before it is used;
            # sweep: the new checkpoint was complete and recorded before anything was deleted.
            assert resumed == first_prefix
            assert not any(name.endswith("_temp") for name in os.listdir(ckpt_dir))
            trainer.counters.env_steps += SMOKE_STEPS_PER_UPDATE  # and the run goes on saving and rotating,
            trainer.save()  # which also sweeps what the killed rotation left half deleted
            assert len(glob.glob(os.path.join(ckpt_dir, "ckpt-*.index"))) == 1
            assert len(glob.glob(os.path.join(ckpt_dir, "ckpt-*.data-*"))) == 1
        finally:
            trainer.close()


# ----------------------------------------------------------------------------------------------------------
# 10. An exception in one learner thread
# ----------------------------------------------------------------------------------------------------------
def test_a_failing_env_stops_every_thread_saves_and_exits_nonzero(tmp_path):
    logdir = tmp_path / "run"
    marker = tmp_path / "failed_at"
    env = cli_env(fail_thread=1, fail_at_step=30, step_sleep_s=0.001, fail_marker=str(marker))
    proc = Proc("a3c.py", SMOKE + ["--logdir", logdir, "--total-env-steps", 10**9], tmp_path, env, "crash")
    code = proc.wait(120)
    exited = time.time()
    assert code == 1
    # every thread stopped and the checkpoint is written within seconds (with a margin for a loaded machine); a run
    # that went on would train to 10**9 steps and trip the timeout above
    assert exited - float(marker.read_text()) < 30.0
    line = one_error_line(proc.err)
    assert line.startswith("error: learner thread 1 failed: RuntimeError: fake env #1 failed at step 30; "
                           "all threads stopped; last good state saved in "), line
    prefix = line.rsplit(" ", 1)[1]
    assert checkpoints.checkpoint_problem(prefix) is None
    steps, _, updates = ckpt_counters(prefix)
    assert updates > 0 and steps == updates * SMOKE_STEPS_PER_UPDATE
    # Thread 1 failed in its 30th env step, i.e. in its 6th rollout: its 5 finished updates plus thread 0's
    # are in the checkpoint, and the failed rollout is not.
    assert updates >= 5


# ----------------------------------------------------------------------------------------------------------
# 14. Bad input: one line on stderr, exit 2, no traceback, existing checkpoints untouched
# ----------------------------------------------------------------------------------------------------------
def test_bad_command_lines_fail_in_one_line_without_touching_checkpoints(tmp_path, trained_run):
    ckpt_dir = os.path.join(trained_run, checkpoints.CHECKPOINT_SUBDIR)
    before = file_hashes(trained_run)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = {  # name: (argv, fake env?, expected words)
        "unknown_env": (["--env-id", "ALE/Nope-v5", "--logdir", trained_run], False, "unknown env id"),
        "bad_value": (["--threads", "0", "--logdir", trained_run], True, "--threads must be >= 1"),
        "bad_type": (["--learning-rate", "fast", "--logdir", trained_run], True, "invalid float value"),
        "unknown_flag": (["--lerning-rate", "0.1", "--logdir", trained_run], True, "unrecognized arguments"),
        "unwritable_logdir": (["--logdir", a_file / "sub"], True, "cannot write to --logdir"),
        "unknown_device": (["--devices", "GPU:7", "--logdir", trained_run], True, "device 'GPU:7' does not exist"),
        "t_max_per_thread": (["--t-max-per-thread", "5,0", "--logdir", trained_run], True,
                             "--t-max-per-thread must be positive integers"),
    }
    procs = {name: Proc("a3c.py", argv, tmp_path, cli_env(fake), name) for name, (argv, fake, _) in cases.items()}
    for name, proc in procs.items():
        assert proc.wait(60) == 2, (name, proc.err)
        assert cases[name][2] in one_error_line(proc.err), (name, proc.err)
    assert file_hashes(trained_run) == before
    assert os.listdir(ckpt_dir)


def _limit_file_size():
    limit = 1 << 20  # 1 MiB: logs fit, a checkpoint (~5 MB) does not; the write fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_during_a_save_keeps_the_previous_checkpoints(tmp_path, trained_run):
    logdir = tmp_path / "run"
    shutil.copytree(trained_run, logdir)
    ckpt_dir = os.path.join(logdir, checkpoints.CHECKPOINT_SUBDIR)
    before = file_hashes(ckpt_dir)
    previous = tf.train.latest_checkpoint(ckpt_dir)
    argv = ["--logdir", logdir, "--threads", 2, "--envs-per-thread", 2, "--total-env-steps", 10**9,
            "--checkpoint-interval-s", 1, "--no-progress-bar", "--frameskip", 3, "--repeat-action-probability", 0.1]
    proc = Proc("a3c.py", argv, tmp_path, cli_env(step_sleep_s=0.002), "full", preexec_fn=_limit_file_size)
    assert proc.wait(120) == 2, proc.err
    line = one_error_line(proc.err)
    assert "could not write checkpoint" in line and "File too large" in line, line
    assert f"the previous checkpoint {previous} is intact" in line
    assert file_hashes(ckpt_dir) == before  # no partial ckpt-N files, state file unchanged
    trainer = make_trainer(logdir, frameskip=3, repeat_action_probability=0.1)
    trainer.close()
    assert trainer.store.saved_path == previous


def test_a_failing_final_save_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    trainer = make_trainer(tmp_path, total_env_steps=40)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(trainer.store.manager, "save", disk_full)
    capsys.readouterr()
    assert trainer.run() == 2
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and "no earlier checkpoint exists" in line
    assert not [n for n in os.listdir(trainer.store.ckpt_dir) if n.startswith("ckpt-")]
    make_trainer(tmp_path).close()  # the logdir lock was released


# ----------------------------------------------------------------------------------------------------------
# 5. / 9. / 14. a3c_test.py: incompatible checkpoints and missing ones fail in one line; the env config stored
#    beside the checkpoints is used, and a conflicting --env warns
# ----------------------------------------------------------------------------------------------------------
def test_a3c_test_uses_the_stored_config_and_refuses_what_does_not_fit(tmp_path, trained_run):
    ckpt_dir = os.path.join(trained_run, checkpoints.CHECKPOINT_SUBDIR)
    config = json.load(open(os.path.join(ckpt_dir, checkpoints.CONFIG_FILE)))
    assert (config["env_id"], config["frameskip"], config["repeat_action_probability"], config["full_action_space"],
            config["num_actions"]) == ("ALE/Pong-v5", 3, 0.1, False, 6)
    exported = tmp_path / "exported"  # just the checkpoints directory, copied elsewhere
    shutil.copytree(ckpt_dir, exported)
    mismatched = tmp_path / "mismatched"  # weights of the a3c net, config claiming the nature net
    shutil.copytree(trained_run, mismatched)
    for path in (mismatched / "config.json", mismatched / checkpoints.CHECKPOINT_SUBDIR / "config.json"):
        checkpoints.write_json_atomic(str(path), dict(config, network="nature"))
    before = file_hashes(trained_run)
    env = cli_env(fake=False)
    quick = ["--episodes", 1, "--max-steps", 20, "--record", 0]
    procs = {
        "other_env": Proc("a3c_test.py", ["--model", exported, "--out", tmp_path / "eval", "--env",
                                          "ALE/SpaceInvaders-v5"] + quick, tmp_path, env, "other_env"),
        "fewer_actions": Proc("a3c_test.py", ["--model", trained_run, "--out", tmp_path / "e2", "--env",
                                              "ALE/Breakout-v5"] + quick, tmp_path, env, "fewer_actions"),
        "wrong_network": Proc("a3c_test.py", ["--model", mismatched, "--out", tmp_path / "e3"] + quick, tmp_path, env,
                              "wrong_network"),
        "missing": Proc("a3c_test.py", ["--model", tmp_path / "nope", "--out", tmp_path / "e4"] + quick, tmp_path, env,
                        "missing"),
        "sticky": Proc("a3c_test.py", ["--model", trained_run, "--out", tmp_path / "e5", "--repeat-action-probability",
                                       0.25] + quick, tmp_path, env, "sticky"),
        "bad_sticky": Proc("a3c_test.py", ["--model", trained_run, "--out", tmp_path / "e6", "--sticky-actions", 1.5]
                           + quick, tmp_path, env, "bad_sticky"),
    }
    for proc in procs.values():
        proc.wait(180)

    other = procs["other_env"]
    assert other.p.returncode == 0, other.err
    assert ("warning: evaluating on ALE/SpaceInvaders-v5 but the checkpoint was trained on ALE/Pong-v5"
            in other.err)
    scores = json.load(open(tmp_path / "eval" / "scores.json"))
    assert (scores["frameskip"], scores["repeat_action_probability"], scores["full_action_space"]) == (3, 0.1, False)
    assert scores["config"] == str(exported / checkpoints.CONFIG_FILE) and scores["trained_env"] == "ALE/Pong-v5"

    sticky = procs["sticky"]  # a robustness test under other sticky actions; everything else as trained
    assert sticky.p.returncode == 0, sticky.err
    scores = json.load(open(tmp_path / "e5" / "scores.json"))
    assert (scores["frameskip"], scores["repeat_action_probability"]) == (3, 0.25)

    for name, words in (("fewer_actions", "has 4 actions but the checkpoint's policy has 6"),
                        ("wrong_network", "cannot be loaded"), ("missing", "does not exist"),
                        ("bad_sticky", "--repeat-action-probability must be in [0, 1], got 1.5")):
        assert procs[name].p.returncode == 2, (name, procs[name].err)
        assert words in one_error_line(procs[name].err), (name, procs[name].err)
    assert file_hashes(trained_run) == before


# ----------------------------------------------------------------------------------------------------------
# 15. One thread + --deterministic-ops: identical runs (that another seed changes the initial weights is
#     test_reliability.py::test_same_seed_same_initial_weights_different_seed_different)
# ----------------------------------------------------------------------------------------------------------
def test_one_thread_deterministic_runs_are_identical(tmp_path):
    args = SMOKE + ["--threads", 1, "--deterministic-ops", "--total-env-steps", 200, "--log-interval-s", 600]
    procs = {name: Proc("a3c.py", args + ["--logdir", tmp_path / name, "--seed", 7], tmp_path, cli_env(), name)
             for name in ("a", "b")}
    for proc in procs.values():
        assert proc.wait(120) == 0, proc.err

    def losses(name):  # the single progress row: means over all 10 updates of the run
        [row] = progress_rows(tmp_path / name)
        return [float(row[k]) for k in ("policy", "value", "entropy", "grad_norm", "advantage", "mean_return")]

    def tensors(name):
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path / name / checkpoints.CHECKPOINT_SUBDIR))
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "wall_time" not in k}

    assert losses("a") == losses("b")
    a, b = tensors("a"), tensors("b")
    assert a.keys() == b.keys() and len(a) > 20 and a["updates/.ATTRIBUTES/VARIABLE_VALUE"] == 10
    for key in a:  # every weight, optimizer slot and counter after 10 updates
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("flag", ["--env-id", "--env"])
def test_a3c_test_takes_the_env_flag_of_a3c_py_and_keeps_the_old_name(flag):
    args = a3c_test.parse_args(["--model", "m", "--out", "o", flag, "ALE/Breakout-v5"])
    assert args.env_id == "ALE/Breakout-v5"
    assert a3c_test.parse_args(["--model", "m", "--out", "o"]).env_id is None
