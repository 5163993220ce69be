"""--algorithm acer on the trainer: the learner's replay and updates, the average network, checkpoints, the command
line (train, resume, evaluate) and its bad input. The math is tests/test_acer_math.py's; the memory replay's."""
import dataclasses
import json
import re

import numpy as np
import pytest
import tensorflow as tf

import fakes
import hparams
from batch_agents import BatchAgents
from helpers import cli_env, file_hashes, one_error_line, run
from learner import ACERLearner, make_learner
from specs import ActionSpec, ObsSpec, discrete

SMOKE = ["--preset", "smoke", "--no-progress-bar"]  # fake env: 2 threads x 4 envs x t_max 5


def _hp(**overrides):
    base = dict(env_id="ALE/Pong-v5", network="a3c", threads=1, envs_per_thread=4, t_max=5, algorithm="acer",
                replay_capacity=200, replay_start=60, replay_ratio=4.0, total_env_steps=10_000, logdir="/tmp/unused",
                lr_schedule="constant")
    return hparams.validate(dataclasses.replace(hparams.HParams(), **{**base, **overrides}))


def _agents(hp):
    return BatchAgents(fakes.make_env(0, hp.envs_per_thread), seed=0)


def test_learner_replays_after_replay_start_and_reports_its_metrics():
    hp = _hp()
    learner = make_learner(hp, discrete(6))
    assert isinstance(learner, ACERLearner) and learner.net.q_head
    assert "replay: 1 threads x 200" in learner.startup_lines[0]
    agents = _agents(hp)
    counts = []
    for i in range(8):  # 20 transitions per rollout: replay starts after 3 rollouts (60)
        rollout, _ = agents.collect(learner.policy(), hp.t_max)
        assert rollout.behaviour_params.shape == (5, 4, 6)  # mu(.|s) of every step, from act
        m = learner.train_on(rollout, 1e-4)
        assert m["applied"] and np.isfinite(m["loss"])
        assert m["replay_size"] == min(20 * (i + 1), 200)
        counts.append(m["off_policy_updates"])
        for key in ("rho", "rho_truncated", "trust_region_kl", "trust_region_scale", "on_policy_s", "replay_s"):
            assert np.isfinite(m[key]), key
    assert counts[:2] == [0, 0] and sum(counts[3:]) > 0  # Poisson(4) draws, once 60 transitions are held


@pytest.mark.parametrize("units, want", [("avx512_bf16", "bfloat16"), (None, "float32")])
def test_auto_precision_puts_both_networks_in_the_resolved_precision(monkeypatch, units, want):
    import network
    monkeypatch.setattr(network, "bf16_units", lambda device: units)
    learner = make_learner(_hp(precision="auto", replay_ratio=0.0), discrete(6))
    assert learner.precision == want
    for net in (learner.net, learner.avg_net):
        assert net.hidden.compute_dtype == want and all(v.dtype == tf.float32 for v in net.variables)
    rollout, _ = _agents(learner.hp).collect(learner.policy(), learner.hp.t_max)
    assert learner.train_on(rollout, 1e-4)["applied"]


def test_average_network_follows_the_weights_by_polyak_averaging():
    hp = _hp(replay_ratio=0.0, acer_avg_decay=0.9)
    learner = make_learner(hp, discrete(6))
    agents = _agents(hp)
    before = [v.numpy() for v in learner.avg_net.variables]
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, learner.net.variables))  # starts equal
    rollout, _ = agents.collect(learner.policy(), hp.t_max)
    learner.train_on(rollout, 1e-3)
    for old, avg, shared in zip(before, learner.avg_net.variables, learner.net.variables):
        np.testing.assert_allclose(avg.numpy(), 0.9 * old + 0.1 * shared.numpy(), rtol=1e-5, atol=1e-7)
    assert any(not np.array_equal(old, v.numpy()) for old, v in zip(before, learner.net.variables))
    objects = learner.checkpoint_objects()
    assert objects["avg_model"] is learner.avg_net  # saved: a resume keeps the trust region's anchor


