"""The crash-safe checkpoint store of a run directory, and the config saved with it.

A run directory (a3c.py --logdir) holds `config.json`, `.lock` and `checkpoints/`: ckpt-N.index/.data (N = env
steps), the `checkpoint` state file, a copy of config.json and `episode_window.json`. A checkpoint holds the
learner's checkpoint_objects() (weights, optimizer slots) and the run's counters (RunCounts). Named arrays the
caller passes (ACER's replay memories, --save-replay) go beside the checkpoint they were saved with as
`replay-N.npz` (a zip of .npy files, deflated; np.load reads it), written after it, so losing one costs only them;
only the newest such file is kept, and a resume takes it even if it is older than the checkpoint resumed (the
trainer writes them with some checkpoints only: --replay-save-interval-s).

Guarantees: a crash at any moment leaves a state file that names complete checkpoints; a checkpoint is never
rewritten in place; new files are fsynced; on resume every tensor is read back and an unreadable newest
checkpoint is skipped with a warning; a lost state file is rebuilt; a checkpoint of another network or program
is refused, never half-loaded; one trainer per run directory.

Owns: saving, rotating, fsyncing and finding checkpoints, strict restore, the logdir lock, atomic text/JSON
writes, reading and checking saved configs, locating a checkpoint for evaluation (a3c_test.py), and writing and
refusing to resume a weights-only checkpoint (average_checkpoints.py, tools/slim_model.py).
Must not: pause threads or know what a counter means (the trainer decides when to save and what), or build
networks (the caller passes the objects to save and restore).
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import typing
import weakref
from typing import NamedTuple

import numpy as np

import hparams as hparams_lib
import specs as specs_lib
from errors import CheckpointError, ConfigError, RunError, first_line, warn
from hparams import HParams

CHECKPOINT_SUBDIR = "checkpoints"
CONFIG_FILE = "config.json"
# The last episodes at the newest checkpoint, so a resumed run's "mean of the last 100" carries on instead of
# restarting empty (which would first fill with the shortest, i.e. lost, games and dip the curves).
EPISODE_WINDOW_FILE = "episode_window.json"
# Marker files beside a checkpoint of the network weights alone (no optimizer state, no ACER average network, no
# counters but env_steps): it evaluates and exports, but a run cannot resume from it. Marker -> what wrote it.
AVERAGED_FILE = "averaged.json"
NETWORK_ONLY_FILE = "network_only.json"
WEIGHTS_ONLY_MARKERS = {
    AVERAGED_FILE: "an average of checkpoints (average_checkpoints.py",
    NETWORK_ONLY_FILE: "a slimmed checkpoint (tools/slim_model.py",
}
LOCK_FILE = ".lock"
ARRAYS_FILE = "replay-{}.npz"  # beside ckpt-N: the arrays saved with it (only the newest file is kept)


class RunCounts(NamedTuple):
    """The run's counters a checkpoint stores beside the weights."""
    env_steps: int
    episodes: int
    updates: int
    wall_time_s: float  # training wall time of all sessions of the run


class Resumed(NamedTuple):
    prefix: str  # the checkpoint restored
    counts: RunCounts
    window: list  # (return, length) of the last episodes before it, oldest first; [] if not saved with it


