"""Test driver (not a test): trains through a3c.main on the fake env and freezes inside the Nth checkpoint
save at a chosen point, printing FROZEN, so that test_reliability_cli.py can SIGKILL it right there.

    KILL_POINT=shards|merged|sweep KILL_AT_SAVE=2 python tests/kill_during_save.py <a3c.py arguments>

  shards: the tensors are written to ckpt-N_temp/, not yet merged into ckpt-N.index/.data
  merged: ckpt-N.index/.data are complete, the `checkpoint` state file does not name them yet
  sweep:  the state file names ckpt-N; the oldest checkpoint is half deleted (.index gone, .data not)
"""
import os
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import a3c  # noqa: E402
from tf_setup import import_tensorflow  # noqa: E402

POINT = os.environ["KILL_POINT"]
NTH = int(os.environ.get("KILL_AT_SAVE", "2"))


def freeze():
    print("FROZEN", flush=True)
    while True:
        time.sleep(60)


def freeze_on_call(module, name, call_number):
    original = getattr(module, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call_number:
            freeze()
        return original(*args, **kwargs)
    setattr(module, name, wrapper)


def main():
    import_tensorflow()
    from tensorflow.python.checkpoint import checkpoint_management
    from tensorflow.python.ops import gen_io_ops
    if POINT == "shards":  # merge_v2_checkpoints runs once per save, after the shards are written
        freeze_on_call(gen_io_ops, "merge_v2_checkpoints", NTH)
    elif POINT == "merged":  # the state file is written twice per save (before and after deleting old ones)
        freeze_on_call(checkpoint_management, "update_checkpoint_state_internal", 2 * NTH - 1)
    elif POINT == "sweep":  # with --checkpoints-kept 1 every later save deletes one .index then one .data
        freeze_on_call(checkpoint_management, "_delete_file_if_exists", 2 * (NTH - 1))
    else:
        raise SystemExit(f"unknown KILL_POINT {POINT}")
    return a3c.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