def test_on_policy_rho_is_one_and_replayed_rho_moves_once_the_weights_change():
    hp = _hp(replay_ratio=0.0, learning_rate=1e-2)
    learner = make_learner(hp, discrete(6))
    agents = _agents(hp)
    rollout, _ = agents.collect(learner.policy(), hp.t_max)
    m = learner.train_on(rollout, 1e-2)
    assert m["rho"] == pytest.approx(1.0, abs=1e-5)  # mu is the policy that acted: the same weights
    m = learner.train_on(rollout, 1e-2)  # the same rollout again, after an update: now off-policy
    assert abs(m["rho"] - 1.0) > 1e-4


def test_both_networks_share_one_frame_preprocessing_and_the_update_is_unchanged():
    """The update preprocesses a replayed batch's T + 1 frames once, for the learner's unroll over all of them and
    the average network's over the first T (frames_input holds no weight). Its loss must be the one assembled from
    two separate unrolls, as before the sharing; the average network is moved off the weights first, so a wrong
    slice of the shared input (the last T steps, say) would show in the trust region's KL."""
    import acer_math
    hp = _hp(replay_ratio=0.0, center_frames=True, acer_avg_decay=0.5)
    learner = make_learner(hp, discrete(6))
    agents = _agents(hp)
    for _ in range(4):
        rollout, _ = agents.collect(learner.policy(), hp.t_max)
        # The average network now differs from the weights. (A step of 1e-2 sometimes killed every ReLU on these
        # frames, leaving both networks the same policy: a KL of ~1e-35, one run in four.)
        learner.train_on(rollout, 1e-3)
    assert any(not np.array_equal(a.numpy(), v.numpy()) for a, v in zip(learner.avg_net.variables,
                                                                         learner.net.variables))
    batch = learner.memories[0].sample(np.random.default_rng(3))
    B = batch.actions.shape[1]
    T = hp.t_max
    out = learner.net.unroll(tf.constant(batch.obs), batch.initial_state, batch.resets)
    avg = learner.avg_net.unroll(tf.constant(batch.obs[:T]), batch.initial_state, batch.resets[:T])
    want, parts = acer_math.acer_loss(
        tf.nn.softmax(out.policy_params[:T]), tf.nn.softmax(avg.policy_params), batch.behaviour_probs,
        out.q_values[:T], batch.actions, learner._learning_rewards(batch.rewards), batch.terminated,
        batch.truncated, batch.valid, out.value[-1], hp.gamma, hp.acer_c, hp.acer_delta, hp.value_coef,
        hp.entropy_beta, hp.acer_trust_region)
    assert float(parts["trust_region_kl"]) > 1e-6  # the two networks do differ on these frames
    # (after the reference: the update's Polyak step moves the average network, even at learning rate 0)
    got = learner._acer_update(True, 0)(
        batch.obs, batch.actions, batch.rewards, batch.terminated, batch.truncated, batch.valid, batch.resets,
        batch.initial_state, batch.behaviour_probs, np.zeros(B, np.float32), np.float32(0.0))
    np.testing.assert_allclose(float(got["loss"]), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(got["trust_region_kl"]), float(parts["trust_region_kl"]), rtol=1e-4)


