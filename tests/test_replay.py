"""replay.py: what goes in comes out exactly (frame stacks rebuilt across episode starts and the ring's wrap),
each frame is stored once, and misuse is refused."""
import numpy as np
import pytest

from replay import ReplayMemory, bytes_per_step

K, H, W = 4, 3, 2  # tiny frames: the stacking logic does not care about the size


class FrameStream:
    """B envs stepping in lockstep, frame-stacked like ale_py: a new episode's stack is the first frame 4 times;
    each frame unique (env, step) so any mix-up shows."""

    def __init__(self, B, rng, episode_p=0.15):
        self.B, self.rng, self.p = B, rng, episode_p
        self.step = 0
        self.stacks = np.stack([self._restart(b) for b in range(B)])
        self.truth = {}  # (step, env) -> observation

    def _frame(self, b):
        return np.full((H, W), (self.step * 7 + b * 3) % 251, np.uint8) + np.arange(H * W, dtype=np.uint8).reshape(H, W)

    def _restart(self, b):
        return np.repeat(self._frame(b)[None], K, axis=0)

    def rollout(self, T, A=3, S=2):
        obs, resets = [], []
        for _ in range(T):
            obs.append(self.stacks.copy())
            for b in range(self.B):
                self.truth[(self.step, b)] = self.stacks[b].copy()
            self.step += 1
            reset = self.rng.random(self.B) < self.p
            resets.append(reset)
            for b in range(self.B):
                self.stacks[b] = (self._restart(b) if reset[b]
                                  else np.concatenate([self.stacks[b, 1:], self._frame(b)[None]]))
        r = self.rng
        probs = r.random((T, self.B, A)).astype(np.float32)
        return dict(obs=np.stack(obs), actions=r.integers(0, A, (T, self.B)).astype(np.int32),
                    rewards=r.normal(size=(T, self.B)).astype(np.float32), terminated=r.random((T, self.B)) < 0.1,
                    truncated=r.random((T, self.B)) < 0.05, valid=r.random((T, self.B)) < 0.9,
                    resets=np.stack(resets), initial_state=r.normal(size=(self.B, S)).astype(np.float32),
                    behaviour_probs=probs / probs.sum(-1, keepdims=True))


def _check_sample(sample, rollouts, stream, T):
    """Every column must be one env's slice of one stored rollout, observations included."""
    by_field = {}
    for index, ro in enumerate(rollouts):
        for b in range(stream.B):
            by_field[(ro["actions"][:, b].tobytes(), ro["rewards"][:, b].tobytes())] = (index, b)
    for j in range(sample.actions.shape[1]):
        index, b = by_field[(sample.actions[:, j].tobytes(), sample.rewards[:, j].tobytes())]
        ro = rollouts[index]
        for name in ("terminated", "truncated", "valid", "behaviour_probs"):
            np.testing.assert_array_equal(getattr(sample, name)[:, j], ro[name][:, b], err_msg=name)
        np.testing.assert_array_equal(sample.initial_state[j], ro["initial_state"][b])
        np.testing.assert_array_equal(sample.resets[:T, j], ro["resets"][:, b])
        np.testing.assert_array_equal(sample.resets[T, j], rollouts[index + 1]["resets"][0, b])  # s_T's flag
        for t in range(T + 1):  # s_T is the next rollout's first observation
            np.testing.assert_array_equal(sample.obs[t, j], stream.truth[(index * T + t, b)], err_msg=f"t={t}")
    return {by_field[(sample.actions[:, j].tobytes(), sample.rewards[:, j].tobytes())][0]
            for j in range(sample.actions.shape[1])}


