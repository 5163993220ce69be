"""Reproduce a README results row: train several seeds one after another, evaluate each, plot, print the row.

    python reproduce.py pong --seeds 3           # a3c.py --preset pong, seeds 0-2, each until the last-100 mean >= 18
    python reproduce.py pong-acer --seeds 3 --first-seed 3
    python reproduce.py cartpole --seeds 3 --quick          # the whole pipeline on a tiny budget (what CI runs)
    python reproduce.py pong --seeds 1 -- --learning-rate 1e-3   # extra a3c.py flags: a tuning run, not the row

For each seed: `a3c.py` (log in OUT/seed-N.log, run in OUT/seed-N/), then `a3c_test.py` (greedy, 30 episodes,
--eval-seed), then the milestones read from progress.csv: env steps and training wall time at which the mean return
of the last 100 episodes first reached each of the row's returns. At the end: OUT/curves.png (every seed on the
same axes), OUT/summary.json, and the markdown table printed (one line per seed, the median, the CPU model).
Re-running the same command resumes: seeds that reached the command's budget or stop target are read back, an
interrupted one continues from its checkpoint (a run stopped short is never evaluated), and one finished under a
smaller budget (`-- --total-env-steps N`) trains on; an evaluation is redone unless it is of the final checkpoint.
A row trained in legs (a schedule changed part-way, e.g. `pong-acer-t10-sticky-legs`) runs its a3c.py commands in
turn in the same run directory, each resuming the last; a leg already at its budget is read back.

Owns: the table of reproducible rows, running the command-line tools one at a time, and the row's figures.
Must not: import TensorFlow or the trainer (it drives a3c.py, a3c_test.py and plot.py like a user), or run seeds
side by side (on a small machine they would distort each other's wall times).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

import atari_suite
import hparams as hparams_lib
import plot
from errors import ArgumentParser, ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
RETURN_WINDOW = plot.RETURN_WINDOW


@dataclasses.dataclass(frozen=True)
class Row:
    train: tuple[str, ...]
    """a3c.py flags of the row (a preset plus what the README's command adds)."""
    milestones: tuple[float, ...]
    """Returns (last-100 training mean) whose first env step and wall time the row reports."""
    stop_at: float | None = None
    """--stop-at-mean-return for training; None trains to the preset's budget."""
    eval_episodes: int = 30
    """Evaluation episodes per seed."""
    eval_flags: tuple[str, ...] = ()
    """a3c_test.py flags of the main evaluation (none: greedy), e.g. the Atari suite's `--epsilon 0.01`."""
    also_eval: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Further evaluations of each seed, (name, a3c_test.py flags): the same episodes under other settings,
    e.g. a model trained with sticky actions also evaluated without them. Results in OUT/seed-N/eval-NAME/."""
    legs: tuple[tuple[str, ...], ...] = ((),)
    """a3c.py flags added to `train` for each training leg in turn, each resuming the one before in the same run
    directory: a row whose run changed its schedule part-way still reproduces in one command. One empty leg: the
    row's command as it is."""


def atari_row(game: str) -> Row:
    """The Atari suite's row for one game (issue 36): `--preset atari` for 10M env steps; milestones at the PPO
    paper's A2C and ACER scores; evaluated on the suite's protocol (30 full games, greedy with 1% random actions to
    break loops, eval seed 1) and again under sticky actions 0.25 (robustness)."""
    a2c, acer = atari_suite.ANCHORS[game][:2]
    milestones = tuple(sorted({a2c, acer}))
    flags = atari_suite.EVAL_FLAGS
    return Row(("--preset", "atari", "--env-id", f"ALE/{game}-v5"), milestones, eval_flags=flags,
               also_eval=((atari_suite.STICKY_EVAL, (*flags, "--repeat-action-probability", "0.25")),))


AIRSTRIKER_STEPS = 750_000
AIRSTRIKER_PROTOCOLS = (("sample", ("--sample",)), ("epsilon-0.01", ("--epsilon", "0.01")),
                        ("epsilon-0.05", ("--epsilon", "0.05")))

ROWS: dict[str, Row] = {
    "pong": Row(("--preset", "pong"), (-15.0, 0.0, 18.0), stop_at=18.0),
    "pong-lstm": Row(("--preset", "pong-lstm", "--learning-rate", "2e-4"), (-15.0, 0.0, 18.0), stop_at=18.0),
    "pong-acer": Row(("--preset", "pong-acer"), (-15.0, 0.0, 18.0), stop_at=18.0),
    "pong-acer-t10": Row(("--preset", "pong-acer-t10"), (-15.0, 0.0, 18.0), stop_at=18.0),
    "pong-acer-t10-sticky": Row(("--preset", "pong-acer-t10-sticky"), (-15.0, 0.0, 18.0), stop_at=18.0,
                                also_eval=(("no-sticky", ("--repeat-action-probability", "0")),)),
    # The shipped sticky-action model's run (README, Robustness to sticky actions), seed 0: the preset to 2.56M, then
    # half the entropy weight with the step decaying to 0 at 3.6M and again at 5.0M, then a constant small step.
    "pong-acer-t10-sticky-legs": Row(
        ("--preset", "pong-acer-t10-sticky", "--precision", "float32"), (-15.0, 0.0, 18.0),
        also_eval=(("no-sticky", ("--repeat-action-probability", "0")),),
        legs=(("--stop-at-env-steps", "2560000"),
              ("--entropy-beta", "0.005", "--total-env-steps", "3600000"),
              ("--entropy-beta", "0.005", "--total-env-steps", "5000000"),
              ("--entropy-beta", "0.005", "--lr-schedule", "constant", "--learning-rate", "0.00005",
               "--total-env-steps", "7400000", "--checkpoint-interval-s", "60", "--checkpoints-kept", "40"))),
    # Greedy Breakout can loop (the ball circling without touching a brick) until the 108K-frame limit: the policy's
    # own samples, A3C's acting rule, and greedy with 1% random actions (the DQN-style loop breaker) are evaluated too.
    "breakout": Row(("--preset", "breakout"), (50.0, 200.0, 400.0), stop_at=400.0,
                    also_eval=(("sample", ("--sample",)), ("epsilon-0.01", ("--epsilon", "0.01")))),
    "cartpole": Row(("--preset", "cartpole"), (475.0,)),
    "pendulum": Row(("--preset", "pendulum"), (-250.0,)),
    "lunarlander": Row(("--preset", "lunarlander"), (200.0, 250.0)),
    "lunarlander-continuous": Row(("--preset", "lunarlander-continuous"), (200.0, 250.0)),
    "bipedalwalker": Row(("--preset", "bipedalwalker"), (250.0, 300.0)),
    # Retro (issue 37): feed-forward against LSTM at the same 750K env steps (~30 min a seed on 2 cores), each seed
    # evaluated greedy, sampled and with 1% and 5% random actions: what the family's protocol is chosen from.
    **{name: Row(("--preset", name), (250.0, 300.0), also_eval=AIRSTRIKER_PROTOCOLS,
                 legs=(("--stop-at-env-steps", str(AIRSTRIKER_STEPS)),)) for name in ("airstriker", "airstriker-lstm")},
    # The Atari suite (issue 36): one row per game, `python reproduce.py atari-seaquest --seeds 1`.
    **{f"atari-{hparams_lib.game_slug(game)}": atari_row(game) for game in atari_suite.GAMES},
}
# --quick: the same tools and files on a budget that only checks the pipeline (no figure of it means anything).
# Leg i of a row trains to QUICK_STEPS * (i + 1) env steps, its own --stop-at-env-steps dropped.
QUICK_STEPS = 2000
QUICK_TRAIN = ("--log-interval-s", "1")
QUICK_EVAL = ("--episodes", "2", "--max-steps", "100")


class ReproduceError(Exception):
    """Printed as one `error: ...` line; exit status 2 for bad input, 1 when a run failed."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(error_type=ReproduceError,
                       description="Train, evaluate and plot a README results row over several seeds.")
    p.add_argument("row", help=f"one of {', '.join(ROWS)}")
    p.add_argument("--seeds", type=int, default=3, help="how many seeds (run one after another)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    p.add_argument("--out", default=None, help="directory for the runs, logs, curves and summary; "
                                               "default runs/reproduce/ROW (ROW-quick with --quick)")
    p.add_argument("--eval-seed", type=int, default=1, help="a3c_test.py --seed")
    p.add_argument("--quick", action="store_true", help="a tiny budget: checks the pipeline, measures nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra = [str(a) for a in extra]
    if args.row not in ROWS:
        raise ReproduceError(f"unknown row {args.row!r}; choose one of {', '.join(ROWS)}")
    if args.seeds < 1:
        raise ReproduceError(f"--seeds must be >= 1, got {args.seeds}")
    if args.first_seed < 0:
        raise ReproduceError(f"--first-seed must be >= 0, got {args.first_seed}")
    blocked = {"--seed", "--logdir"} & {a.split("=")[0] for a in args.extra}
    if blocked:
        raise ReproduceError(f"{', '.join(sorted(blocked))} after -- is set by reproduce.py; use --first-seed / --out")
    args.out = args.out or os.path.join("runs", "reproduce", args.row + ("-quick" if args.quick else ""))
    return args


# ----------------------------------------------------------------------------------------------------------
# Figures from a run's files
# ----------------------------------------------------------------------------------------------------------
def milestones(columns: dict, targets) -> dict[float, tuple[float, float] | None]:
    """{target: (env steps, wall time s) of the first row whose full last-100 window has mean >= target, or None}."""
    found = {}
    for target in targets:
        found[target] = next(((s, w) for s, w, e, r in zip(columns["env_steps"], columns["wall_time_s"],
                                                           columns["episodes"], columns["mean_return"])
                              if e >= RETURN_WINDOW and r is not None and r >= target), None)
    return found


def training_done(columns: dict, step_budget: int, stop_at: float | None) -> bool:
    """Whether a run with these progress.csv columns has reached the end its command sets: the step budget
    (--stop-at-env-steps, else --total-env-steps), or a full last-100 window at --stop-at-mean-return (a3c.py stops
    at the first such row). False for a run stopped early (a signal, a crash), which the same command resumes."""
    if not columns["env_steps"]:
        return False
    if columns["env_steps"][-1] >= step_budget:
        return True
    return stop_at is not None and milestones(columns, (stop_at,))[stop_at] is not None


def cpu_model() -> str:
    """`model name (family F model M), N CPUs` from /proc/cpuinfo: throughput figures depend on it."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    name = fields.get("model name", platform.machine())
    family = f" (family {fields['cpu family']} model {fields['model']})" if "cpu family" in fields else ""
    return f"{name}{family}, {os.cpu_count()} CPUs"


def _steps(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,.0f}"


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min"


def _median(values: list[float | None]) -> float | None:
    """Median where None (never reached) counts as +inf; None if the median itself was never reached."""
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


# ----------------------------------------------------------------------------------------------------------
# Running the tools
# ----------------------------------------------------------------------------------------------------------
def _run_tool(cmd: list[str], log_path: str, progress_csv: str | None = None) -> int:
    """Run cmd with its output in log_path (appended); a status line every minute from progress_csv. Ctrl-C
    reaches the child too (same process group): wait for it to save, then re-raise."""
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=HERE, stdout=log, stderr=subprocess.STDOUT)
        try:
            last_status = time.monotonic()
            while proc.poll() is None:
                time.sleep(1.0)
                if progress_csv and time.monotonic() - last_status >= 60:
                    last_status = time.monotonic()
                    _print_status(progress_csv)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # in case it came from kill, not the terminal
            proc.wait()
            raise
    return proc.returncode


