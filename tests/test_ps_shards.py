"""--ps-shards: the plan (every row owned once, bytes balanced), cut/join, a shard's update against the whole
optimizer, and the consistent-snapshot protocol on hand-made push orders (ps_shards.py; no Ray here)."""
import dataclasses
import math

import numpy as np
import pytest

import hparams
import ps_shards
from errors import ConfigError
from ps_shards import Piece, Tally

# The A3C network (network="a3c") on Pong: conv 8x8x4x16, conv 4x4x16x32, fc 2592x256, policy 256x6, value 256x1.
A3C_SHAPES = [(8, 8, 4, 16), (16,), (4, 4, 16, 32), (32,), (2592, 256), (256,), (256, 6), (6,), (256, 1), (1,)]


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 16, 64])
def test_the_plan_owns_every_row_once_and_balances_bytes(shards):
    plan = ps_shards.plan_shards(A3C_SHAPES, shards)
    assert plan.num_shards == shards and all(plan.pieces)
    rows = {}  # var -> list of (start, stop) in shard order
    for pieces in plan.pieces:
        for p in pieces:
            rows.setdefault(p.var, []).append((p.start, p.stop))
    for var, shape in enumerate(A3C_SHAPES):
        spans = rows[var]
        assert spans[0][0] == 0 and spans[-1][1] == shape[0]
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
    total = sum(math.prod(s) for s in A3C_SHAPES)
    widest_row = max(math.prod(s[1:]) for s in A3C_SHAPES)
    for size in plan.shard_bytes(itemsize=1):
        assert abs(size - total / shards) <= widest_row, (size, total / shards)
    if shards > 1:
        assert len(rows[4]) >= 2  # the fc matrix is cut by rows


def test_too_many_shards_is_refused_with_the_maximum():
    shapes = [(3, 2), (2,), ()]
    assert ps_shards.max_shards(shapes) == 6
    assert ps_shards.plan_shards(shapes, 6).pieces[5] == (Piece(2, 0, 1),)
    with pytest.raises(ValueError, match="7 shards, but the weights have only 6 rows"):
        ps_shards.plan_shards(shapes, 7)


def test_cut_and_join_round_trip_exactly():
    rng = np.random.default_rng(0)
    shapes = [(5, 3), (7,), (), (2, 2, 2)]
    arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
    for shards in range(1, ps_shards.max_shards(shapes) + 1):
        plan = ps_shards.plan_shards(shapes, shards)
        pieces = ps_shards.cut(arrays, plan)
        assert [[tuple(a.shape) for a in p] for p in pieces] == [[plan.piece_shape(x) for x in pcs]
                                                               for pcs in plan.pieces]
        back = ps_shards.join(pieces, plan)
        assert all(np.array_equal(a, b) for a, b in zip(arrays, back))


def _hp(optimizer):
    return dataclasses.replace(hparams.HParams(), optimizer=optimizer, optimizer_epsilon=1e-6)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "amsgrad"])
def test_shards_apply_exactly_the_update_of_the_whole_optimizer(optimizer):
    import tensorflow as tf

    from optimizers import SharedOptimizer
    hp = _hp(optimizer)
    shapes = [(6, 4), (4,), (4, 2), ()]
    rng = np.random.default_rng(1)
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(4)]
    whole = [tf.Variable(w) for w in start]
    opt = SharedOptimizer(optimizer, whole, epsilon=hp.optimizer_epsilon)
    for step, g in enumerate(grads):
        opt.apply([tf.constant(x) for x in g], whole, 0.01 * (step + 1))

    plan = ps_shards.plan_shards(shapes, 3)
    empty_slots = {kind: [np.zeros(s, np.float32) for s in shapes] if getattr(opt, kind) else []
                   for kind in ps_shards.SLOT_KINDS}
    shards = [ps_shards.Shard(hp, plan, s) for s in range(3)]
    for shard, (w, slots) in zip(shards, ps_shards.cut_state(start, empty_slots, plan)):
        shard.load(w, slots, 0, (0, 0, 0, 0))
    for step, g in enumerate(grads):
        for shard, pieces in zip(shards, ps_shards.cut(g, plan)):
            shard.push("k", step, pieces, 0.01 * (step + 1), Tally(5, 1))
    snaps = [s.state() for s in shards]
    weights, slots = ps_shards.join_state(snaps, plan)
    for a, b in zip(weights, whole):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-7)
    for kind in ps_shards.SLOT_KINDS:
        for a, b in zip(slots[kind], getattr(opt, kind)):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-9)
    assert all(s.iterations == 4 and s.counts == (20, 4, 4, 0) for s in snaps)


def _two_shards():
    hp = _hp("rmsprop")
    plan = ps_shards.plan_shards([(2,), (2,)], 2)  # shard 0 owns variable 0, shard 1 variable 1
    shards = [ps_shards.Shard(hp, plan, s) for s in range(2)]
    for s in shards:
        s.load([np.zeros(2, np.float32)], {"second": [np.zeros(2, np.float32)], "first": [], "max_second": []},
               0, (100, 10, 7, 0))
    return shards


G = [np.ones(2, np.float32)]