def test_without_the_trust_region_the_update_skips_the_average_network_and_its_loss_is_unchanged():
    """--no-acer-trust-region: the average network's forward is not run (it only shapes the trust region), so the
    loss must equal acer_loss's with trust_region=False fed the real average policy (which differs from the weights
    here), and the KL metric reads 0 (it is not measured)."""
    import acer_math
    hp = _hp(replay_ratio=0.0, center_frames=True, acer_avg_decay=0.5, acer_trust_region=False,
             acer_delta=1e-4)  # a small delta, so that the trust region, had it been on, would bind
    learner = make_learner(hp, discrete(6))
    agents = _agents(hp)
    for _ in range(4):
        rollout, _ = agents.collect(learner.policy(), hp.t_max)
        learner.train_on(rollout, 1e-3)
    batch = learner.memories[0].sample(np.random.default_rng(3))
    B, T = batch.actions.shape[1], hp.t_max
    out = learner.net.unroll(tf.constant(batch.obs), batch.initial_state, batch.resets)
    avg = learner.avg_net.unroll(tf.constant(batch.obs[:T]), batch.initial_state, batch.resets[:T])
    args = (batch.behaviour_probs, out.q_values[:T], batch.actions, learner._learning_rewards(batch.rewards),
            batch.terminated, batch.truncated, batch.valid, out.value[-1], hp.gamma, hp.acer_c, hp.acer_delta,
            hp.value_coef, hp.entropy_beta)
    probs = tf.nn.softmax(out.policy_params[:T])
    want, parts = acer_math.acer_loss(probs, tf.nn.softmax(avg.policy_params), *args, False)
    assert float(parts["trust_region_kl"]) > 1e-6  # the average policy differs: had the update used it, the KL shows
    with_region, _ = acer_math.acer_loss(probs, tf.nn.softmax(avg.policy_params), *args, True)
    assert abs(float(with_region) - float(want)) > 1e-6  # and the trust region would have changed the loss
    got = learner._acer_update(True, 0)(
        batch.obs, batch.actions, batch.rewards, batch.terminated, batch.truncated, batch.valid, batch.resets,
        batch.initial_state, batch.behaviour_probs, np.zeros(B, np.float32), np.float32(0.0))
    np.testing.assert_allclose(float(got["loss"]), float(want), rtol=1e-5)
    assert float(got["trust_region_kl"]) == pytest.approx(0.0, abs=1e-6)
    assert float(got["trust_region_scale"]) == 0.0


def test_a_rollouts_replayed_updates_in_one_call_equal_one_call_each():
    """train_on hands a rollout's replayed batches to one graph (a while loop) instead of one call each: the weights,
    the average network and the optimizer's statistics after it, and the metrics' means, must be those of the
    updates applied one call at a time, in the same order. Two updates skipped, repeated or reordered would show."""
    hp = _hp(replay_ratio=0.0, center_frames=True, acer_avg_decay=0.5)
    learner = make_learner(hp, discrete(6))
    agents = _agents(hp)
    for _ in range(5):
        rollout, _ = agents.collect(learner.policy(), hp.t_max)
        learner.train_on(rollout, 1e-3)  # (1e-2 can kill every ReLU on these frames: see the test above)
    each = _replayed_in_one_call_equal_one_call_each(learner, count=3)
    assert len({m["trust_region_kl"] for m in each}) == 3  # three different updates, so the mean means something


def _replayed_in_one_call_equal_one_call_each(learner, count: int) -> list:
    """Apply `count` replayed batches one call each, rewind the weights, the average network, the optimizer statistics
    (and continuous ACER's generator of a'/u draws), apply the same batches in one `_replay_updates` call: the
    state after both and the metrics' means must match. Returns the per-call metrics."""
    memory, lr = learner.memories[0], np.float32(1e-3)
    state = list(learner.net.variables) + list(learner.avg_net.variables) + list(learner.optimizers[0].variables)
    if hasattr(learner, "sdn_rng"):
        state.append(learner.sdn_rng.state)
    before = [v.numpy() for v in state]
    rng, each = np.random.default_rng(3), []
    for _ in range(count):
        batch = memory.sample(rng)
        out = learner._acer_update(True, 0)(*batch, np.zeros(batch.valid.shape[1], np.float32), lr)
        each.append({k: float(out[k]) for k in ACERLearner.REPLAY_METRICS})
    one_at_a_time = [v.numpy() for v in state]
    for v, value in zip(state, before):
        v.assign(value)
    got = learner._replay_updates(0)(*memory.sample_many(np.random.default_rng(3), count), lr)
    moved = 0
    for v, want, start in zip(state, one_at_a_time, before):
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-5, atol=1e-7, err_msg=v.name)
        moved += not np.array_equal(want, start)
    assert moved > len(state) // 2  # the updates did move the weights, the average and the statistics
    for key in ACERLearner.REPLAY_METRICS:
        np.testing.assert_allclose(float(got[key]), np.mean([m[key] for m in each]), rtol=1e-5, err_msg=key)
    return each


