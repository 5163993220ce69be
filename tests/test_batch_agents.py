"""BatchAgents.collect against a scripted NEXT_STEP-autoreset vector env."""
import numpy as np
import pytest

import envs
import hparams
from batch_agents import BatchAgents, Rollout
from fakes import DummyPolicy, ScriptedVectorEnv

F, T = False, True


# env 0: a terminated episode with 3 steps (unclipped rewards), then a 4-step one; cycle.
EP_A = dict(rewards=[1.0, 2.0, 3.0], end="terminated")
EP_B = dict(rewards=[5.0, -7.0, 1.0, 4.0], end="terminated")
# env 1: truncated after 4 steps (time limit).
EP_C = dict(rewards=[2.0, 0.0, 0.0, 3.0], end="truncated")


def _agents(episodes, **kw):
    env = ScriptedVectorEnv(episodes, **{k: kw.pop(k) for k in ("reset_junk", "start_lives") if k in kw})
    return env, BatchAgents(env, seed=123, **kw)


def _ep(obs):
    """(episode, step in episode) encoded in each recorded observation: [T, B, 2]."""
    return np.stack([obs[..., 0, 0, 0], obs[..., 0, 0, 1]], -1)


@pytest.mark.parametrize("reset_junk", [None, (9.0, True, True)])
def test_collect_across_episode_ends(reset_junk):
    env, agents = _agents([[EP_A, EP_B], [EP_C]], reset_junk=reset_junk)
    assert env.seed == 123
    policy = DummyPolicy(0.25)
    rollout, stats = agents.collect(policy, 6)

    # Trace (env 0 | env 1):
    # t=0  s=(0,0) r=1            | s=(0,0) r=2
    # t=1  s=(0,1) r=2            | s=(0,1) r=0
    # t=2  s=(0,2) r=3 TERMINATED | s=(0,2) r=0
    # t=3  s=(0,3) autoreset      | s=(0,3) r=3 TRUNCATED
    # t=4  s=(1,0) r=5            | s=(0,4) autoreset
    # t=5  s=(1,1) r=-7           | s=(1,0) r=2
    np.testing.assert_array_equal(rollout.rewards, [[1, 2], [2, 0], [3, 0], [0, 3], [5, 0], [-7, 2]])
    assert rollout.rewards.dtype == np.float32
    np.testing.assert_array_equal(rollout.terminated, [[F, F], [F, F], [T, F], [F, F], [F, F], [F, F]])
    np.testing.assert_array_equal(rollout.truncated, [[F, F], [F, F], [F, F], [F, T], [F, F], [F, F]])
    np.testing.assert_array_equal(rollout.valid, [[T, T], [T, T], [T, T], [F, T], [T, F], [T, T]])
    np.testing.assert_array_equal(rollout.resets, [[T, T], [F, F], [F, F], [F, F], [T, F], [F, T]])
    np.testing.assert_array_equal(_ep(rollout.obs)[:, 0], [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1]])
    np.testing.assert_array_equal(_ep(rollout.obs)[:, 1], [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 0]])
    np.testing.assert_array_equal(rollout.obs[..., 0, 0, 2], [[0, 1]] * 6)  # env order kept

    assert rollout.obs.shape == (6, 2, 4, 84, 84) and rollout.obs.dtype == np.uint8
    assert rollout.actions.shape == (6, 2) and rollout.actions.dtype == np.int32
    assert not rollout.actions.any()
    for name in ("terminated", "truncated", "valid", "resets"):
        assert getattr(rollout, name).dtype == bool, name
    assert rollout.initial_state.shape == (2, 0)
    np.testing.assert_array_equal(rollout.bootstrap_value, [0.25, 0.25])
    assert rollout.bootstrap_value.dtype == np.float32

    # Raw (unclipped) episode returns; the autoreset transition is not counted in the length.
    assert stats.returns == [6.0, 5.0]
    assert stats.lengths == [3, 4]

    # One policy call per step (+1 for the bootstrap value / next first action), each on the current obs and
    # with the reset flags of that obs, with a fresh sampling seed.
    assert len(policy.calls) == 7
    for t in range(6):
        np.testing.assert_array_equal(policy.calls[t]["obs"], rollout.obs[t])
        np.testing.assert_array_equal(policy.calls[t]["reset"], rollout.resets[t])
    assert len({tuple(c["seed"]) for c in policy.calls}) == 7
    np.testing.assert_array_equal(_ep(policy.calls[6]["obs"]), [[1, 2], [1, 1]])  # s_T
    assert len(env.actions_log) == 6


