"""Keep what evaluation and export need of a trained model: the network weights of its newest checkpoint.

    python tools/slim_model.py --model runs/pong --out runs/pong-slim
    python a3c_test.py --model runs/pong-slim --out eval/pong-slim --episodes 30 --seed 1

A training checkpoint holds the network, the optimizer's statistics (RMSProp's and Adam's are as large again as
the network), for ACER the average network, and the run's counters; a3c_test.py and --export read only the
network. Writes to --out:
  checkpoints/ckpt-N          the network of --model's newest checkpoint (or of the checkpoint prefix --model
                              names): same N, same env-steps counter; after writing, every network variable is
                              read back and compared bit for bit with the source's
  config.json                 the config a3c_test.py reads for the source checkpoint
  network_only.json           the source checkpoint, its env steps, the variables kept and the objects dropped;
                              a3c.py refuses to resume --out (there is no optimizer state to resume)
  progress.csv, scores*.json  copied from the source's run directory, so the slim model keeps its learning curve
                              and recorded evaluations (--no-records: leave them out)
The episode window, TensorBoard logs and videos are not copied. Problems are one `error: ...` line on stderr,
exit status 2.
Owns: what a slim model keeps, and checking the copy against its source.
Must not: modify the source, write anything outside --out, or write checkpoint files itself
(checkpoints.write_network_only does, as it does for average_checkpoints.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from checkpoints import CHECKPOINT_SUBDIR, NETWORK_ONLY_FILE, checkpoint_candidates, checkpoint_problem, \
    ckpt_number, load_config, network_tensors, prepare_writable_dir, resolve_checkpoint, restore_weights, \
    trained_env_steps, write_network_only  # noqa: E402
from errors import ArgumentParser, ConfigError, RunError, run_writing_command  # noqa: E402
from tf_setup import configure_tensorflow, import_tensorflow  # noqa: E402

RECORDS = ("progress.csv", "scores*.json")  # small files that document the model: its curve, its evaluations


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description="Write the network-only checkpoint of a model's newest checkpoint (for "
                                   "evaluation and export; it cannot be resumed).")
    p.add_argument("--model", required=True,
                   help="a run directory (a3c.py --logdir), a checkpoint directory or a checkpoint prefix (…/ckpt-N)")
    p.add_argument("--out", required=True, help="a new directory for the slim model")
    p.add_argument("--no-records", dest="records", action="store_false",
                   help=f"do not copy {' and '.join(RECORDS)} from the source's run directory")
    return p.parse_args(argv)


def run_dir_of(prefix: str) -> str:
    """The run directory of a checkpoint: the parent of checkpoints/, else the directory holding it (the layout
    of models/ copied flat)."""
    ckpt_dir = os.path.dirname(os.path.abspath(prefix))
    return os.path.dirname(ckpt_dir) if os.path.basename(ckpt_dir) == CHECKPOINT_SUBDIR else ckpt_dir


def check_out(out: str, model: str, prefix: str):
    """--out must be neither the source nor a directory that already holds a checkpoint (the writer would rotate
    it away)."""
    source_dirs = {os.path.realpath(p) for p in (model, os.path.dirname(os.path.abspath(prefix)), run_dir_of(prefix))}
    if os.path.realpath(out) in source_dirs:
        raise ConfigError(f"--out {out} is the source model; choose a new directory")
    for directory in (out, os.path.join(out, CHECKPOINT_SUBDIR)):
        if os.path.isfile(os.path.join(directory, "checkpoint")) or checkpoint_candidates(directory):
            raise ConfigError(f"--out {out} already holds a checkpoint; choose a new directory")


def check_identical(source: str, want: dict, written: str):
    """Every network variable of `written` equals `want` (the source's, network_tensors(source)) bit for bit, and
    none of the source's is missing."""
    got = network_tensors(written)
    if set(want) != set(got):
        missing = sorted(set(want) ^ set(got))
        raise RunError(f"the network variables of {written} are not those of {source} (differ: "
                       f"{', '.join(missing[:3])}); the checkpoint does not fit the network in its config.json")
    for key, value in want.items():
        # Compare the bytes: np.array_equal would call two NaNs different and -0.0 equal to 0.0.
        if value.dtype != got[key].dtype or value.shape != got[key].shape or value.tobytes() != got[key].tobytes():
            raise RunError(f"{key} of {written} differs from {source}; the copy is wrong, do not use it")


def _objects(keys) -> set[str]:
    """The top-level objects (model, optimizer, avg_model, env_steps, ...) that hold checkpoint keys."""
    return {key.split("/")[0] for key in keys if key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}


def dropped_objects(source: str, kept: dict) -> list[str]:
    """The top-level objects of the source checkpoint that the slim one leaves out (optimizer, avg_model, ...)."""
    import tensorflow as tf
    written_too = {"env_steps", "save_counter"}  # the counter evaluation reports, and CheckpointManager's own
    return sorted(_objects(tf.train.load_checkpoint(source).get_variable_to_shape_map()) - _objects(kept)
                  - written_too)


def checkpoint_bytes(prefix: str) -> int:
    return sum(os.path.getsize(path) for path in glob.glob(glob.escape(prefix) + ".*"))


def copy_records(run_dir: str, out: str) -> list[str]:
    """Copy RECORDS from the run directory to --out; returns the names copied."""
    copied = []
    for pattern in RECORDS:
        for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), pattern))):
            shutil.copyfile(path, os.path.join(out, os.path.basename(path)))
            copied.append(os.path.basename(path))
    return copied


def slim(args) -> str:
    """Write the slim model; returns the line to print."""
    prefix, config_path = resolve_checkpoint(args.model)
    problem = checkpoint_problem(prefix)
    if problem:
        raise RunError(f"checkpoint {prefix} is unreadable ({problem}); pass an older one as --model .../ckpt-N")
    hp, (obs, action) = load_config(config_path)
    if action is None:
        raise RunError(f"{config_path} has no action_space or num_actions (a run from before they were saved); "
                       f"evaluate its checkpoint with a3c_test.py as it is")
    check_out(args.out, args.model, prefix)
    prepare_writable_dir(args.out, "--out")
    configure_tensorflow(dataclasses.replace(hp, devices=""))
    from learner import make_learner
    net = make_learner(hp, action, obs=obs).net  # the network as a3c_test.py builds it (ACER's has a Q head)
    restore_weights(net, prefix)
    steps = trained_env_steps(prefix)
    source_tensors = network_tensors(prefix)
    kept = {key: list(value.shape) for key, value in source_tensors.items()}
    record = dict(source=prefix, env_steps=steps, variables=kept, dropped=dropped_objects(prefix, kept))
    path = write_network_only(args.out, net, ckpt_number(prefix), steps, config_path, NETWORK_ONLY_FILE, record)
    check_identical(prefix, source_tensors, path)
    copied = copy_records(run_dir_of(prefix), args.out) if args.records else []
    return (f"wrote {path}: {checkpoint_bytes(path) / 1e6:.2f} MB, from {checkpoint_bytes(prefix) / 1e6:.2f} MB "
            f"for {prefix}; {len(kept)} network variables identical; left out "
            f"{', '.join(record['dropped']) or 'nothing'}" + (f"; copied {', '.join(copied)}" if copied else ""))


def main(argv=None) -> int:
    def body():
        args = parse_args(argv)
        import_tensorflow()  # quietly, before anything else loads it
        return slim(args)
    return run_writing_command(body)


if __name__ == "__main__":
    sys.exit(main())