@pytest.fixture(scope="module")
def acer_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("acer")
    logdir = root / "run"
    args = SMOKE + ["--algorithm", "acer", "--logdir", logdir, "--total-env-steps", 400, "--replay-capacity", 200,
                    "--replay-start", 40]
    code, out, err = run("a3c.py", args, root, cli_env(), "train", timeout=180)
    assert code == 0, err
    return root, logdir, out


def test_cli_trains_resumes_and_evaluates_an_acer_run(acer_run):
    root, logdir, out = acer_run
    assert re.search(r"replay: 2 threads x 200 transitions x [\d,]+ bytes", out)
    assert "saved " in out and "400 env steps" in out
    code, out, err = run("a3c.py", SMOKE + ["--algorithm", "acer", "--logdir", logdir, "--total-env-steps", 600,
                                            "--replay-capacity", 200, "--replay-start", 40], root, cli_env(),
                         "resume", timeout=180)
    assert code == 0 and "resuming from step 400" in out and "600 env steps" in out, err
    # --save-replay (on by default): the memories came back, and only the newest checkpoint's file is kept
    restored = re.search(r"replay: restored ([\d,]+) transitions saved with ckpt-400", out)
    assert restored and int(restored.group(1).replace(",", "")) > 0, out
    assert sorted(p.name for p in (logdir / "checkpoints").glob("replay-*")) == ["replay-600.npz"]
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(logdir / "checkpoints")))
    assert any(name.startswith("avg_model/") for name in reader.get_variable_to_shape_map())
    code, out, err = run("a3c_test.py", ["--model", logdir, "--out", root / "eval", "--episodes", 1, "--record", 0,
                                         "--max-steps", 100], root, cli_env(fake=False), "eval", timeout=180)
    assert code == 0 and (root / "eval" / "scores.json").exists(), err  # the Q-head net loads for evaluation


@pytest.mark.parametrize("args, words", [
    (["--replay-ratio", "-1"], "--replay-ratio must be >= 0"),
    (["--replay-batch-envs", "-2"], "--replay-batch-envs must be >= 0"),
    (["--replay-save-interval-s", "-5"], "--replay-save-interval-s must be >= 0"),
    (["--acer-c", "0"], "--acer-c must be > 0"),
    (["--acer-delta", "-1"], "--acer-delta must be > 0"),
    (["--replay-capacity", "30"], "--replay-capacity 30 holds less than two rollouts of 5 steps x 4 envs"),
    (["--replay-capacity", str(10**12)], "GiB of replay, but"),
    (["--executor", "ray"], "--algorithm acer runs on --executor local"),
])
def test_acer_bad_input_is_one_line_and_touches_nothing(acer_run, tmp_path, args, words):
    _, logdir, _ = acer_run
    before = file_hashes(logdir / "checkpoints")
    code, out, err = run("a3c.py", SMOKE + ["--algorithm", "acer", "--logdir", logdir, *args], tmp_path, cli_env(),
                         timeout=120)
    assert code == 2 and words in one_error_line(err)
    assert file_hashes(logdir / "checkpoints") == before


def test_a3c_and_acer_checkpoints_do_not_resume_as_each_other(acer_run, tmp_path):
    _, logdir, _ = acer_run
    before = file_hashes(logdir / "checkpoints")
    code, out, err = run("a3c.py", SMOKE + ["--logdir", logdir], tmp_path, cli_env(), timeout=120)  # as a3c
    assert code == 2 and "algorithm" in one_error_line(err)
    assert file_hashes(logdir / "checkpoints") == before
    a3c_dir = tmp_path / "a3c"
    assert run("a3c.py", SMOKE + ["--logdir", a3c_dir, "--total-env-steps", 40], tmp_path, cli_env())[0] == 0
    code, out, err = run("a3c.py", SMOKE + ["--logdir", a3c_dir, "--algorithm", "acer"], tmp_path, cli_env())
    assert code == 2 and "algorithm" in one_error_line(err)