# ----------------------------------------------------------------------------------------------------------
# Files: atomic writes, the logdir lock, I/O errors as one line
# ----------------------------------------------------------------------------------------------------------
def write_text_atomic(path: str, text: str):
    """Readers see the old file or the new one, never a half-written one (temp file, fsync, rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_arrays_atomic(path: str, arrays: dict, compresslevel: int = 1):
    """name -> array into an .npz at `path` (deflate level 1: Pong's replay shrank 42x, 2.6 s for 1.36 GiB), crash-safe:
    written to a temp file, fsynced, then renamed over `path`. OSError on failure (the temp file removed)."""
    import zipfile
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel,
                                 allowZip64=True) as zf:
                for name, a in arrays.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.ascontiguousarray(a), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def read_arrays(path: str) -> dict:
    """The arrays of write_arrays_atomic, read whole (the zip's CRCs checked); OSError or ValueError if damaged."""
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, EOFError, KeyError) as e:
        raise ValueError(f"{type(e).__name__}: {first_line(e)}") from None


def write_json_atomic(path: str, payload: dict):
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


@contextlib.contextmanager
def io_errors(what: str):
    """Turn a failed write (disk full, permissions, TF file errors) into a one-line RunError."""
    import tensorflow as tf
    try:
        yield
    except OSError as e:
        raise RunError(f"{what} ({e.strerror or first_line(e)})") from None
    except tf.errors.OpError as e:  # "<temp file path>; File too large": the OS's reason is what matters
        raise RunError(f"{what} ({first_line(e, 400).rsplit('; ', 1)[-1][:160]})") from None


def prepare_writable_dir(path: str, flag: str = "--logdir"):
    """Create `path` and prove we can write there, so a bad path fails now and not at the first save."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunError(f"cannot write to {flag} {path} ({e.strerror}); choose a writable directory")


class LogdirLock:
    """Refuses a second trainer on the same run directory (flock; released when the process dies).

    A flock belongs to the open file, so a child forked without exec (a gymnasium AsyncVectorEnv worker) would hold
    it too and, outliving a killed trainer for a moment, refuse its resume. Forked children close their copy; a lock
    whose recorded holder has exited is waited for (`orphan_grace_s`), since whatever still holds it is winding
    down, and the refusal then names the processes that hold it."""

    _held: "weakref.WeakSet[LogdirLock]" = weakref.WeakSet()  # this process's locks, for the fork hook below

    def __init__(self, logdir: str, orphan_grace_s: float = 30.0):
        import time
        self.path = os.path.join(logdir, LOCK_FILE)
        self.file = open(self.path, "a+")
        deadline, warned = time.monotonic() + orphan_grace_s, False
        while not self._try_lock():
            holder = self._recorded_holder()
            if holder is not None and _pid_alive(holder) or time.monotonic() > deadline:
                self.file.close()
                named = f" (pid {holder})" if holder is not None else ""
                others = [pid for pid in _pids_with_open(self.path) if pid != os.getpid()]
                if holder is not None and not _pid_alive(holder) and others:
                    named = f" (pid {holder} has exited; pid {', '.join(map(str, others))} still holds the lock)"
                raise RunError(f"{logdir} is in use by another a3c.py process{named}; stop it or choose another "
                               "--logdir")
            if not warned:
                warn(f"{logdir}: the a3c.py that held it (pid {holder}) has exited; waiting up to "
                     f"{orphan_grace_s:.0f} s for the processes it started to let go of the lock")
                warned = True
            time.sleep(0.2)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        LogdirLock._held.add(self)

    def _try_lock(self) -> bool:
        import fcntl
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _recorded_holder(self) -> int | None:
        self.file.seek(0)
        text = self.file.read().strip()
        return int(text) if text.isdigit() else None

    def release(self):
        LogdirLock._held.discard(self)
        self.file.close()

    @staticmethod
    def _close_in_forked_child():
        for lock in list(LogdirLock._held):
            lock.file.close()  # the child's descriptor only: the parent's lock stands
        LogdirLock._held.clear()


def _pid_alive(pid: int) -> bool:
    """Running, not a zombie (an unreaped trainer's files are closed: it cannot be what holds the lock)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc here: trust kill
        return True


def _pids_with_open(path: str) -> list[int]:
    """The processes with `path` open (Linux /proc; empty where it cannot be read)."""
    target, pids = os.path.realpath(path), []
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        try:
            if any(os.readlink(os.path.join(fd_dir, fd)) == target for fd in os.listdir(fd_dir)):
                pids.append(int(fd_dir.split("/")[2]))
        except OSError:  # gone, or not ours to read
            continue
    return sorted(pids)


os.register_at_fork(after_in_child=LogdirLock._close_in_forked_child)


# ----------------------------------------------------------------------------------------------------------
# Saved configs
# ----------------------------------------------------------------------------------------------------------
def read_config(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RunError(f"no {CONFIG_FILE} at {path}: this is not an a3c-tf run or checkpoint directory")
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}; restore it from a backup or use another checkpoint")


def read_run_config(logdir: str) -> dict:
    """The config of the run in `logdir`: its config.json, or, if that is lost or unreadable, the copy saved
    beside the checkpoints (with a warning)."""
    path, copy = os.path.join(logdir, CONFIG_FILE), os.path.join(logdir, CHECKPOINT_SUBDIR, CONFIG_FILE)
    try:
        return read_config(path)
    except RunError as e:
        try:
            config = read_config(copy)
        except RunError:
            raise RunError(f"{e}; the copy {copy} cannot be read either") from None
        warn(f"{e}; using the copy saved with the checkpoints, {copy}")
        return config


def _flag(name: str, value) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def check_compatible(saved: dict, hp: HParams, where: str):
    """Refuse a run whose model fields differ from the saved config's; warn about changed env settings."""
    for name in hparams_lib.MODEL_FIELDS + hparams_lib.OPTIMIZER_FIELDS:
        value = saved.get(name, hparams_lib.MODEL_FIELDS_ABSENT_MEANS.get(name))
        if name in saved or name in hparams_lib.MODEL_FIELDS_ABSENT_MEANS:
            if value != getattr(hp, name):
                raise RunError(f"checkpoint in {where} was trained with {name}={value!r} but this run has "
                               f"{name}={getattr(hp, name)!r}; pass {_flag(name, value)} or use a new --logdir")
    if saved.get("per_thread_stats") and saved.get("threads", hp.threads) != hp.threads:
        raise RunError(f"checkpoint in {where} holds the optimizer statistics of {saved['threads']} threads "
                       f"(--per-thread-stats) but this run has {hp.threads}; pass --threads {saved['threads']} or "
                       f"use a new --logdir")
    for name in hparams_lib.ENV_FIELDS:
        if name in saved and saved[name] != getattr(hp, name):
            warn(f"resuming with {name}={getattr(hp, name)!r} but the checkpoint in {where} was trained with "
                 f"{name}={saved[name]!r}")


def check_specs(saved: dict, hp: HParams, actual: tuple, where: str):
    """Refuse a checkpoint whose saved (ObsSpec, ActionSpec) cannot drive envs with the `actual` specs."""
    try:
        saved_specs = specs_lib.from_config(saved)
    except ValueError as e:
        raise RunError(f"the config in {where} is damaged ({e}); restore it or use a new --logdir") from None
    why = specs_lib.mismatch(saved_specs, actual)
    if why:
        raise RunError(f"checkpoint in {where} has {why} of {hp.env_id} (full_action_space={hp.full_action_space}); "
                       f"use a new --logdir")


def load_config(path: str) -> tuple[HParams, tuple]:
    """config.json -> (validated HParams, (ObsSpec or None, ActionSpec or None)). Wrong types are reported, not
    crashed on."""
    config = read_config(path)
    fix = f"restore {path} from the training run or use another checkpoint"
    if not isinstance(config, dict):
        raise RunError(f"{path} is not a JSON object of hyperparameters; {fix}")
    hints = typing.get_type_hints(HParams)
    for name, value in config.items():
        kind = hints.get(name)
        if kind is None:
            continue
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, kind) and not isinstance(value, bool)
            or kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise RunError(f"{path}: {name} should be of type {kind.__name__}, got {value!r}; {fix}")
    num_actions = config.get("num_actions")
    if num_actions is not None and (isinstance(num_actions, bool) or not isinstance(num_actions, int)
                                    or num_actions < 1):
        raise RunError(f"{path}: num_actions should be a positive integer, got {num_actions!r}; {fix}")
    try:
        hp = hparams_lib.validate(hparams_lib.from_dict(config))
        specs = specs_lib.from_config(config)
    except ConfigError as e:
        raise RunError(f"{path} is invalid ({e}); {fix}") from None
    except ValueError as e:
        raise RunError(f"{path}: {e}; {fix}") from None
    return hp, specs


# ----------------------------------------------------------------------------------------------------------
# Checkpoint files
# ----------------------------------------------------------------------------------------------------------
def ckpt_number(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    return int(m.group(1)) if m else -1


def listed_checkpoints(ckpt_dir: str) -> list[str] | None:
    """The prefixes CheckpointManager's `checkpoint` state file names, newest first; None if it is missing or
    unreadable."""
    import tensorflow as tf
    try:
        state = tf.train.get_checkpoint_state(ckpt_dir)
    except (ValueError, tf.errors.OpError):  # e.g. an empty state file
        return None
    if state is None:
        return None
    return [os.path.normpath(p) for p in [state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)]]


def checkpoint_candidates(ckpt_dir: str) -> list[str]:
    """Checkpoint prefixes to resume from, best first: the ones the `checkpoint` state file lists, newest first,
    then any other ckpt-N.index on disk by number (the state file may be lost, or a crash came between writing
    a checkpoint and recording it)."""
    listed = listed_checkpoints(ckpt_dir) or []
    on_disk = sorted((p[:-len(".index")] for p in glob.glob(os.path.join(glob.escape(ckpt_dir), "ckpt-*.index"))),
                     key=ckpt_number, reverse=True)
    candidates = []
    for prefix in listed + on_disk:
        prefix = os.path.normpath(prefix)
        if prefix not in candidates:
            candidates.append(prefix)
    return candidates


def checkpoint_problem(prefix: str) -> str | None:
    """None if every tensor of the checkpoint reads back (TF checks a CRC32C per tensor), else what is wrong."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - NotFound, DataLoss, OutOfRange, ... all mean "unreadable"
        return first_line(e, 120)
    return None


def restore(checkpoint, path: str, where: str):
    """Restore and insist that every variable of ours was found in the file, and every value in the file went
    into one of our variables (a checkpoint of another program or network is refused, not half-loaded)."""
    import tensorflow as tf
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
        status.assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise RunError(f"checkpoint {path} in {where} does not fit this network ({first_line(e, 160)}); "
                       f"it is from an incompatible run - use a new --logdir") from None
    return status


def write_checkpoint_state(ckpt_dir: str, prefixes: list[str]):
    """Rewrite the `checkpoint` state file (prefixes oldest first; the last is the latest), atomically. The
    timestamps matter: CheckpointManager only rotates checkpoints stamped after last_preserved_timestamp."""
    names = [os.path.basename(p) for p in prefixes]
    stamps = [os.path.getmtime(p + ".index") for p in prefixes]
    text = "".join([f'model_checkpoint_path: "{names[-1]}"\n'] +
                   [f'all_model_checkpoint_paths: "{n}"\n' for n in names] +
                   [f"all_model_checkpoint_timestamps: {t!r}\n" for t in stamps] +
                   [f"last_preserved_timestamp: {min(stamps) - 1.0!r}\n"])
    write_text_atomic(os.path.join(ckpt_dir, "checkpoint"), text)


def remove_checkpoint_files(prefix: str):
    """Delete one checkpoint's files and the temp directory a crash or failed write may have left."""
    for path in glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"):
        os.remove(path)
    shutil.rmtree(prefix + "_temp", ignore_errors=True)


def fsync_checkpoint(prefix: str):
    """Flush a new checkpoint, the state file naming it and the directory entries to disk, so that a power cut
    right after a save cannot leave a state file that names data which never reached the disk."""
    directory = os.path.dirname(prefix)
    for path in glob.glob(glob.escape(prefix) + ".*") + [os.path.join(directory, "checkpoint")]:
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------------
# The store a trainer writes to
# ----------------------------------------------------------------------------------------------------------
class CheckpointStore:
    """A run directory's checkpoints: `saved_config()` before anything is built, `resume(objects)` once the
    learner exists, then `save(counts, window)` whenever the trainer holds the threads between updates."""

    def __init__(self, logdir: str, keep: int):
        self.logdir = logdir
        self.keep = keep
        # The directory is made by the first save, so a run refused before it leaves no empty checkpoints/ behind.
        self.ckpt_dir = os.path.join(logdir, CHECKPOINT_SUBDIR)
        # A crash mid-save can leave ckpt-N_temp/ behind; TF never reads it, and the caller holds the logdir lock.
        for stale in glob.glob(os.path.join(glob.escape(self.ckpt_dir), "ckpt-*_temp")):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in glob.glob(os.path.join(glob.escape(self.ckpt_dir), ARRAYS_FILE.format("*") + ".tmp")):
            with contextlib.suppress(OSError):
                os.remove(stale)
        self.candidates = checkpoint_candidates(self.ckpt_dir)
        self.config = None  # the run's config, copied beside every checkpoint
        self.state_vars = self.checkpoint = self.manager = None
        self.saved_step = None  # env_steps of the newest checkpoint of this run on disk
        self.saved_path = None

    def saved_config(self) -> dict | None:
        """The config the checkpoints were trained with; None for a new run."""
        self._refuse_weights_only()  # before the config is compared with the flags: this is the reason to give
        return read_run_config(self.logdir) if self.candidates else None

    def _refuse_weights_only(self):
        marker = weights_only_marker(self.logdir)
        if self.candidates and marker:
            raise RunError(f"{self.logdir} holds {WEIGHTS_ONLY_MARKERS[marker]}, see its {marker}): network "
                           f"weights only, no optimizer state or counters, so it cannot be resumed; resume the run "
                           f"it was made from, or use a new --logdir")

    def resume(self, objects: dict) -> Resumed | None:
        """Track `objects` (name -> trackable) and the counters in every checkpoint; restore the newest
        checkpoint that reads back whole into them. None for a new run. Unreadable newer ones are skipped with a
        warning naming them and the one used; if none is readable the run stops - it never silently starts
        from scratch over existing checkpoints."""
        import tensorflow as tf
        self.state_vars = dict(
            env_steps=tf.Variable(0, dtype=tf.int64, trainable=False),
            episodes=tf.Variable(0, dtype=tf.int64, trainable=False),
            updates=tf.Variable(0, dtype=tf.int64, trainable=False),
            wall_time_s=tf.Variable(0.0, dtype=tf.float64, trainable=False))
        self.checkpoint = tf.train.Checkpoint(**objects, **self.state_vars)
        prefix = self._restore_newest()
        # After the restore: the manager reads the state file, which the restore may have rebuilt.
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir, max_to_keep=self.keep)
        if prefix is None:
            return None
        v = self.state_vars
        counts = RunCounts(int(v["env_steps"].numpy()), int(v["episodes"].numpy()), int(v["updates"].numpy()),
                           float(v["wall_time_s"].numpy()))
        self.saved_step, self.saved_path = counts.env_steps, prefix
        return Resumed(prefix, counts, self._saved_window(counts.env_steps))

    def _restore_newest(self) -> str | None:
        self._refuse_weights_only()
        skipped = []
        for prefix in self.candidates:
            problem = checkpoint_problem(prefix)
            if problem:
                skipped.append(f"{os.path.basename(prefix)} ({problem})")
                continue
            restore(self.checkpoint, prefix, self.logdir)  # readable but not ours: a hard error, no fallback
            if skipped:
                warn(f"skipped unreadable checkpoint(s) {'; '.join(skipped)}; resuming from the previous one, "
                     f"{prefix}")
            self._ensure_state_file_lists(prefix)
            return prefix
        if skipped:
            raise RunError(f"no checkpoint in {self.ckpt_dir} can be read: {'; '.join(skipped)}; restore them from "
                           f"a backup or start over with another --logdir")
        return None

    def _ensure_state_file_lists(self, prefix: str):
        """If the `checkpoint` state file is lost or unreadable, rebuild it from the checkpoints on disk, so that
        CheckpointManager keeps rotating them instead of forgetting them."""
        if listed_checkpoints(self.ckpt_dir) is not None:
            return
        readable = sorted([p for p in self.candidates if ckpt_number(p) <= ckpt_number(prefix)], key=ckpt_number)
        warn(f"the checkpoint state file in {self.ckpt_dir} was missing or unreadable; rebuilt it from "
             f"{len(readable)} checkpoint(s) on disk, newest {os.path.basename(prefix)}")
        with io_errors(f"cannot rewrite the checkpoint state file in {self.ckpt_dir}"):
            write_checkpoint_state(self.ckpt_dir, readable)

    def _saved_window(self, steps: int) -> list:
        """The episode window saved with the checkpoint at `steps`. It only feeds the logged mean return, so a
        missing, unreadable or stale file (the resume fell back to an older checkpoint, or the run predates the
        file) gives an empty window."""
        try:
            with open(os.path.join(self.ckpt_dir, EPISODE_WINDOW_FILE)) as f:
                saved = json.load(f)
            if saved["env_steps"] != steps:
                return []
            return [(float(r), int(n)) for r, n in zip(saved["returns"], saved["lengths"], strict=True)]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def write_config(self, config: dict):
        """Write the run's config.json now; it is also copied beside every checkpoint."""
        self.config = config
        with io_errors(f"cannot write {CONFIG_FILE} in {self.logdir}"):
            write_json_atomic(os.path.join(self.logdir, CONFIG_FILE), config)

    def save(self, counts: RunCounts, window: list, arrays: dict | None = None) -> str | None:
        """Checkpoint the tracked objects and `counts`, then `arrays` (name -> np.ndarray) beside it; returns the
        checkpoint prefix.

        Crash-safe: TF writes the tensors to ckpt-N_temp/, merges them into ckpt-N.index/.data, and only then
        replaces the `checkpoint` state file (temp file + rename) and deletes the oldest checkpoint, so a crash
        at any moment leaves a state file that names complete checkpoints. The one unsafe case, rewriting a
        checkpoint in place, is avoided by never saving the same step twice. A failed write (disk full) removes
        its partial files, leaves the previous checkpoints untouched and raises CheckpointError."""
        steps = counts.env_steps
        if steps == self.saved_step:
            return self.saved_path  # nothing new since the last checkpoint
        for name, value in counts._asdict().items():
            self.state_vars[name].assign(value)
        prefix = os.path.join(self.ckpt_dir, f"ckpt-{steps}")
        try:
            with io_errors(f"could not write checkpoint {prefix}"):
                os.makedirs(self.ckpt_dir, exist_ok=True)
                path = self.manager.save(checkpoint_number=steps)
        except RunError as e:
            self._remove_failed_save(prefix)
            previous = f"the previous checkpoint {self.saved_path} is intact" if self.saved_path else \
                "no earlier checkpoint exists"
            raise CheckpointError(f"{e}; {previous}; free disk space and run again with the same --logdir "
                                  f"to resume") from None
        self.saved_step, self.saved_path = steps, path
        # The checkpoint is complete and recorded: a failure from here on leaves it in place. The config goes
        # next to the checkpoints so a copied checkpoint directory is self-describing for a3c_test.py; it is
        # written only after a successful save, so a failed one leaves the directory as it was.
        try:
            with io_errors(f"wrote checkpoint {path} but could not finish"):
                write_json_atomic(os.path.join(self.ckpt_dir, CONFIG_FILE), self.config)
                write_json_atomic(os.path.join(self.ckpt_dir, EPISODE_WINDOW_FILE),
                                  dict(env_steps=steps, returns=[r for r, _ in window],
                                       lengths=[n for _, n in window]))
                fsync_checkpoint(path)
        except RunError as e:
            raise CheckpointError(str(e)) from None
        if arrays is not None:
            self._save_arrays(steps, arrays)
        return path

    def _save_arrays(self, steps: int, arrays: dict):
        """replay-N.npz beside ckpt-N, then the older ones removed. They are not vital: a failure (disk full)
        warns, removes the partial file and keeps the older file (a resume can still use it)."""
        path = os.path.join(self.ckpt_dir, ARRAYS_FILE.format(steps))
        try:
            write_arrays_atomic(path, arrays)
        except OSError as e:
            warn(f"could not write {path} ({first_line(e)}); the checkpoint is saved, but a resume from it restores "
                 f"an older replay memory, or none")
            return
        for step, old in self._arrays_files():
            if step != steps:
                with contextlib.suppress(OSError):
                    os.remove(old)

    def _arrays_files(self) -> list[tuple[int, str]]:
        """(N, path) of every replay-N.npz in the checkpoint directory, oldest first."""
        found = []
        for path in glob.glob(os.path.join(glob.escape(self.ckpt_dir), ARRAYS_FILE.format("*"))):
            number = re.search(r"replay-(\d+)\.npz$", path)
            if number:
                found.append((int(number.group(1)), path))
        return sorted(found)

    def arrays_size(self, prefix: str) -> int | None:
        """Bytes of the arrays file saved with checkpoint `prefix`, None if there is none."""
        try:
            return os.path.getsize(os.path.join(self.ckpt_dir, ARRAYS_FILE.format(ckpt_number(prefix))))
        except OSError:
            return None

    def load_arrays(self, prefix: str) -> tuple[dict, int] | None:
        """The newest arrays file's arrays and the env steps of the checkpoint it was saved with (the one of
        `prefix`, or another when replays are saved with some checkpoints only), or None with a warning saying
        why (none saved, or the file is damaged): they are never worth a failed resume."""
        files = self._arrays_files()
        if not files:
            warn(f"no replay memory was saved in {self.ckpt_dir} (no {ARRAYS_FILE.format('N')} beside "
                 f"{os.path.basename(prefix)} or any other checkpoint); the replay starts empty")
            return None
        step, path = files[-1]
        try:
            return read_arrays(path), step
        except (OSError, ValueError) as e:
            warn(f"{path} is damaged ({first_line(e)}); the replay starts empty")
            return None

    def _remove_failed_save(self, prefix: str):
        """Delete what a failed save left, unless the state file already names it (then it is complete)."""
        if prefix in (listed_checkpoints(self.ckpt_dir) or []):
            return
        with contextlib.suppress(OSError):
            remove_checkpoint_files(prefix)
            for tmp in glob.glob(os.path.join(glob.escape(self.ckpt_dir), "checkpoint.tmp*")):
                os.remove(tmp)


