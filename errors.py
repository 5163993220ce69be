"""The user-facing errors, defined once for every command of the project.

Owns: ConfigError (a bad flag or config value), RunError (the run cannot go on: a checkpoint that does not fit,
an unwritable directory, ...), CheckpointError, how any exception or warning becomes one line on stderr, and
the argument parser of every command (a bad command line raises ConfigError, or the command's own error type;
--help shows a default only where it is the value the option takes).
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


def run_writing_command(body) -> int:
    """Run a command that writes to --out: body() returns the line to print (exit status 0); a ConfigError or
    RunError, or an OSError while writing, becomes one `error: ...` line on stderr and exit status 2."""
    try:
        print(body(), flush=True)
        return 0
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {e.filename} ({e.strerror}); choose a writable --out", file=sys.stderr)
        return 2


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with `(default: X)` only where X is the value the option takes when it is left out. Not for a flag
    without a value: `--greedy` / `--sample` (or `--no-progress-bar`) share one dest whose default describes the
    pair, not the flag, so argparse would print `(default: True)` for each; their help says it in words. Not for a
    required option, nor for None: the option is unset and its help says what that means."""
    def _get_help_string(self, action):
        if action.nargs == 0 or action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose bad command lines raise `error_type` (ConfigError unless a command has its own: one line,
    exit 2) instead of printing the usage, and whose --help shows defaults as HelpFormatter does."""
    def __init__(self, *args, error_type: type[Exception] = ConfigError, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
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