def test_second_collect_continues_episodes_and_reuses_the_pending_policy_output():
    env, agents = _agents([[EP_A, EP_B], [EP_C]])
    policy = DummyPolicy(0.5)
    agents.collect(policy, 6)
    rollout, stats = agents.collect(policy, 6)
    assert len(policy.calls) == 7 + 6  # the bootstrap call of rollout 1 gives rollout 2's first action

    # env 0: (1,2) r=1, (1,3) r=4 TERMINATED -> return 5-7+1+4 = 3 over 4 steps, autoreset, (2,0) r=1, (2,1) r=2,
    #        (2,2) r=3 TERMINATED -> 6 over 3 steps
    # env 1: (1,1) r=0, (1,2) r=0, (1,3) r=3 TRUNCATED -> 5 over 4 steps (started in rollout 1), autoreset,
    #        (2,0) r=2, (2,1) r=0
    np.testing.assert_array_equal(rollout.rewards, [[1, 0], [4, 0], [0, 3], [1, 0], [2, 2], [3, 0]])
    np.testing.assert_array_equal(rollout.terminated, [[F, F], [T, F], [F, F], [F, F], [F, F], [T, F]])
    np.testing.assert_array_equal(rollout.truncated, [[F, F], [F, F], [F, T], [F, F], [F, F], [F, F]])
    np.testing.assert_array_equal(rollout.valid, [[T, T], [T, T], [F, T], [T, F], [T, T], [T, T]])
    np.testing.assert_array_equal(rollout.resets, [[F, F], [F, F], [F, F], [T, F], [F, T], [F, F]])
    assert stats.returns == [3.0, 5.0, 6.0]
    assert stats.lengths == [4, 4, 3]

    agents.discard_pending()
    agents.collect(policy, 1)
    assert len(policy.calls) == 7 + 6 + 2


def test_truncation_is_reported_as_truncated_not_terminated():
    ep = dict(rewards=[1.0, 1.0], end="truncated")
    _, agents = _agents([[ep]])
    rollout, stats = agents.collect(DummyPolicy(), 3)
    np.testing.assert_array_equal(rollout.truncated[:, 0], [F, T, F])
    np.testing.assert_array_equal(rollout.terminated[:, 0], [F, F, F])
    np.testing.assert_array_equal(rollout.valid[:, 0], [T, T, F])
    assert stats.returns == [2.0] and stats.lengths == [2]


def test_terminated_and_truncated_together_is_terminated():
    ep = dict(rewards=[1.0, 1.0], end="both")
    _, agents = _agents([[ep]])
    rollout, stats = agents.collect(DummyPolicy(), 3)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [F, T, F])
    np.testing.assert_array_equal(rollout.truncated[:, 0], [F, F, F])
    assert stats.returns == [2.0] and stats.lengths == [2]


# A game of 5 steps and 3 lives: lives lost after steps 1 and 3, game over (lives 0) at step 4.
EP_LIVES = dict(rewards=[1.0, 0.0, 1.0, 0.0, 1.0], lives=[3, 2, 2, 1, 0], end="terminated")


def test_episodic_life_marks_life_loss_terminal_without_ending_the_episode():
    _, agents = _agents([[EP_LIVES]], start_lives=3, episodic_life=True)
    rollout, stats = agents.collect(DummyPolicy(), 8)
    # t: 0  1 (life lost)  2  3 (life lost)  4 (game over)  5 (autoreset)  6 (new game)  7 (life lost)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [F, T, F, T, T, F, F, T])
    np.testing.assert_array_equal(rollout.truncated[:, 0], [F] * 8)
    np.testing.assert_array_equal(rollout.valid[:, 0], [T, T, T, T, T, F, T, T])  # the step after a life loss is valid
    np.testing.assert_array_equal(rollout.resets[:, 0], [T, F, T, F, T, F, T, F])  # fresh state after a life loss
    np.testing.assert_array_equal(rollout.rewards[:, 0], [1, 0, 1, 0, 1, 0, 1, 0])
    # A life loss is not an episode end: one game, full score and length.
    assert stats.returns == [3.0] and stats.lengths == [5]
    # The game went on after the life losses: states 2 and 3 are steps 2, 3 of the same episode.
    np.testing.assert_array_equal(_ep(rollout.obs)[:, 0], [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [0, 5],
                                                           [1, 0], [1, 1]])


def test_without_episodic_life_only_game_over_is_terminal():
    _, agents = _agents([[EP_LIVES]], start_lives=3, episodic_life=False)
    rollout, stats = agents.collect(DummyPolicy(), 8)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [F, F, F, F, T, F, F, F])
    np.testing.assert_array_equal(rollout.resets[:, 0], [T, F, F, F, F, F, T, F])
    assert stats.returns == [3.0] and stats.lengths == [5]