def test_acer_refuses_gsde_and_recurrent_networks(tmp_path):
    code, out, err = run("a3c.py", ["--env-id", "Pendulum-v1", "--algorithm", "acer", "--std-head", "sde", "--logdir",
                                    tmp_path / "run", "--no-progress-bar", "--envs-per-thread", 4], tmp_path,
                         cli_env(fake=False))
    assert code == 2 and "--algorithm acer needs --std-head shared or state" in one_error_line(err)
    code, out, err = run("a3c.py", SMOKE + ["--algorithm", "acer", "--network", "a3c-lstm", "--logdir",
                                            tmp_path / "lstm"], tmp_path, cli_env())
    assert code == 2 and "--algorithm acer needs a feed-forward --network" in one_error_line(err)


def test_benchmark_reports_acer_time_split_between_on_policy_and_replay(tmp_path):
    out, scratch = tmp_path / "bench.json", tmp_path / "tmp"
    scratch.mkdir()
    code, stdout, err = run("benchmark.py", ["--preset", "smoke", "--algorithm", "acer", "--replay-start", 40,
                                             "--replay-capacity", 200, "--seconds", 4, "--warmup", 3, "--json", out],
                            tmp_path, dict(cli_env(fake=False), TMPDIR=str(scratch)), timeout=240)
    assert code == 0, err[-2000:]
    assert not list(scratch.iterdir())  # the run's temporary logdir (checkpoints, events) is gone
    split = json.loads(out.read_text())["acer_update_split"]
    assert split["on_policy_fraction"] + split["replay_fraction"] == pytest.approx(1.0, abs=2e-3)
    assert split["replay_fraction"] > 0 and split["off_policy_updates_per_rollout"] > 0  # replay did run
    assert "ACER update time: on-policy" in stdout


def _learner_with_memories(**overrides):
    hp = _hp(threads=2, replay_ratio=0.0, **overrides)
    learner = make_learner(hp, discrete(6))
    agents = [BatchAgents(fakes.make_env(i, hp.envs_per_thread), seed=10 * i) for i in range(2)]
    for _ in range(4):
        for i, agent in enumerate(agents):
            learner.train_on(agent.collect(learner.policy(), hp.t_max)[0], 1e-4, thread=i)
    return learner


def test_replay_memories_go_through_named_arrays_into_a_new_learner():
    learner = _learner_with_memories()
    arrays = {name: np.array(a) for name, a in learner.replay_arrays().items()}
    assert {name.split("/")[0] for name in arrays} == {"thread0", "thread1"}
    fresh = make_learner(learner.hp, discrete(6))
    assert fresh.load_replay_arrays(arrays) == 2 * 4 * 20  # 4 rollouts of 5 steps x 4 envs per thread
    for old, new in zip(learner.memories, fresh.memories):
        a, b = old.sample(np.random.default_rng(1)), new.sample(np.random.default_rng(1))
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = make_learner(_hp(threads=2, envs_per_thread=2, replay_ratio=0.0), discrete(6))
    with pytest.raises(ValueError, match="thread 0's memory: it holds 50 steps x 4 envs"):
        other.load_replay_arrays(arrays)
    assert other.memories == [None, None]  # nothing half-loaded


