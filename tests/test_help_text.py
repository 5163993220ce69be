"""--help must say the truth: every script's help is read back and checked for defaults that are not the option's
(argparse's ArgumentDefaultsHelpFormatter printed `(default: True)` for both `--greedy` and `--sample`, which
share one dest, `(default: True)` for `--no-progress-bar`, and `(default: None)` for each of a3c.py's flags, whose
real defaults are HParams'); and the start-up line must call a retro game's emulators processes, not threads."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import re
import sys

import pytest

import a3c_test
import benchmark
import envs
import hparams
import plot
import reproduce
from helpers import make_trainer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _from_file(path: str):
    spec = importlib.util.spec_from_file_location("_help_" + os.path.basename(path)[:-3], os.path.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there while the class body runs
    spec.loader.exec_module(module)
    return module


def help_text(parse_args, monkeypatch) -> str:
    """What `SCRIPT --help` prints, on one line per option (a wide terminal: no wrapping inside words)."""
    monkeypatch.setenv("COLUMNS", "1000")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        parse_args(["--help"])
    assert e.value.code in (0, None)
    return out.getvalue()


def help_entries(text: str) -> dict[str, str]:
    """{option string: its help text} for every entry of the help's argument sections; an entry's continuation
    lines are joined, and each of its option strings (`--env-id`, `--env`) maps to the same text."""
    entries, current = {}, None
    for line in text.splitlines():
        entry = re.match(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if entry:
            current = [f.split()[0] for f in entry.group(1).split(", ")]
            for flag in current:
                entries[flag] = entry.group(2) or ""
        elif current and line.startswith("   ") and line.strip():
            for flag in current:
                entries[flag] = (entries[flag] + " " + line.strip()).strip()
        else:
            current = None
    return entries


def _a3c(argv):
    return hparams.parse_args(argv)


SCRIPTS = {
    "a3c.py": _a3c,
    "a3c_test.py": a3c_test.parse_args,
    "reproduce.py": reproduce.parse_args,
    "plot.py": plot.parse_args,
    "benchmark.py": benchmark.parse_args,
    "tools/diagnose_checkpoint.py": lambda argv: _from_file("tools/diagnose_checkpoint.py").parse_args(argv),
    "tools/ray_scaling.py": lambda argv: _from_file("tools/ray_scaling.py").parse_args(argv),
    "tools/vtrace_lag.py": lambda argv: _from_file("tools/vtrace_lag.py").parse_args(argv),
    "tests/memory_task.py": lambda argv: _from_file("tests/memory_task.py").parse_args(argv),
}
SCRIPTS.update({
    "average_checkpoints.py": lambda argv: _from_file("average_checkpoints.py").parse_args(argv),
    "tools/slim_model.py": lambda argv: _from_file("tools/slim_model.py").parse_args(argv),
    "tools/ship_run.py": lambda argv: _from_file("tools/ship_run.py").parse_args(argv),
    "tools/atari_table.py": lambda argv: _from_file("tools/atari_table.py").build_parser().parse_args(argv),
    "tools/scale_sim.py": lambda argv: _from_file("tools/scale_sim.py").build_parser().parse_args(argv),
})


def _script_params():
    return [pytest.param(parse, id=name) for name, parse in SCRIPTS.items()]


def test_help_entries_reads_argparse_help():
    text = ("usage: x\n\noptions:\n  -h, --help            show this help\n  --model MODEL         a run\n"
            "                        directory\n  --env-id ENV_ID, --env ENV_ID\n                        an id\n"
            "  --greedy              take it\n\nepilog\n")
    assert help_entries(text) == {"-h": "show this help", "--help": "show this help", "--model": "a run directory",
                                  "--env-id": "an id", "--env": "an id", "--greedy": "take it"}


@pytest.mark.parametrize("parse_args", _script_params())
def test_no_option_shows_a_default_it_does_not_have(parse_args, monkeypatch):
    entries = help_entries(help_text(parse_args, monkeypatch))
    assert len(entries) >= 3  # the help was really read
    wrong = {flag: text for flag, text in entries.items() if re.search(r"\(default: (None|True|False)\)", text)}
    assert not wrong, wrong


def test_a3c_test_says_greedy_is_the_default_and_sample_switches(monkeypatch):
    entries = help_entries(help_text(a3c_test.parse_args, monkeypatch))
    assert "(the default of every env family)" in entries["--greedy"] and "default" not in entries["--sample"]
    assert "default: the env family's, 0 for every family" in entries["--epsilon"]
    assert "instead" in entries["--sample"]
    assert "(default:" not in entries["--no-progress-bar"] and "shown" in entries["--no-progress-bar"]
    assert "by default" in entries["--no-progress-bar"]
    # and the parser does what the help says
    unset = a3c_test.parse_args(["--model", "m", "--out", "o"])
    assert unset.greedy is None and all(a3c_test.acting_rule(unset, family.eval_protocol).greedy
                                        for family in envs.FAMILIES)
    assert a3c_test.parse_args(["--model", "m", "--out", "o", "--sample"]).greedy is False
    assert a3c_test.parse_args(["--model", "m", "--out", "o"]).progress_bar is True
    assert a3c_test.parse_args(["--model", "m", "--out", "o", "--no-progress-bar"]).progress_bar is False


def test_a3c_help_shows_each_fields_own_default_and_it_is_what_parsing_gives(monkeypatch):
    entries = help_entries(help_text(_a3c, monkeypatch))
    parsed = hparams.parse_args([])
    for f in dataclasses.fields(hparams.HParams):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(parsed, f.name)
        shown = re.findall(r"\(default: ([^()]*)\)$", entries[flag])
        if value is None:  # unset: the docstring says what that means
            assert not shown, (flag, entries[flag])
            continue
        assert len(shown) == 1, (flag, entries[flag])
        if isinstance(value, bool):
            assert shown[0] == ("--" if value else "--no-") + f.name.replace("_", "-"), (flag, shown)
        else:
            assert shown[0] == (str(value) if value != "" else "empty"), (flag, shown)
    assert entries["--learning-rate"].endswith("(default: 0.0007)")
    assert entries["--clip-rewards"].endswith("(default: --clip-rewards)")
    assert entries["--no-jit-compile"].endswith("(default: --no-jit-compile)")
    assert "(default:" not in entries["--preset"]


def test_reproduce_and_benchmark_help(monkeypatch):
    entries = help_entries(help_text(reproduce.parse_args, monkeypatch))
    assert "default runs/reproduce/ROW" in entries["--out"] and "(default:" not in entries["--out"]
    assert entries["--seeds"].endswith("(default: 3)")
    text = help_text(benchmark.parse_args, monkeypatch)
    assert "a3c.py --help" in text  # the HParams flags it also takes are not listed: say where they are
    assert help_entries(text)["--seconds"].endswith("(default: 20)")


# ----------------------------------------------------------------------------------------------------------
# The start-up line: what steps a thread's vector env
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id, overrides, words", [
    ("ALE/Pong-v5", dict(env_threads=1), "1 emulator thread per vector env"),
    ("ALE/Pong-v5", dict(env_threads=3), "3 emulator threads per vector env"),
    ("retro:Airstriker-Genesis", dict(envs_per_thread=4), "4 emulator processes per vector env (one per env)"),
    ("retro:Airstriker-Genesis", dict(envs_per_thread=1), "1 emulator process per vector env (one per env)"),
    ("CartPole-v1", dict(vector_env="async", envs_per_thread=8), "8 env processes per vector env (one per env)"),
    ("CartPole-v1", dict(vector_env="sync"), "envs stepped in the learner thread (--vector-env sync)"),
])
def test_vector_env_workers_names_threads_or_processes(env_id, overrides, words):
    hp = dataclasses.replace(hparams.HParams(), env_id=env_id, **overrides)
    assert envs.vector_env_workers(hp) == words


def test_retro_start_up_line_says_processes(tmp_path):
    trainer = make_trainer(tmp_path, env_id="retro:Airstriker-Genesis")  # the fake env: no emulator is started
    trainer.close()
    out = trainer.out.getvalue()
    assert "2 threads x 2 envs, 2 emulator processes per vector env (one per env)" in out, out
    assert "emulator thread" not in out