def _print_status(progress_csv: str):
    try:
        columns = plot.read_progress(progress_csv, returns_only=False)
    except plot.PlotError:
        return  # not written yet
    mean = columns["mean_return"][-1]
    print(f"  {_steps(columns['env_steps'][-1])} env steps, {_minutes(columns['wall_time_s'][-1])}, "
          f"mean return (last 100) {'n/a' if mean is None else f'{mean:.2f}'}", flush=True)


def training_rate(columns: dict, since_steps: int | None) -> tuple[float, bool]:
    """(env steps per second of training wall time, whether it is of this invocation's own training).

    since_steps: the run's last env step before this invocation trained (0 for a new run), None when it only read
    the run back. A resumed run's rate is of its new rows alone: earlier legs may have run on another CPU, and the
    table prints this machine's CPU. A run read back gets its whole-run rate, marked as such."""
    steps, wall = columns["env_steps"], columns["wall_time_s"]
    if since_steps is not None and steps[-1] > since_steps:
        base = max((i for i, s in enumerate(steps) if s <= since_steps), default=None)
        first_steps, first_wall = (0.0, 0.0) if base is None else (steps[base], wall[base])
        return (steps[-1] - first_steps) / max(wall[-1] - first_wall, 1e-9), True
    return steps[-1] / max(wall[-1], 1e-9), False


