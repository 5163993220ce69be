"""The user-facing errors, defined once for every command of the project.

Owns: ConfigError (a bad flag or config value), RunError (the run cannot go on: a checkpoint that does not fit,
an unwritable directory, ...), CheckpointError, how any exception or warning becomes one line on stderr, and
the argument parser of every command (a bad command line raises ConfigError, or the command's own error type).
a3c.py, a3c_test.py, average_checkpoints.py and benchmark.py catch ConfigError and RunError, print
`error: <message>` and exit 2.
Must not import any other module of the project: every module may import this one.
"""
from __future__ import annotations

import argparse
import re
import sys


class ConfigError(ValueError):
    """A user-facing configuration problem; the CLI prints it as one line and exits 2."""


class RunError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class CheckpointError(RunError):
    """A checkpoint could not be written; the previous ones are intact."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose bad command lines raise `error_type` (ConfigError unless a command has its own: one line,
    exit 2) instead of printing the usage."""
    def __init__(self, *args, error_type: type[Exception] = ConfigError, **kwargs):
        super().__init__(*args, **kwargs)
        self._error_type = error_type

    def error(self, message):
        raise self._error_type(f"{message} (see --help)")


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: TF error messages run over many lines and wrap the cause in
    `{{function_node ...}} ... [Op:SaveV2]`."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error)).strip()
    text = re.sub(r"\s*\[Op:\w+\]", "", text.splitlines()[0] if text else type(error).__name__)
    return text[:limit]


def warn(msg: str):
    print(f"warning: {msg}", file=sys.stderr, flush=True)
