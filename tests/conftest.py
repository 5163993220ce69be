"""Shared pytest setup: repo root on sys.path and TensorFlow C++ logging silenced."""
import os
import sys

# Must be set before TensorFlow is imported anywhere (test modules import it at collection time).
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, "tests")
for path in (TESTS_DIR, REPO_ROOT):  # repo modules, and the shared test doubles in tests/fakes.py
    if path not in sys.path:
        sys.path.insert(0, path)