@pytest.mark.parametrize("T", [5, 2])  # T=2 < K-1: a stack spans two earlier rollouts
def test_samples_are_stored_rollouts_exactly_across_episode_starts_and_the_wrap(T):
    rng = np.random.default_rng(0)
    B, slots = 3, 6
    stream = FrameStream(B, rng)
    memory = ReplayMemory(slots * T, B, T, (K, H, W), np.uint8, num_actions=3, state_size=2)
    rollouts = []
    seen = set()
    for i in range(20):  # wraps the 6-rollout ring three times
        rollouts.append(stream.rollout(T))
        memory.add(**rollouts[-1])
        lost = -(-(K - 1) // T) if memory.steps > memory.n else 0  # rollouts whose first stack was overwritten
        assert memory.sampleable() == max(0, min(i + 1, slots) - 1 - lost)
        if memory.sampleable():
            for _ in range(5):
                now = _check_sample(memory.sample(rng), rollouts, stream, T)
                assert max(0, len(rollouts) - slots) + lost <= min(now) and max(now) <= len(rollouts) - 2
                seen |= now
    assert max(seen) == len(rollouts) - 2  # the newest waits for its s_T
    assert len(memory) == slots * T * B


def test_each_frame_is_stored_once_and_whole_stacks_only_at_episode_starts():
    rng = np.random.default_rng(1)
    B, T = 4, 5
    stream = FrameStream(B, rng, episode_p=0.0)
    memory = ReplayMemory(10 * T, B, T, (K, H, W), np.uint8, num_actions=3, state_size=2)
    for _ in range(3):
        memory.add(**stream.rollout(T))
    assert memory.frames.shape == (10 * T, B, H, W)  # one frame per step, not K
    assert len(memory.whole_stacks) == B  # only the very first step of each env: nothing to continue from
    # The budget printed for 84x84x4 Atari frames and 6 actions: a frame plus ~50 bytes, not 4 frames.
    per_step = bytes_per_step((4, 84, 84), np.uint8, 6, 0, 5)
    assert 84 * 84 < per_step < 84 * 84 + 64


def test_flat_observations_are_kept_whole():
    rng = np.random.default_rng(2)
    B, T, n = 2, 3, 5
    memory = ReplayMemory(4 * T, B, T, (n,), np.float32, num_actions=2)
    obs = [rng.normal(size=(T, B, n)).astype(np.float32) for _ in range(3)]
    for o in obs:
        memory.add(o, np.zeros((T, B), np.int32), np.zeros((T, B), np.float32), *(np.zeros((T, B), bool),) * 4,
                   np.zeros((B, 0), np.float32), np.full((T, B, 2), 0.5, np.float32))
    sample = memory.sample(rng)
    assert sample.obs.shape == (T + 1, B, n)
    allobs = np.concatenate(obs)  # [3T, B, n]
    for j in range(B):
        column = sample.obs[:, j]
        hits = [(s, b) for s in range(0, 2 * T, T) for b in range(B) if np.array_equal(allobs[s:s + T + 1, b], column)]
        assert len(hits) == 1


def test_misuse_is_refused():
    with pytest.raises(ValueError, match="less than two rollouts"):
        ReplayMemory(9, 2, 5, (K, H, W), np.uint8, 3)
    memory = ReplayMemory(20, 2, 5, (K, H, W), np.uint8, 3)
    with pytest.raises(ValueError, match="nothing to sample yet"):
        memory.sample(np.random.default_rng(0))
    stream = FrameStream(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rollouts of 4 steps"):
        memory.add(**stream.rollout(4))


def _filled(T, rollouts, seed=0, B=3, slots=6):
    stream = FrameStream(B, np.random.default_rng(seed))
    memory = ReplayMemory(slots * T, B, T, (K, H, W), np.uint8, num_actions=3, state_size=2)
    for _ in range(rollouts):
        memory.add(**stream.rollout(T))
    return memory, stream


def _assert_same_samples(a, b, seed, columns=None):
    for _ in range(4):
        sa = a.sample(np.random.default_rng(seed), columns)
        sb = b.sample(np.random.default_rng(seed), columns)
        for name, x, y in zip(sa._fields, sa, sb):
            np.testing.assert_array_equal(x, y, err_msg=name)
        seed += 1


@pytest.mark.parametrize("T, rollouts", [(5, 3), (5, 20), (2, 20)])  # not yet full; wrapped (T < K-1 too)
def test_a_memory_goes_through_its_arrays_and_back_bit_for_bit(T, rollouts):
    memory, stream = _filled(T, rollouts)
    copy = ReplayMemory(6 * T, 3, T, (K, H, W), np.uint8, num_actions=3, state_size=2)
    arrays = {name: np.array(a) for name, a in memory.arrays().items()}  # as written to and read from disk
    assert arrays["frames"].shape[0] == min(rollouts * T, 6 * T)  # only the filled part
    copy.load_arrays(arrays)
    assert len(copy) == len(memory) and copy.steps == memory.steps and copy.sampleable() == memory.sampleable()
    _assert_same_samples(memory, copy, seed=3)
    more = stream.rollout(T)  # both go on alike: the episode-start bookkeeping came across too
    memory.add(**more)
    copy.add(**more)
    _assert_same_samples(memory, copy, seed=9)


def test_arrays_of_another_layout_are_refused_and_leave_the_memory_empty():
    memory, _ = _filled(5, 8)
    arrays = memory.arrays()
    for other, words in [(ReplayMemory(40, 3, 5, (K, H, W), np.uint8, 3, 2), "30 steps x 3 envs"),
                         (ReplayMemory(30, 2, 5, (K, H, W), np.uint8, 3, 2), "this run's memory 30 x 2"),
                         (ReplayMemory(30, 3, 5, (K, H, W), np.uint8, 4, 2), "its probs are")]:
        with pytest.raises(ValueError, match=words):
            other.load_arrays(arrays)
        assert len(other) == 0 and not other.whole_stacks
    bad = dict(arrays, stack_keys=arrays["stack_keys"] + 1000)
    with pytest.raises(ValueError, match="whole frame stacks"):
        ReplayMemory(30, 3, 5, (K, H, W), np.uint8, 3, 2).load_arrays(bad)


def test_a_batch_of_fewer_or_more_columns_than_envs_holds_stored_rollouts():
    T = 5
    rng = np.random.default_rng(4)
    stream = FrameStream(3, rng)
    memory = ReplayMemory(6 * T, 3, T, (K, H, W), np.uint8, num_actions=3, state_size=2)
    rollouts = []
    for _ in range(9):
        rollouts.append(stream.rollout(T))
        memory.add(**rollouts[-1])
    for columns in (1, 2, 7):
        sample = memory.sample(rng, columns)
        assert sample.actions.shape == (T, columns) and sample.obs.shape == (T + 1, columns, K, H, W)
        _check_sample(sample, rollouts, stream, T)


@pytest.mark.parametrize("T, rollouts, columns", [(5, 20, None), (2, 20, 7), (5, 4, 2)])  # wrapped; T < K-1; young
def test_sample_many_stacks_the_batches_that_as_many_samples_draw(T, rollouts, columns):
    """The learner hands a rollout's replayed batches to one graph call: they must be the batches (and the draws)
    of as many `sample` calls, episode starts (whole stacks) included."""
    memory, _ = _filled(T, rollouts, seed=5)
    assert memory.whole_stacks  # some columns are rebuilt from a whole stack, not the ring alone
    one_by_one, at_once = np.random.default_rng(11), np.random.default_rng(11)
    singles = [memory.sample(one_by_one, columns) for _ in range(5)]
    stacked = memory.sample_many(at_once, 5, columns)
    for name, many, *each in zip(stacked._fields, stacked, *singles):
        assert many.shape == (5,) + each[0].shape, name
        np.testing.assert_array_equal(many, np.stack(each), err_msg=name)
    assert one_by_one.integers(1 << 30) == at_once.integers(1 << 30)  # the generators are left alike


def test_sample_many_of_flat_observations():
    memory = ReplayMemory(20, 2, 5, (3,), np.float32, num_actions=2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        memory.add(rng.random((5, 2, 3), np.float32), rng.integers(0, 2, (5, 2)).astype(np.int32),
                   rng.random((5, 2), np.float32), np.zeros((5, 2), bool), np.zeros((5, 2), bool),
                   np.ones((5, 2), bool), np.zeros((5, 2), bool), np.zeros((2, 0), np.float32),
                   rng.random((5, 2, 2), np.float32))
    a, b = np.random.default_rng(2), np.random.default_rng(2)
    stacked = memory.sample_many(a, 3)
    for i in range(3):
        single = memory.sample(b)
        for name, many, one in zip(single._fields, stacked, single):
            np.testing.assert_array_equal(many[i], one, err_msg=name)