# ----------------------------------------------------------------------------------------------------------
# Reading a checkpoint for evaluation
# ----------------------------------------------------------------------------------------------------------
def _latest_in(directory: str) -> str | None:
    """The checkpoint a directory points at: its `checkpoint` file, else the highest-numbered *.index."""
    import tensorflow as tf
    if os.path.isfile(os.path.join(directory, "checkpoint")):
        try:
            latest = tf.train.latest_checkpoint(directory)
        except Exception:  # noqa: BLE001 - a malformed `checkpoint` file; reported below
            latest = None
        if latest is None:
            raise RunError(f"{directory}/checkpoint names no checkpoint that exists (the file is corrupt or the "
                           f"ckpt-N.index/.data files are missing); pass a checkpoint prefix such as "
                           f"{directory}/ckpt-N instead")
        return latest
    prefixes = [p[:-len(".index")] for p in glob.glob(os.path.join(glob.escape(directory), "*.index"))]
    return max(prefixes, key=ckpt_number) if prefixes else None


def resolve_checkpoint(model: str) -> tuple[str, str]:
    """A run directory, checkpoint directory, checkpoint prefix or one of its files -> (checkpoint prefix,
    config.json path)."""
    model = os.path.normpath(model)
    model = re.sub(r"\.(index|data-\d+-of-\d+)$", "", model)  # a checkpoint's own files name its prefix
    if os.path.isfile(model) and os.path.basename(model) == "checkpoint":
        model = os.path.dirname(model) or "."
    hint = ("pass a run directory (a3c.py --logdir), a checkpoint directory or a prefix like "
            "runs/pong/checkpoints/ckpt-420")
    if os.path.isdir(model):
        prefix = _latest_in(model)
        sub = os.path.join(model, CHECKPOINT_SUBDIR)
        if prefix is None and os.path.isdir(sub):
            prefix = _latest_in(sub)
        if prefix is None:
            raise RunError(f"no checkpoint in {model} (no 'checkpoint' file or ckpt-N.index there or in "
                           f"{sub}); train with a3c.py --logdir {model} first or {hint}")
    elif os.path.isfile(model + ".index"):
        prefix = model
    elif os.path.exists(model):
        raise RunError(f"--model {model} is not a checkpoint; {hint}")
    else:
        raise RunError(f"--model {model} does not exist; {hint}")
    here = os.path.dirname(prefix) or "."
    candidates = [os.path.join(here, CONFIG_FILE), os.path.join(os.path.dirname(os.path.abspath(here)), CONFIG_FILE)]
    for path in candidates:
        if os.path.isfile(path):
            return prefix, path
    raise RunError(f"no {CONFIG_FILE} next to checkpoint {prefix} or in its parent directory; copy the "
                   f"{CONFIG_FILE} of the training run (a3c.py --logdir) next to the checkpoint")