def test_off_policy_batches_take_replay_batch_envs_columns():
    learner = _learner_with_memories(replay_batch_envs=2)
    hp = dataclasses.replace(learner.hp, replay_ratio=50.0)
    learner.hp = hp
    rollout, _ = _agents(hp).collect(learner.policy(), hp.t_max)
    seen = []
    real = learner.memories[0].sample_many
    learner.memories[0].sample_many = lambda rng, count, columns=None: seen.append((count, columns)) or real(
        rng, count, columns)
    m = learner.train_on(rollout, 1e-4)
    assert m["off_policy_updates"] > 0 and seen == [(m["off_policy_updates"], 2)] and m["applied"]


def _copy_run(acer_run, tmp_path):
    import shutil
    _, logdir, _ = acer_run
    copy = tmp_path / "run"
    shutil.copytree(logdir, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


RESUME = SMOKE + ["--algorithm", "acer", "--total-env-steps", 700, "--replay-capacity", 200, "--replay-start", 40]


@pytest.mark.parametrize("damage, words", [
    ("truncate", "is damaged"),
    ("remove", "(no replay-N.npz beside ckpt-{n} or any other checkpoint)"),
    ("layout", "does not fit this run"),
])
def test_a_missing_damaged_or_foreign_replay_file_warns_and_the_resume_goes_on(acer_run, tmp_path, damage, words):
    logdir = _copy_run(acer_run, tmp_path)
    [path] = (logdir / "checkpoints").glob("replay-*.npz")  # 400, or 600 after the resume test
    n = int(re.search(r"replay-(\d+)", path.name).group(1))
    words = words.format(n=n)
    extra = []
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "remove":
        path.unlink()
    else:
        extra = ["--envs-per-thread", "2"]  # the memories were 4 envs wide
    code, out, err = run("a3c.py", RESUME + ["--logdir", logdir, *extra], tmp_path, cli_env(), timeout=180)
    assert code == 0 and f"resuming from step {n}" in out and "700 env steps" in out, err
    assert words in err and "starts empty" in err and "Traceback" not in err
    assert "replay: restored" not in out


def test_no_save_replay_writes_no_replay_file_and_a_full_disk_turns_it_off(acer_run, tmp_path, monkeypatch, capsys):
    logdir = _copy_run(acer_run, tmp_path)
    for p in (logdir / "checkpoints").glob("replay-*"):
        p.unlink()
    code, out, err = run("a3c.py", RESUME + ["--logdir", logdir, "--no-save-replay"], tmp_path, cli_env(),
                         timeout=180)
    assert code == 0 and "replay: restored" not in out and "no replay memory" not in err, err
    assert not list((logdir / "checkpoints").glob("replay-*"))
    import collections
    import shutil
    from helpers import make_trainer
    monkeypatch.setattr(shutil, "disk_usage", lambda path: collections.namedtuple("u", "total used free")(1, 1, 10))
    trainer = make_trainer(tmp_path / "small", algorithm="acer", replay_capacity=200, replay_start=40)
    try:
        assert not trainer.save_replay
        assert "--save-replay is off: the replay memories take up to" in capsys.readouterr().err
    finally:
        trainer.close()


def test_replay_is_saved_every_replay_save_interval_and_always_last_and_a_resume_takes_the_newest(tmp_path):
    """--replay-save-interval-s: a checkpoint before the interval is up writes no replay file (and keeps the older
    one), one after it does, the last always does; a resume from a checkpoint without its own file restores the
    newest older one and says which."""
    import time
    from helpers import make_trainer
    acer = dict(algorithm="acer", replay_capacity=200, replay_start=40, replay_save_interval_s=1200.0)
    trainer = make_trainer(tmp_path / "run", **acer)
    replays = lambda: sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("replay-*"))  # noqa: E731
    try:
        rollout, _ = trainer.agents[0].collect(trainer.learner.policy(), trainer.hp.t_max)
        trainer.learner.train_on(rollout, 1e-4, thread=0)  # something in thread 0's memory
        stored = len(trainer.learner.memories[0])
        assert stored > 0
        for steps, due, kept in [(100, False, []), (200, True, ["replay-200.npz"]), (300, False, ["replay-200.npz"])]:
            trainer.counters.env_steps = steps
            if due:
                trainer.replay_saved_at = time.monotonic() - 1200.0
            trainer.save()
            assert replays() == kept, (steps, replays())
        assert "replay: saved with a checkpoint every 1200 s and with the last one" in trainer.out.getvalue()
    finally:
        trainer.close()
    resumed = make_trainer(tmp_path / "run", **acer)
    try:
        assert resumed.counters.env_steps == 300 and len(resumed.learner.memories[0]) == stored
        assert (f"replay: restored {stored:,} transitions saved with ckpt-200 (the newest replay file; the weights "
                f"are ckpt-300's)") in resumed.out.getvalue()
        resumed.counters.env_steps = 400
        resumed.save(with_replay=True)  # as the run's last checkpoint does
        assert replays() == ["replay-400.npz"]
    finally:
        resumed.close()


