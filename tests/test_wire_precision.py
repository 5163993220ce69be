"""tools/wire_precision.py on a tiny CartPole run: a bfloat16 gradient is the float32 one rounded once (relative
error within bfloat16's unit roundoff 2^-9), a rounded pull moves the policy less than an update does, the run is
only read; its bad input."""
import importlib.util
import io
import os
import re

import pytest

import a3c
import hparams
from helpers import REPO_ROOT, file_hashes

_spec = importlib.util.spec_from_file_location("wire_precision", os.path.join(REPO_ROOT, "tools", "wire_precision.py"))
wire_precision = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire_precision)

BFLOAT16_UNIT_ROUNDOFF = 2.0 ** -9  # 8 significant bits, round to nearest


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wire") / "run"
    hp = hparams.parse_args(["--preset", "cartpole", "--threads", "1", "--envs-per-thread", "8", "--no-progress-bar",
                             "--log-interval-s", "60", "--logdir", str(run_dir), "--total-env-steps", "2000"])
    trainer = a3c.Trainer(hp, out=io.StringIO())
    trainer.setup()
    assert trainer.run() == 0
    return run_dir


def test_rounding_is_within_the_unit_roundoff_and_smaller_than_an_update(cartpole_run, capsys):
    before = file_hashes(cartpole_run)
    assert wire_precision.main(["--model", str(cartpole_run), "--rollouts", "3"]) == 0
    out = capsys.readouterr().out
    assert file_hashes(cartpole_run) == before
    bf16 = re.search(r"bfloat16: gradient relative L2 error (\S+), cosine to float32 (\S+), .*"
                     r"policy KL of a rounded pull (\S+)", out)
    # the run ended its linear schedule (step 0 at the checkpoint): compare with an update at the schedule's start
    update = re.search(r"one float32 update .* (\S+) at the schedule's start", out)
    assert bf16 and update, out
    rel_error, cos, pull_kl, update_kl = (float(bf16.group(1).rstrip(",")), float(bf16.group(2).rstrip(",")),
                                          float(bf16.group(3)), float(update.group(1)))
    assert 0 < rel_error <= BFLOAT16_UNIT_ROUNDOFF and cos > 0.99999
    assert 0 <= pull_kl < update_kl


def test_slow_kl_matches_the_formula():
    import numpy as np
    p, q = np.array([[0.0, 1.0, 2.0]]), np.array([[1.0, 1.0, 0.0]])
    pp, qq = np.exp(p) / np.exp(p).sum(), np.exp(q) / np.exp(q).sum()
    assert wire_precision.mean_kl(p, q) == pytest.approx(float(np.sum(pp * np.log(pp / qq))))
    assert wire_precision.mean_kl(p, p) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("args, needle", [
    (["--rollouts", "1"], "--rollouts must be >= 2"),
    (["--model", "models/pong"], "holds the network only"),
    (["--model", "no/such/run"], "--model no/such/run does not exist"),
])
def test_bad_input_is_one_line(args, needle, capsys):
    assert wire_precision.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