def restore_weights(net, prefix: str):
    """Restore only the network weights (not the optimizer or counters) and insist that every variable of the
    network was found in the checkpoint with the right shape. Reading never modifies the checkpoint."""
    import tensorflow as tf
    try:
        status = tf.train.Checkpoint(model=net).restore(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except Exception as e:  # noqa: BLE001 - OpError, AssertionError, ValueError, and IndexError for a truncated file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"checkpoint {prefix} cannot be loaded ({first[:160]}); it is corrupt or was not "
                       f"trained with the network/action set in its {CONFIG_FILE}") from None
    # assert_existing_objects_matched only sees the layers the checkpoint's dependency graph tracks; a layer it
    # does not track (e.g. one kept in a plain Python list) silently keeps its random init. So also insist
    # that every variable of the network now holds exactly one of the model tensors stored in the file.
    reader = tf.train.load_checkpoint(prefix)
    saved = [reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
             if key.startswith("model/") and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")]
    missing = []
    for v in net.variables:
        value = v.numpy()
        match = next((i for i, t in enumerate(saved) if t.shape == value.shape and np.array_equal(t, value)), None)
        if match is None:
            missing.append(getattr(v, "path", v.name))
        else:
            saved.pop(match)
    if missing:
        more = ", ..." if len(missing) > 4 else ""
        raise RunError(f"checkpoint {prefix} restored only {len(net.variables) - len(missing)} of the network's "
                       f"{len(net.variables)} variables (not {', '.join(missing[:4])}{more}); "
                       f"those layers were never saved (network.py does not track them for tf.train.Checkpoint) "
                       f"or the checkpoint is from another model - it cannot be evaluated")


def trained_env_steps(prefix: str) -> int | None:
    import tensorflow as tf
    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor("env_steps/.ATTRIBUTES/VARIABLE_VALUE"))
    except Exception:  # noqa: BLE001 - an older / foreign checkpoint without the counter
        n = ckpt_number(prefix)
        return n if n >= 0 else None


