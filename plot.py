"""Learning curves of an a3c-tf run.

    python plot.py runs/pong                    # -> runs/pong/curves.png
    python plot.py runs/pong --out docs/pong    # -> docs/pong.png
    python plot.py runs/a3c runs/acer --labels A3C,ACER --out docs/vs   # several runs on the same axes
    python plot.py runs/a3c runs/acer --at 1M,2M,3M       # a table: each run's mean return at those env steps

Reads RUN_DIR/progress.csv (written by a3c.py every --log-interval-s) and draws the mean raw episode return
of the last 100 episodes against env steps, episodes and wall-clock training time, side by side in one PNG.
With several run directories each gets its own colour and a legend entry (its label, or its directory name).
`--at` prints a markdown table instead (the PNG too only if --out is given): per run, the mean return of the last
row at or before each env step count, and of its last row.
Owns: reading progress.csv, drawing the curves and tabulating them.
Must not: import TensorFlow or the trainer, so that plotting is quick and never disturbs a run in progress.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys

from errors import ArgumentParser  # errors imports nothing of the project, so no TensorFlow

REQUIRED = ("env_steps", "wall_time_s", "episodes", "mean_return")
RETURN_WINDOW = 100  # run_log.RETURN_WINDOW; not imported so that plotting never loads TensorFlow


class PlotError(Exception):
    """Printed as one `error: ...` line, exit status 2."""


def parse_args(argv=None):
    p = ArgumentParser(error_type=PlotError,
                       description="Plot mean episode return vs env steps, episodes and wall time.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a3c.py --logdir run directory (or its progress.csv); several to compare them")
    p.add_argument("--out", default=None,
                   help="output PNG path or prefix (.png is appended if missing); default RUN_DIR/curves.png "
                        "(required with several runs)")
    p.add_argument("--labels", default=None, help="comma-separated legend labels, one per RUN_DIR")
    p.add_argument("--at", default=None, metavar="STEPS",
                   help="comma-separated env step counts (250k, 1.5M or 3000000): print each run's mean return there "
                        "as a markdown table; the PNG is then drawn only if --out is given")
    args = p.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(args.run_dirs):
        raise PlotError(f"--labels has {len(labels)} labels for {len(args.run_dirs)} runs; give one per run")
    args.at = parse_steps(args.at) if args.at is not None else None
    if len(args.run_dirs) > 1 and args.out is None and args.at is None:
        raise PlotError("several runs need --out PATH for the one PNG that compares them (or --at for a table)")
    args.labels = labels
    return args


_SUFFIXES = {"k": 1e3, "m": 1e6}


def parse_steps(text: str) -> list[int]:
    """'250k,1.5M,3000000' -> [250000, 1500000, 3000000], increasing; PlotError on anything else."""
    steps = []
    for token in text.split(","):
        token = token.strip()
        scale = _SUFFIXES.get(token[-1:].lower(), 1.0)
        try:
            value = float(token[:-1] if scale != 1.0 else token) * scale
        except ValueError:
            value = 0.0
        if not (value > 0 and math.isfinite(value)):
            raise PlotError(f"--at {text}: {token!r} is not an env step count; give e.g. 250k,1.5M,3000000")
        steps.append(int(round(value)))
    if steps != sorted(set(steps)):
        raise PlotError(f"--at {text}: give the step counts once each, in increasing order")
    return steps


def _steps_label(steps: float, digits: int = 6) -> str:
    return (f"{steps / 1e6:.{digits}g}M" if steps >= 1e6 else f"{steps / 1e3:.{digits}g}k" if steps >= 1e3
            else f"{steps:.{digits}g}")


def table(curves: list[tuple[str, dict]], at: list[int]) -> str:
    """A markdown table: per run, the mean return of its last row at or before each of `at` ('-' before its first
    row or past its end), then its last row's."""
    lines = ["| run | " + " | ".join(_steps_label(s) for s in at) + " | last row |",
             "|---|" + "---:|" * (len(at) + 1)]
    for label, columns in curves:
        steps, returns = columns["env_steps"], columns["mean_return"]
        cells = []
        for target in at:
            before = [r for s, r in zip(steps, returns) if s <= target]
            cells.append(f"{before[-1]:,.1f}" if before and target <= steps[-1] else "-")
        cells.append(f"{returns[-1]:,.1f} at {_steps_label(steps[-1], digits=3)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_progress(csv_path: str, returns_only: bool = True) -> dict[str, list[float]]:
    """The rows that have a mean return (returns_only=False: every row, mean_return None where no episode had
    finished), as columns. When a run was resumed from a checkpoint older than its last log rows, the rows it
    re-trained over are replaced by the new ones (env_steps never goes back)."""
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise PlotError(f"{csv_path} has no column {', '.join(missing)}; it is not an a3c.py progress.csv")
            rows = list(reader)
    except FileNotFoundError:
        raise PlotError(f"no progress.csv at {csv_path}; pass the --logdir of an a3c.py run") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PlotError(f"cannot read {csv_path} ({e}); check the file") from None
    kept = []
    for row in rows:
        try:
            values = {c: float(row[c]) for c in REQUIRED[:3]}
        except (TypeError, ValueError):
            continue  # e.g. a line cut short when the trainer was killed mid-write
        while kept and kept[-1]["env_steps"] > values["env_steps"]:
            kept.pop()
        try:
            values["mean_return"] = float(row["mean_return"])
        except (TypeError, ValueError):
            values["mean_return"] = None  # no episode finished yet
        kept.append(values)
    if not returns_only:
        return {c: [r[c] for r in kept] for c in REQUIRED}
    kept = [r for r in kept if r["mean_return"] is not None]
    if not kept:
        raise PlotError(f"{csv_path} has no mean return yet (no episode has finished); train longer and retry")
    return {c: [r[c] for r in kept] for c in REQUIRED}


def run_env_id(run_dir: str) -> str | None:
    """The env id in the run's config.json, or None when it cannot be read."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            return json.load(f).get("env_id") or None
    except (OSError, ValueError, AttributeError):
        return None


def run_title(run_dir: str) -> str:
    title = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    env_id = run_env_id(run_dir)
    return f"{env_id} - {title}" if env_id else title


def plot(curves: list[tuple[str, dict]], out_path: str, title: str):
    """Draw [(label, columns)] on three panels sharing the return axis; one run is drawn without a legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    panels = [("env_steps", "env steps (agent steps, all envs)", 1.0),
              ("episodes", "episodes", 1.0),
              ("wall_time_s", "wall time (minutes)", 1.0 / 60.0)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True, constrained_layout=True)
    for i, (label, columns) in enumerate(curves):
        for ax, (key, _, scale) in zip(axes, panels):
            x = [v * scale for v in columns[key]]
            ax.plot(x, columns["mean_return"], color=f"C{i}", lw=1.5, marker="." if len(x) < 30 else None,
                    label=label)
    for ax, (key, axis_label, _) in zip(axes, panels):
        ax.set_xlabel(axis_label)
        ax.grid(alpha=0.3)
        if key != "wall_time_s":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes[0].set_ylabel(f"mean raw episode return\n(last {RETURN_WINDOW} episodes)")
    if len(curves) == 1:
        columns = curves[0][1]
        fig.suptitle(f"{title}: {columns['mean_return'][-1]:.2f} at {columns['env_steps'][-1]:,.0f} steps, "
                     f"{columns['episodes'][-1]:,.0f} episodes, {columns['wall_time_s'][-1] / 60:.1f} min")
    else:
        fig.suptitle(title)
        axes[0].legend(loc="best", fontsize="small")
    save_figure(fig, out_path, dpi=110)


def save_figure(fig, out_path: str, dpi: int, flag: str = "--out") -> None:
    """Write fig to out_path and close it; PlotError naming `flag` if the file cannot be written."""
    import matplotlib.pyplot as plt
    try:
        fig.savefig(out_path, dpi=dpi)
    except OSError as e:
        raise PlotError(f"cannot write {out_path} ({e.strerror}); choose a writable {flag}") from None
    finally:
        plt.close(fig)


def progress_path(run_dir: str) -> tuple[str, str]:
    """(progress.csv path, run directory) for a run directory or a progress.csv path."""
    if os.path.isfile(run_dir) and run_dir.endswith(".csv"):
        return run_dir, os.path.dirname(run_dir) or "."
    if os.path.isdir(run_dir):
        return os.path.join(run_dir, "progress.csv"), run_dir
    raise PlotError(f"{run_dir} is not a directory; pass the --logdir of an a3c.py run")


def png_path(out: str) -> str:
    """--out with .png appended when missing, its directory created."""
    if not out.lower().endswith(".png"):
        out += ".png"
    if os.path.dirname(out):
        try:
            os.makedirs(os.path.dirname(out), exist_ok=True)
        except OSError as e:
            raise PlotError(f"cannot create the directory of --out {out} ({e.strerror})") from None
    return out


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        curves, run_dirs = [], []
        for i, given in enumerate(args.run_dirs):
            csv_path, run_dir = progress_path(given)
            label = args.labels[i] if args.labels else os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
            curves.append((label, read_progress(csv_path)))
            run_dirs.append(run_dir)
        if args.at is not None:
            print(table(curves, args.at))
            if args.out is None:
                return 0
        out = png_path(args.out or os.path.join(run_dirs[0], "curves"))
        title = run_title(run_dirs[0]) if len(curves) == 1 else run_env_id(run_dirs[0]) or "runs compared"
        plot(curves, out, title)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
