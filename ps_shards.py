"""--ps-shards S: the parameter server's weights and optimizer statistics cut into S slices, one per shard.

The plan cuts the network's trainable variables, laid end to end, into S runs of whole rows (axis 0) with about
the same bytes each: the large fc matrix is split by rows, small variables stay whole. RMSProp, Adam and AMSGrad
are elementwise, so applying a gradient slice by slice is the same update as applying it whole (the worker clips
by the global norm before it cuts).

A checkpoint must be one moment of all shards. Each worker thread (a `key`: worker, thread, incarnation) numbers
its pushes 0, 1, 2, ... and sends push n+1 only once every shard has acknowledged push n, so the shards never
differ by more than one push per key. The snapshot protocol:
  1. `hold()` on every shard: from now on each received push is acknowledged but kept aside; returns the
     newest push number received per key.
  2. The frontier F = per key, the largest of those numbers. Every push up to F was sent to every shard.
  3. `snapshot_at(F)`: the shard applies the pushes up to F it kept aside, and as soon as it has applied every
     push up to F (late ones are still on the wire) copies its state; then it applies what it held back.
  4. `take_snapshot()` returns that copy (None until it exists). Shard 0 also counts env steps, episodes and
     applied / skipped updates, so the copy carries the counters of exactly the same moment.

Owns: the plan, cutting arrays into shard pieces and joining them, and one shard's state (its slice of the
weights and optimizer slots, the update, the snapshot protocol).
Must not: talk to Ray (ray_executor.py), compute losses or gradients (learner.py), or write files
(checkpoints.py).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

SLOT_KINDS = ("second", "first", "max_second")  # SharedOptimizer's slot lists, in this order


class Piece(NamedTuple):
    """Rows [start, stop) of variable `var` (a scalar is one row: start 0, stop 1)."""
    var: int
    start: int
    stop: int


class ShardPlan(NamedTuple):
    shapes: tuple  # the full variables' shapes, in the learner's trainable_variables order
    pieces: tuple  # pieces[s]: the Pieces shard s owns, in variable order

    @property
    def num_shards(self) -> int:
        return len(self.pieces)

    def piece_shape(self, piece: Piece) -> tuple:
        shape = self.shapes[piece.var]
        return (piece.stop - piece.start, *shape[1:]) if shape else ()

    def shard_bytes(self, itemsize: int = 4) -> list[int]:
        return [sum(math.prod(self.piece_shape(p)) * itemsize for p in pieces) for pieces in self.pieces]


def _rows(shape: tuple) -> int:
    return shape[0] if shape else 1


def _row_size(shape: tuple) -> int:
    return math.prod(shape[1:]) if shape else 1


def max_shards(shapes) -> int:
    """The most shards `shapes` can be cut into (every shard holds at least one row)."""
    return sum(_rows(tuple(s)) for s in shapes)


def plan_shards(shapes, num_shards: int) -> ShardPlan:
    """Cut variables of `shapes` (laid end to end, rows along axis 0) into `num_shards` contiguous runs of rows,
    each within one row of total / num_shards elements. ValueError when there are fewer rows than shards."""
    shapes = tuple(tuple(int(d) for d in s) for s in shapes)
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if any(_rows(s) == 0 for s in shapes):
        raise ValueError("a variable with no rows cannot be sharded")
    total_rows = max_shards(shapes)
    if num_shards > total_rows:
        raise ValueError(f"{num_shards} shards, but the weights have only {total_rows} rows to cut them by")
    row_sizes = np.concatenate([np.full(_rows(s), _row_size(s), np.int64) for s in shapes])
    ends = np.cumsum(row_sizes)  # ends[j]: elements in rows 0..j
    total = int(ends[-1])
    # cut k (1..S-1) = number of rows before shard k: the row boundary nearest to k * total / S, kept strictly
    # increasing and leaving a row for every shard after it.
    cuts = [0]
    for k in range(1, num_shards):
        target = k * total / num_shards
        j = int(np.searchsorted(ends, target))  # rows 0..j reach the target
        below = j  # boundary before row j
        above = j + 1  # boundary after row j
        prev_end = ends[below - 1] if below > 0 else 0
        cut = below if target - prev_end <= ends[j] - target else above
        cut = min(max(cut, cuts[-1] + 1), total_rows - (num_shards - k))
        cuts.append(cut)
    cuts.append(total_rows)
    first_row = np.concatenate([[0], np.cumsum([_rows(s) for s in shapes])])  # global index of each var's row 0
    pieces = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        mine = []
        for var, shape in enumerate(shapes):
            a, b = max(lo, first_row[var]), min(hi, first_row[var + 1])
            if a < b:
                mine.append(Piece(var, int(a - first_row[var]), int(b - first_row[var])))
        pieces.append(tuple(mine))
    return ShardPlan(shapes, tuple(pieces))


def cut(arrays, plan: ShardPlan) -> list[list[np.ndarray]]:
    """Per shard, its pieces of the full `arrays` (one per variable, in plan order); views, no copies."""
    return [[arrays[p.var][p.start:p.stop] if plan.shapes[p.var] else arrays[p.var] for p in pieces]
            for pieces in plan.pieces]


def join(per_shard, plan: ShardPlan) -> list[np.ndarray]:
    """The inverse of `cut`: full arrays from every shard's pieces."""
    parts = [[] for _ in plan.shapes]
    for pieces, arrays in zip(plan.pieces, per_shard, strict=True):
        for p, a in zip(pieces, arrays, strict=True):
            parts[p.var].append(np.asarray(a))
    out = []
    for shape, chunks in zip(plan.shapes, parts):
        out.append(np.concatenate(chunks, axis=0) if shape else chunks[0])
    for shape, a in zip(plan.shapes, out):
        if tuple(a.shape) != shape:
            raise ValueError(f"joined shape {a.shape} != variable shape {shape}")
    return out