# ----------------------------------------------------------------------------------------------------------
# Weights-only checkpoints (average_checkpoints.py, tools/slim_model.py)
# ----------------------------------------------------------------------------------------------------------
def weights_only_marker(directory: str) -> str | None:
    """The WEIGHTS_ONLY_MARKERS file in `directory` (its checkpoint holds network weights only), or None."""
    return next((m for m in WEIGHTS_ONLY_MARKERS if os.path.isfile(os.path.join(directory, m))), None)


def network_tensors(prefix: str) -> dict[str, np.ndarray]:
    """The network's variables stored in a checkpoint: checkpoint key -> value. Optimizer slots, the ACER
    average network (avg_model/) and the counters are not the network's."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(prefix)
    return {key: reader.get_tensor(key) for key in sorted(reader.get_variable_to_shape_map())
            if key.startswith("model/") and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
            and ".OPTIMIZER_SLOT" not in key}


def write_network_only(out: str, net, number: int, env_steps: int | None, config_path: str, marker: str,
                       record: dict) -> str:
    """Write `net`'s variables alone as out/checkpoints/ckpt-<number>, with the env-steps counter (evaluation
    reports it), a copy of `config_path` as out/config.json and `record` as out/<marker>, one of
    WEIGHTS_ONLY_MARKERS. Returns the checkpoint prefix. a3c_test.py and --export read it like any checkpoint;
    a3c.py refuses to resume it. Failed writes are a one-line RunError."""
    import tensorflow as tf
    if marker not in WEIGHTS_ONLY_MARKERS:
        raise ValueError(f"unknown weights-only marker {marker!r}")
    ckpt_dir = os.path.join(out, CHECKPOINT_SUBDIR)
    with io_errors(f"cannot write the checkpoint to {out}"):
        os.makedirs(ckpt_dir, exist_ok=True)
        with open(config_path) as f:
            write_text_atomic(os.path.join(out, CONFIG_FILE), f.read())
        # The marker before the checkpoint: from the moment a checkpoint exists in `out`, a3c.py refuses to resume
        # it (a network-only checkpoint would otherwise fail there with a less helpful "does not fit" message).
        write_json_atomic(os.path.join(out, marker), record)
        # CheckpointManager.save, as the trainer saves: it also writes the `checkpoint` state file and the
        # save_counter that restoring expects.
        checkpoint = tf.train.Checkpoint(model=net, env_steps=tf.Variable(env_steps or 0, dtype=tf.int64))
        path = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=1).save(checkpoint_number=number)
        fsync_checkpoint(path)
    return path