def _read_columns(progress_csv: str) -> dict | None:
    """progress.csv's columns (every row), or None before the first row."""
    try:
        columns = plot.read_progress(progress_csv, returns_only=False)
    except plot.PlotError:
        return None
    return columns if columns["env_steps"] else None


def _evaluated_steps(out_dir: str) -> int | None:
    """The training step of the checkpoint out_dir/scores.json evaluated, or None (not evaluated yet)."""
    try:
        with open(os.path.join(out_dir, "scores.json")) as f:
            return int(json.load(f)["env_steps_trained"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train_command(args, row: Row, seed: int, logdir: str, leg: int) -> list[str]:
    """The a3c.py command of one leg of a row's training: the row's flags, the leg's, --quick's, then the user's."""
    flags = list(row.legs[leg])
    if args.quick:  # the pipeline only: every leg a little further than the one before
        flags = [f for i, f in enumerate(flags) if f != "--stop-at-env-steps" and
                 (i == 0 or flags[i - 1] != "--stop-at-env-steps")]
        flags += [*QUICK_TRAIN, "--total-env-steps", str(QUICK_STEPS * (leg + 1))]
    train = [sys.executable, os.path.join(HERE, "a3c.py"), *row.train, "--seed", str(seed), "--logdir", logdir,
             "--no-progress-bar"]
    if row.stop_at is not None:
        train += ["--stop-at-mean-return", f"{row.stop_at:g}"]
    return train + flags + list(args.extra)


def run_seed(args, row: Row, seed: int) -> dict:
    """Train (or resume), evaluate and measure one seed; its summary entry."""
    logdir = os.path.join(args.out, f"seed-{seed}")
    log_path = os.path.join(args.out, f"seed-{seed}.log")
    trains = [train_command(args, row, seed, logdir, leg) for leg in range(len(row.legs))]
    eval_dir = os.path.join(logdir, "eval")

    def evaluation(out_dir: str, *flags: str) -> list[str]:
        return [sys.executable, os.path.join(HERE, "a3c_test.py"), "--model", logdir, "--out", out_dir,
                "--episodes", str(row.eval_episodes), "--record", "1", "--seed", str(args.eval_seed),
                "--no-progress-bar", *(QUICK_EVAL if args.quick else ()), *flags]

    evaluate = evaluation(eval_dir, *row.eval_flags)
    started = time.time()
    progress_csv = os.path.join(logdir, "progress.csv")
    since_steps = None  # env steps at the start of the first leg trained by this command
    columns = _read_columns(progress_csv)  # read again after each leg this command trains
    for leg, train in enumerate(trains):
        which = f"leg {leg + 1} of {len(trains)}: " if len(trains) > 1 else ""
        try:  # the budget and stop target this leg trains to (a3c.py reports a bad flag itself)
            hp = hparams_lib.parse_args(train[2:])
        except ConfigError:
            hp = None

        def leg_done() -> bool:
            return columns is not None and training_done(columns, hparams_lib.step_budget(hp),
                                                         hp.stop_at_mean_return)

        if hp is not None and leg_done():
            print(f"seed {seed}: {which}finished earlier, read back from {logdir}", flush=True)
            continue
        if since_steps is None:
            since_steps = 0 if columns is None else int(columns["env_steps"][-1])
        print(f"seed {seed}: {which}training in {logdir} (log {log_path})", flush=True)
        status = _run_tool(train, log_path, progress_csv)
        if status != 0:
            raise ReproduceError(f"seed {seed}: {which}a3c.py exited with status {status}; see {log_path}", status=1)
        columns = _read_columns(progress_csv)
        if hp is not None and not leg_done():
            at = "no" if columns is None else _steps(columns["env_steps"][-1])
            raise ReproduceError(f"seed {seed}: {which}a3c.py stopped at {at} env steps, before its budget "
                                 f"{_steps(hparams_lib.step_budget(hp))} or stop target (a signal?); not evaluated; "
                                 f"the same command resumes it (see {log_path})", status=1)
    trained_steps = None if columns is None else int(columns["env_steps"][-1])

    def evaluate_unless_current(cmd: list[str], out_dir: str, name: str | None):
        """Current: out_dir/scores.json is of the checkpoint training ended with (a continued run is evaluated
        again)."""
        evaluated = _evaluated_steps(out_dir)
        if evaluated is not None and evaluated == trained_steps:
            return
        print(f"seed {seed}: evaluating{f', {name}' if name else ''} ({' '.join(cmd[2:])})", flush=True)
        status = _run_tool(cmd, log_path)
        if status != 0:
            raise ReproduceError(f"seed {seed}: a3c_test.py{f' ({name})' if name else ''} exited with status "
                                 f"{status}; see {log_path}", status=1)

    evaluate_unless_current(evaluate, eval_dir, None)
    also_commands = {}  # name -> (a3c_test.py command, its --out)
    for name, flags in row.also_eval:  # after the main one, so a seed finished before a row gained one gets it too
        out_dir = os.path.join(logdir, f"eval-{name}")
        cmd = evaluation(out_dir, *flags)
        also_commands[name] = (cmd, out_dir)
        evaluate_unless_current(cmd, out_dir, name)
    if columns is None:  # read above, after training
        raise ReproduceError(f"seed {seed}: cannot read the run's results (no rows in {progress_csv})", status=1)
    try:
        with open(os.path.join(eval_dir, "scores.json")) as f:
            scores = json.load(f)
        also_scores = {}
        for name, (_, out_dir) in also_commands.items():
            with open(os.path.join(out_dir, "scores.json")) as f:
                also_scores[name] = json.load(f)
    except (OSError, ValueError) as e:
        raise ReproduceError(f"seed {seed}: cannot read the run's results ({e})", status=1) from None
    reached = milestones(columns, row.milestones)
    entry = {
        "seed": seed, "logdir": logdir, "train_command": " && ".join(" ".join(t[1:]) for t in trains),
        "eval_command": " ".join(evaluate[1:]),
        "env_steps": int(columns["env_steps"][-1]), "wall_time_s": columns["wall_time_s"][-1],
        "episodes": int(columns["episodes"][-1]), "final_mean_return": columns["mean_return"][-1],  # None: no episode
        "milestones": {f"{t:g}": (None if r is None else {"env_steps": int(r[0]), "wall_time_s": r[1]})
                       for t, r in reached.items()},
        "eval_mean": scores["mean"], "eval_std": scores["std"], "eval_episodes": len(scores["episodes"]),
        "eval_truncated": scores.get("truncated_episodes", 0),
        "also_eval": {name: {"command": " ".join(also_commands[name][0][1:]), "mean": sc["mean"], "std": sc["std"],
                             "episodes": len(sc["episodes"]), "truncated": sc.get("truncated_episodes", 0)}
                      for name, sc in also_scores.items()},
        "session_wall_time_s": round(time.time() - started, 1),
    }
    entry["env_steps_per_s"], entry["env_steps_per_s_trained_here"] = training_rate(columns, since_steps)
    print(f"seed {seed}: {_row_cells(entry, row)}", flush=True)
    return entry


# ----------------------------------------------------------------------------------------------------------
# The row
# ----------------------------------------------------------------------------------------------------------
def _reached(entry: dict, target: float, key: str) -> float | None:
    """An entry's env_steps or wall_time_s at a milestone return; None if the run never reached it."""
    milestone = entry["milestones"][f"{target:g}"]
    return None if milestone is None else milestone[key]


def _milestone_cells(entry: dict, row: Row) -> tuple[str, str]:
    steps = " / ".join("-" if (n := _reached(entry, t, "env_steps")) is None else _steps(n) for t in row.milestones)
    seconds = _reached(entry, row.milestones[-1], "wall_time_s")
    return steps, ("not reached" if seconds is None else _minutes(seconds))


def _eval_cell(mean: float, std: float, truncated: int) -> str:
    """`mean ± std`, and how many episodes were cut before the game ended (by the env's time limit or --max-steps):
    their returns are partial."""
    return f"{mean:.2f} ± {std:.2f}" + (f" ({truncated} cut short)" if truncated else "")


def _row_cells(entry: dict, row: Row) -> str:
    steps, minutes = _milestone_cells(entry, row)
    also = "".join(f" {_eval_cell(a['mean'], a['std'], a['truncated'])} |"
                   for a in (entry["also_eval"][name] for name, _ in row.also_eval))
    rate = f"{entry['env_steps_per_s']:,.0f}" + ("" if entry["env_steps_per_s_trained_here"] else " (read back)")
    return (f"| {entry['seed']} | {steps} | {minutes} | {_steps(entry['env_steps'])}, {_minutes(entry['wall_time_s'])}"
            f" | {rate} | "
            f"{_eval_cell(entry['eval_mean'], entry['eval_std'], entry['eval_truncated'])} |{also}")


def table(name: str, row: Row, entries: list[dict], cpu: str) -> str:
    """The markdown row(s): one line per seed and the median."""
    targets = " / ".join(f"{t:g}" for t in row.milestones)
    lines = [f"`python reproduce.py {name} --seeds {len(entries)}`; CPU: {cpu}", "",
             f"| seed | env steps to {targets} (last-100 training mean) | wall time to {row.milestones[-1]:g} | "
             f"end: env steps, wall time | env steps/s | "
             f"eval ({row.eval_episodes} greedy episodes{''.join(' ' + f for f in row.eval_flags)}) |"
             + "".join(f" eval, {name} |" for name, _ in row.also_eval),
             "|---|---|---|---|---:|---|" + "---|" * len(row.also_eval)]
    lines += [_row_cells(e, row) for e in entries]
    if len(entries) > 1:
        med_steps = []
        for t in row.milestones:
            m = _median([_reached(e, t, "env_steps") for e in entries])
            med_steps.append("-" if m is None else _steps(m))
        med_time = _median([_reached(e, row.milestones[-1], "wall_time_s") for e in entries])
        lines.append(f"| **median** | {' / '.join(med_steps)} | "
                     f"{'not reached' if med_time is None else _minutes(med_time)} | "
                     f"{_steps(statistics.median(e['env_steps'] for e in entries))} | "
                     f"{statistics.median(e['env_steps_per_s'] for e in entries):,.0f} | "
                     f"{statistics.median(e['eval_mean'] for e in entries):.2f} |"
                     + "".join(f" {statistics.median(e['also_eval'][name]['mean'] for e in entries):.2f} |"
                               for name, _ in row.also_eval))
    return "\n".join(lines)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, a batch scheduler) stops the running tool as Ctrl-C does


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        args = parse_args(argv)
        row = ROWS[args.row]
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            raise ReproduceError(f"cannot create --out {args.out} ({e.strerror}); "
                                 f"choose a writable directory") from None
        entries = [run_seed(args, row, seed) for seed in range(args.first_seed, args.first_seed + args.seeds)]
        cpu = cpu_model()
        curves = [(f"seed {e['seed']}", plot.read_progress(os.path.join(e["logdir"], "progress.csv")))
                  for e in entries if e["final_mean_return"] is not None]
        png = os.path.join(args.out, "curves.png")
        if curves:
            plot.plot(curves, png, f"{args.row}: {len(entries)} seeds")
        else:
            png = "none (no episode finished)"
        text = table(args.row, row, entries, cpu)
        summary = {"row": args.row, "quick": args.quick, "extra_flags": args.extra, "cpu": cpu, "seeds": entries,
                   "curves": png, "table": text}
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        if args.extra:
            print(f"note: extra a3c.py flags {' '.join(args.extra)}: a tuning run, not the README row")
        print(text)
        print(f"curves: {png}; summary: {os.path.join(args.out, 'summary.json')}")
    except ReproduceError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except plot.PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: the running tool saved its state; the same command resumes", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