class Tally(NamedTuple):
    """What one push adds to the run's counters (shard 0 keeps them at the snapshot's moment)."""
    env_steps: int
    episodes: int


class Snapshot(NamedTuple):
    weights: list  # this shard's pieces, np arrays
    slots: dict  # slot kind -> this shard's pieces of that slot list (absent kinds: [])
    iterations: int  # the optimizer's update count
    counts: tuple  # shard 0: (env_steps, episodes, updates, skipped); others: the same from their own pushes
    short: tuple  # keys whose push at the frontier never arrived (a worker died while pushing): forced only


class Shard:
    """One slice of the weights and of the optimizer statistics, and the update on it. Not thread-safe: the
    actor that holds it runs one method at a time."""

    def __init__(self, hp, plan: ShardPlan, index: int):
        import tensorflow as tf

        from optimizers import SharedOptimizer
        self.plan, self.index = plan, index
        self.variables = [tf.Variable(tf.zeros(plan.piece_shape(p), tf.float32), name=f"piece{i}")
                          for i, p in enumerate(plan.pieces[index])]
        self.optimizer = SharedOptimizer(hp.optimizer, self.variables, decay=hp.rmsprop_decay,
                                         rmsprop_init=hp.rmsprop_init, epsilon=hp.optimizer_epsilon,
                                         beta1=hp.adam_beta1, beta2=hp.adam_beta2)
        specs = [tf.TensorSpec(v.shape, tf.float32) for v in self.variables]

        @tf.function(input_signature=[specs, tf.TensorSpec([], tf.float32)])
        def apply(grads, learning_rate):
            return self.optimizer.apply(grads, self.variables, learning_rate)
        self._apply_fn = apply
        self.wire_dtype = tf.as_dtype(hp.wire_dtype)
        self.version = 0  # updates of the run applied here (load() sets it from the checkpoint)
        self.counts = [0, 0, 0, 0]  # env steps, episodes, updates, skipped: every push this shard applied
        self.received: dict[str, int] = {}  # key -> newest push number received (applied or held)
        self.applied: dict[str, int] = {}  # key -> newest push number applied
        self.holding = False
        self.held: list[tuple] = []  # pushes received while holding, in arrival order
        self.frontier: dict[str, int] | None = None
        self.snapshot: Snapshot | None = None

    # -- state ---------------------------------------------------------------------------------------------
    def load(self, weights: list, slots: dict, iterations: int, counts: tuple):
        """Set this shard's pieces of the weights and slots (from a checkpoint or a fresh network)."""
        for v, w in zip(self.variables, weights, strict=True):
            v.assign(np.asarray(w, np.float32))
        for kind in SLOT_KINDS:
            mine = getattr(self.optimizer, kind)
            for v, w in zip(mine, slots.get(kind, []) if mine else [], strict=True):
                v.assign(np.asarray(w, np.float32))
        self.optimizer.iterations.assign(int(iterations))
        self.counts = list(counts)
        self.version = int(counts[2])  # the run's updates so far: policy lag compares it with the server's count

    def weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.variables]

    def wire_weights(self) -> list[np.ndarray]:
        """The pieces as a pull carries them (--wire-dtype)."""
        import tensorflow as tf
        return [tf.cast(v, self.wire_dtype).numpy() for v in self.variables]

    def apply(self, grads: list, learning_rate: float):
        """One optimizer step on this shard's pieces (float32 arrays, or any dtype that casts)."""
        self._apply_fn([np.asarray(g, np.float32) for g in grads], np.float32(learning_rate))
        self.version += 1

    def state(self, short=()) -> Snapshot:
        """A copy of this shard's weights, slots, update count and counters."""
        slots = {kind: [v.numpy() for v in getattr(self.optimizer, kind)] for kind in SLOT_KINDS}
        return Snapshot(self.weights(), slots, int(self.optimizer.iterations.numpy()), tuple(self.counts),
                        tuple(short))

    # -- pushes --------------------------------------------------------------------------------------------
    def push(self, key: str, seq: int, grads: list | None, learning_rate: float, tally: Tally) -> int:
        """Receive push `seq` of `key`: its gradient pieces (None: the loss was not finite, count only). Applied
        now, or kept aside while a snapshot is pending. Returns this shard's version."""
        self.received[key] = seq
        if self.holding and (self.frontier is None or seq > self.frontier.get(key, -1)):
            self.held.append((key, seq, grads, learning_rate, tally))
            return self.version
        self._apply_push(key, seq, grads, learning_rate, tally)
        self._maybe_snapshot()
        return self.version

    def _apply_push(self, key, seq, grads, learning_rate, tally):
        if grads is not None:
            self.apply(grads, learning_rate)
            self.counts[2] += 1
        else:
            self.counts[3] += 1
        self.counts[0] += tally.env_steps
        self.counts[1] += tally.episodes
        self.applied[key] = seq

    # -- the snapshot protocol (module docstring) ----------------------------------------------------------
    def hold(self) -> dict[str, int]:
        self.holding, self.frontier, self.snapshot = True, None, None
        return dict(self.received)

    def snapshot_at(self, frontier: dict[str, int]):
        self.frontier = dict(frontier)
        keep = []
        for push in self.held:
            key, seq = push[0], push[1]
            if seq <= self.frontier.get(key, -1):
                self._apply_push(*push)
            else:
                keep.append(push)
        self.held = keep
        self._maybe_snapshot()

    def _missing(self) -> list[str]:
        return [k for k, n in (self.frontier or {}).items() if self.applied.get(k, -1) < n]

    def _maybe_snapshot(self):
        if self.frontier is None or self._missing():
            return
        self._take()

    def _take(self, short=()):
        self.snapshot = self.state(short)
        self.holding, self.frontier = False, None
        held, self.held = self.held, []
        for push in held:
            self._apply_push(*push)

    def take_snapshot(self, force: bool = False) -> Snapshot | None:
        """The copy made at the frontier, or None while pushes up to it are still on their way. force=True takes
        it now (their senders died): the keys still short are named in it."""
        if self.snapshot is None and force and self.frontier is not None:
            self._take(self._missing())
        snap, self.snapshot = self.snapshot, None
        return snap