def test_a_snapshot_waits_for_pushes_on_the_wire_and_holds_back_later_ones():
    s0, s1 = _two_shards()
    s0.push("a", 0, G, 0.1, Tally(20, 1))  # push a0 reached shard 0; on its way to shard 1
    frontier = ps_shards.merge_frontiers([s0.hold(), s1.hold()])
    assert frontier == {"a": 0}
    s1.push("b", 0, G, 0.1, Tally(20, 2))  # b0 arrives after the hold, beyond the frontier: held back
    s0.push("b", 0, G, 0.1, Tally(20, 2))
    s0.snapshot_at(frontier)
    s1.snapshot_at(frontier)
    snap0 = s0.take_snapshot()
    assert snap0 is not None and snap0.counts == (120, 11, 8, 0)  # a0 in, b0 not
    assert s1.take_snapshot() is None  # a0 is still on the wire to shard 1
    s1.push("a", 0, G, 0.1, Tally(20, 1))  # it lands: the snapshot is taken, then b0 applied
    snap1 = s1.take_snapshot()
    assert snap1.counts == (120, 11, 8, 0) and snap1.short == ()
    assert not np.array_equal(snap1.weights[0], 0.0)  # a0 moved shard 1's piece ...
    after_a0 = snap1.weights[0].copy()
    assert s1.counts == [140, 13, 9, 0] and not np.array_equal(s1.weights()[0], after_a0)  # ... b0 then too
    assert s0.counts == [140, 13, 9, 0]
    assert s0.take_snapshot() is None and not s0.holding and not s1.holding  # taken once, hold released


def test_a_push_that_never_arrives_is_named_when_the_snapshot_is_forced():
    s0, s1 = _two_shards()
    s0.push("a", 0, G, 0.1, Tally(20, 1))
    s0.push("b", 0, None, 0.1, Tally(20, 0))  # not finite: counted, nothing applied
    frontier = ps_shards.merge_frontiers([s0.hold(), s1.hold()])
    s1.snapshot_at(frontier)
    assert s1.take_snapshot() is None
    snap = s1.take_snapshot(force=True)  # a's and b's worker died while pushing
    assert snap.short == ("a", "b") and snap.counts == (100, 10, 7, 0)
    s0.snapshot_at(frontier)
    assert s0.take_snapshot().counts == (140, 11, 8, 1)


def test_a_sync_round_applies_the_mean_of_the_finite_gradients_of_its_keys_once():
    import tensorflow as tf

    from optimizers import SharedOptimizer
    hp = _hp("adam")
    shapes = [(3, 2), (2,)]
    rng = np.random.default_rng(2)
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    plan = ps_shards.plan_shards(shapes, 2)
    shards = [ps_shards.Shard(hp, plan, s) for s in range(2)]
    empty = {"second": [np.zeros(s, np.float32) for s in shapes], "first": [np.zeros(s, np.float32) for s in shapes],
             "max_second": []}
    for shard, (w, slots) in zip(shards, ps_shards.cut_state(start, empty, plan)):
        shard.load(w, slots, 0, (0, 0, 0, 0))
    rounds = [ps_shards.SyncRounds(x) for x in shards]
    grads = {k: [rng.normal(size=s).astype(np.float32) for s in shapes] for k in ("a", "b", "c")}
    for r, shard in zip(rounds, range(2)):
        for key in ("a", "b", "c"):
            assert r.contribute(key, 0, ps_shards.cut(grads[key], plan)[shard])
        r.contribute("d", 0, None)  # not finite: nothing kept
    # "c" died after giving its slices: the server closes the round with the keys that reported finite ones.
    assert [r.close(0, ["a", "b", "d"], 0.01) for r in rounds] == [1, 1]
    whole = [tf.Variable(w) for w in start]
    opt = SharedOptimizer("adam", whole, epsilon=hp.optimizer_epsilon)
    opt.apply([tf.constant((ga + gb) / 2) for ga, gb in zip(grads["a"], grads["b"])], whole, 0.01)
    weights, _ = ps_shards.join_state([x.state() for x in shards], plan)
    for a, b in zip(weights, whole):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-7)
    assert not rounds[0].contribute("a", 0, ps_shards.cut(grads["a"], plan)[0])  # round 0 is closed: dropped
    with pytest.raises(ValueError, match="closing round 0 but round 1 is open"):
        rounds[0].close(0, [], 0.01)
    assert rounds[0].close(1, [], 0.01) == 1  # a round with no finite gradient applies nothing


@pytest.mark.parametrize("flags, needle", [
    (dict(sync=True), "--sync needs --executor ray"),
    (dict(sync=True, executor="ray", weight_pull_interval=2), "--sync pulls the new weights every round"),
    (dict(sync=True, executor="ray", off_policy_correction="vtrace"), "--sync has none"),
    (dict(sync=True, executor="ray", normalize_obs=True), "--sync with --normalize-obs"),
    (dict(sync=True, executor="ray", algorithm="acer"), "--algorithm acer runs on --executor local"),
    (dict(ps_shards=2, executor="ray", algorithm="acer"), "--algorithm acer runs on --executor local"),
    (dict(ps_shards=0), "--ps-shards must be >= 1, got 0"),
    (dict(ps_shards=2), "--ps-shards 2 needs --executor ray"),
    (dict(ps_shards=2, executor="ray", normalize_obs=True), "--ps-shards 2 with --normalize-obs"),
])
def test_bad_shard_flags_are_one_clear_config_error(flags, needle):
    with pytest.raises(ConfigError, match=needle):
        hparams.validate(dataclasses.replace(hparams.HParams(), **flags))