@pytest.mark.parametrize("preset, actions, probs", [("lunarlander", ((4,), np.int32), (4, 4)),
                                                     ("lunarlander-continuous", ((4, 2), np.float32), (4, 4))])
def test_lunarlander_preset_trains_acer_on_flat_observations_and_evaluates(tmp_path, preset, actions, probs):
    """The `lunarlander` presets end to end on a tiny budget: ACER's replay on 8-float observations (the MLP torso
    and its Q head, or the dueling critic for the continuous lander's Box(2) actions: mu kept as 2 means and 2
    log-stds), the replay memory saved with the checkpoint, and a3c_test.py reading the model back."""
    logdir = tmp_path / "ll"
    code, out, err = run("a3c.py", ["--preset", preset, "--total-env-steps", 1600, "--replay-start", 160,
                                    "--envs-per-thread", 4, "--logdir", logdir, "--no-progress-bar"],
                         tmp_path, cli_env(fake=False), timeout=240)
    assert code == 0, err[-2000:]
    config = json.loads((logdir / "config.json").read_text())
    assert config["algorithm"] == "acer" and config["observation_space"]["shape"] == [8]
    replay = np.load(logdir / "checkpoints" / "replay-1600.npz")
    assert replay["thread0/frames"].shape[1:] == (4, 8) and replay["thread0/probs"].shape[1:] == probs
    assert (replay["thread0/actions"].shape[1:], replay["thread0/actions"].dtype) == actions
    assert replay["thread0/valid"].any()  # it holds the rollouts it learned from
    code, out, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 2,
                                         "--max-steps", 50, "--record", 0, "--seed", 1], tmp_path, cli_env(fake=False))
    assert code == 0, err[-2000:]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["env_steps_trained"] == 1600 and len(scores["lengths"]) == 2


# ------------------------------------------------------------------------------------------------------
# Continuous actions: a Gaussian policy with the stochastic dueling critic (the paper's Section 5)
# ------------------------------------------------------------------------------------------------------
PENDULUM_OBS = ObsSpec((3,), "float32")
PENDULUM_ACTION = ActionSpec("box", 1, (-2.0,), (2.0,))


def _pendulum(hp):
    import envs
    return BatchAgents(envs.make_vector_env(hp, hp.envs_per_thread), seed=0)