class SyncRounds:
    """--sync: a shard's gradients of the current round, summed as they come, applied once as their mean when the
    server closes the round. Contributions to a round already closed (a straggler, a restarted worker) are dropped."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.round = 0  # the round whose contributions are being gathered
        self.contributions: dict[str, list] = {}  # key -> gradient pieces (float32)

    def contribute(self, key: str, round_: int, grads: list | None) -> bool:
        """Keep `key`'s gradient pieces for `round_` (None: not finite); False if that round is closed."""
        if round_ < self.round:
            return False
        if grads is not None:
            self.contributions[key] = [np.asarray(g, np.float32) for g in grads]
        return True

    def close(self, round_: int, keys: list, learning_rate: float) -> int:
        """Apply the mean of `keys`' gradients of `round_` (the server lists the keys that reported a finite one)
        and open the next round; this shard's version."""
        if round_ != self.round:
            raise ValueError(f"closing round {round_} but round {self.round} is open")
        grads = [self.contributions[k] for k in keys if k in self.contributions]
        if grads:
            mean = [g.copy() for g in grads[0]]
            for other in grads[1:]:
                for total, g in zip(mean, other):
                    total += g
            mean = [total / np.float32(len(grads)) for total in mean]
            self.shard.apply(mean, learning_rate)
        self.round, self.contributions = round_ + 1, {}
        return self.shard.version


def merge_frontiers(received: list[dict]) -> dict[str, int]:
    """The frontier: per key, the newest push any shard has received."""
    out: dict[str, int] = {}
    for r in received:
        for k, n in r.items():
            out[k] = max(out.get(k, -1), n)
    return out


def learner_state(learner) -> tuple[list, dict, int]:
    """(trainable weights, slot kind -> slot arrays, optimizer iterations) of a learner, in plan order."""
    opt = learner.optimizer
    return ([v.numpy() for v in learner.net.trainable_variables],
            {kind: [v.numpy() for v in getattr(opt, kind)] for kind in SLOT_KINDS}, int(opt.iterations.numpy()))


def load_learner_state(learner, weights: list, slots: dict, iterations: int):
    """The inverse of learner_state: the shards' joined state into a whole learner (to checkpoint it)."""
    learner.set_weights(weights, trainable_only=True)
    for kind in SLOT_KINDS:
        for v, w in zip(getattr(learner.optimizer, kind), slots.get(kind, []), strict=True):
            v.assign(w)
    learner.optimizer.iterations.assign(int(iterations))


def cut_state(weights: list, slots: dict, plan: ShardPlan) -> list[tuple[list, dict]]:
    """Per shard: (its weight pieces, slot kind -> its slot pieces)."""
    slot_pieces = {kind: cut(arrays, plan) if arrays else [[] for _ in plan.pieces] for kind, arrays in slots.items()}
    return [(w, {kind: pieces[s] for kind, pieces in slot_pieces.items()}) for s, w in enumerate(cut(weights, plan))]


def join_state(snapshots: list[Snapshot], plan: ShardPlan) -> tuple[list, dict]:
    """(whole weights, slot kind -> whole slot arrays) from every shard's snapshot."""
    weights = join([s.weights for s in snapshots], plan)
    slots = {kind: join([s.slots[kind] for s in snapshots], plan) if snapshots[0].slots[kind] else []
             for kind in SLOT_KINDS}
    return weights, slots
