"""A model copy per device (--devices): placement, updates reaching the shared weights, replica refresh, on
logical CPU devices in a fresh interpreter (tests/devices_check.py)."""
import os
import subprocess
import sys

import pytest

from helpers import HANG_GUARD_SCALE, REPO_ROOT, TESTS_DIR, cli_env


@pytest.mark.parametrize("network", ["a3c", "a3c-lstm"])
def test_replicas_on_logical_devices(network):
    env = dict(cli_env(fake=False), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(TESTS_DIR, "devices_check.py"), network], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300 * HANG_GUARD_SCALE)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK"), proc.stdout