def test_continuous_acer_replays_gaussian_rollouts_and_trains_policy_critic_and_advantage_head():
    hp = _hp(env_id="Pendulum-v1", network="auto", replay_start=40, normalize_obs=True, reward_scale=0.1,
             clip_rewards=False, episodic_life=False)
    learner = make_learner(hp, PENDULUM_ACTION, obs=PENDULUM_OBS)
    assert isinstance(learner, ACERLearner) and learner.net.q_head and not hasattr(learner.net, "q_values_head")
    agents = _pendulum(hp)
    watched = {v.path: v for v in learner.net.trainable_variables}
    start = {name: v.numpy().copy() for name, v in watched.items()}
    counts = []
    try:
        for _ in range(6):  # 20 transitions per rollout: replay from the third rollout on
            rollout, _ = agents.collect(learner.policy(), hp.t_max)
            assert rollout.behaviour_params.shape == (5, 4, 2) and rollout.actions.shape == (5, 4, 1)
            m = learner.train_on(rollout, 1e-3)
            assert m["applied"] and np.isfinite(m["loss"])
            for key in ("policy", "value", "entropy", "rho", "rho_truncated", "trust_region_kl", "advantage"):
                assert np.isfinite(m[key]), key
            counts.append(m["off_policy_updates"])
    finally:
        agents.close()
    memory = learner.memories[0]
    # --normalize-obs's statistics: the on-policy steps (valid ones) folded in once each; the average net reads alike
    assert learner.net.obs_norm.count.numpy() == 6 * 20  # no episode ended: every step valid
    np.testing.assert_array_equal(learner.avg_net.obs_norm.mean.numpy(), learner.net.obs_norm.mean.numpy())
    assert sum(counts[2:]) > 0 and memory.actions.shape[1:] == (4, 1) and memory.actions.dtype == np.float32
    # The newest rollout as stored: its actions as drawn, mu as the Gaussian's [mean, log_std] (no softmax)
    np.testing.assert_array_equal(memory.actions[25:30], rollout.actions)
    np.testing.assert_array_equal(memory.probs[25:30], rollout.behaviour_params)
    moved = {path for path, v in watched.items() if not np.array_equal(v.numpy(), start[path])}
    for layer in ("policy", "value", "advantage_fc", "advantage", "log_std", "policy_fc0", "value_fc0"):
        assert any(layer in path.split("/") for path in moved), (layer, sorted(moved))


def test_continuous_replayed_updates_in_one_call_equal_one_call_each():
    """As the discrete test above: the loop draws the same a'_t and u_i (one generator, the same order), so the
    weights, the average network, the optimizer statistics and the metrics' means must match."""
    hp = _hp(env_id="Pendulum-v1", network="auto", replay_ratio=0.0, acer_avg_decay=0.5, clip_rewards=False,
             episodic_life=False)
    learner = make_learner(hp, PENDULUM_ACTION, obs=PENDULUM_OBS)
    agents = _pendulum(hp)
    try:
        for _ in range(5):
            rollout, _ = agents.collect(learner.policy(), hp.t_max)
            learner.train_on(rollout, 1e-3)
    finally:
        agents.close()
    _replayed_in_one_call_equal_one_call_each(learner, count=3)


def test_pendulum_trains_with_continuous_acer_resumes_with_its_replay_and_evaluates(tmp_path):
    """The command line end to end: Box actions through ACER's replay (actions [D] float32, mu as [mean, log_std]),
    the replay saved and restored on resume, and a3c_test.py building the dueling critic the checkpoint holds."""
    logdir = tmp_path / "pendulum"
    args = ["--env-id", "Pendulum-v1", "--algorithm", "acer", "--envs-per-thread", 4, "--t-max", 5, "--logdir",
            logdir, "--replay-start", 80, "--replay-capacity", 400, "--no-progress-bar", "--log-interval-s", 1]
    code, out, err = run("a3c.py", args + ["--total-env-steps", 800], tmp_path, cli_env(fake=False), timeout=240)
    assert code == 0, err[-2000:]
    replay = np.load(logdir / "checkpoints" / "replay-800.npz")
    assert replay["thread0/actions"].shape[1:] == (4, 1) and replay["thread0/actions"].dtype == np.float32
    assert replay["thread0/probs"].shape[1:] == (4, 2)
    code, out, err = run("a3c.py", args + ["--total-env-steps", 1200], tmp_path, cli_env(fake=False), timeout=240)
    assert code == 0, err[-2000:]
    assert "replay: restored" in out + err
    code, out, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 2,
                                         "--max-steps", 50, "--record", 0, "--seed", 1], tmp_path, cli_env(fake=False))
    assert code == 0, err[-2000:]
    assert json.loads((tmp_path / "eval" / "scores.json").read_text())["env_steps_trained"] == 1200