def test_lives_going_back_up_at_a_new_game_is_not_a_life_loss():
    # The autoreset transition raises lives 0 -> 3; the first steps of the next game must not be terminal.
    _, agents = _agents([[dict(rewards=[1.0], lives=[0], end="terminated")]], start_lives=3, episodic_life=True)
    rollout, stats = agents.collect(DummyPolicy(), 6)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [T, F, T, F, T, F])
    np.testing.assert_array_equal(rollout.valid[:, 0], [T, F, T, F, T, F])
    assert stats.returns == [1.0, 1.0, 1.0] and stats.lengths == [1, 1, 1]


def test_bonus_life_is_not_a_life_loss():
    # Some games award extra lives mid-game (lives 3 -> 4): only a decrease is terminal with episodic life.
    ep = dict(rewards=[1.0, 1.0, 1.0, 1.0], lives=[3, 4, 3, 3], end="truncated")
    _, agents = _agents([[ep]], start_lives=3, episodic_life=True)
    rollout, stats = agents.collect(DummyPolicy(), 4)
    np.testing.assert_array_equal(rollout.terminated[:, 0], [F, F, T, F])
    np.testing.assert_array_equal(rollout.resets[:, 0], [T, F, F, T])
    np.testing.assert_array_equal(rollout.truncated[:, 0], [F, F, F, T])


def test_real_atari_vector_env_matches_the_test_double():
    """The scripted env's contract holds for ale_py's AtariVectorEnv: NEXT_STEP autoreset after a time-limit
    truncation (40 frames = 10 agent steps), `lives` in info, uint8 [B, 4, 84, 84] frames."""
    hp = hparams.HParams(env_id="ALE/Pong-v5", max_episode_frames=40, noop_max=0)
    env = envs.make_vector_env(hp, 2, num_threads=1)
    try:
        rollout, stats = BatchAgents(env, seed=0).collect(DummyPolicy(), 12)
    finally:
        env.close()
    assert rollout.obs.shape == (12, 2, 4, 84, 84) and rollout.obs.dtype == np.uint8
    expected_truncated = np.zeros((12, 2), bool)
    expected_truncated[9] = True
    np.testing.assert_array_equal(rollout.truncated, expected_truncated)
    assert not rollout.terminated.any()
    np.testing.assert_array_equal(rollout.valid, ~np.eye(12, dtype=bool)[10][:, None].repeat(2, 1))
    np.testing.assert_array_equal(rollout.resets[:, 0], [T] + [F] * 10 + [T])
    assert stats.lengths == [10, 10]
    assert len(stats.returns) == 2


class _ObsDependentPolicy(DummyPolicy):
    """Deterministic actions that depend on the frames, so a mix-up of steps would change the game."""

    def __call__(self, obs, state, reset, seed):
        _, values, new_state = super().__call__(obs, state, reset, seed)
        actions = (obs.reshape(obs.shape[0], -1).astype(np.int64).sum(1) % 6).astype(np.int32)
        return actions, values, new_state


def test_overlapped_env_step_gives_the_same_rollouts_as_plain_stepping():
    """send_pending() (env steps during the update) changes when the emulator works, not what it returns:
    on the real AtariVectorEnv, the same seeds and policy give bit-identical rollouts either way."""
    hp = hparams.HParams(env_id="ALE/Pong-v5", noop_max=0)
    results = []
    for overlap in (False, True):
        env = envs.make_vector_env(hp, 2, num_threads=1)
        try:
            agents = BatchAgents(env, seed=3)
            rollouts = []
            for _ in range(3):
                rollouts.append(agents.collect(_ObsDependentPolicy(), 4)[0])
                if overlap:
                    agents.send_pending()
                    assert agents.in_flight is not None
                    agents.discard_pending()  # too late to take back: the sent actions must still open the next rollout
        finally:
            env.close()
        results.append(rollouts)
    for plain, overlapped in zip(*results):
        for name, a, b in zip(Rollout._fields, plain, overlapped):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert len({r.actions.tobytes() for r in results[0]}) > 1  # the policy really varied its actions


def test_send_while_a_step_is_in_flight_is_refused():
    _, agents = _agents([[dict(rewards=[0.0] * 5, end="terminated")]])
    agents.collect(DummyPolicy(), 1)
    agents.send_pending()
    with pytest.raises(RuntimeError, match="in flight"):
        agents.send(np.zeros(1, np.int32))
