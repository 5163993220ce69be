"""Print the Atari suite's results table (issue 36) from the shipped models, beside the published anchors.

    python tools/atari_table.py                    # reads models/atari/GAME/summary.json for every suite game
    python tools/atari_table.py --models DIR       # another directory laid out the same way
    python tools/atari_table.py --plot assets/atari/suite.png   # also every game's curve against the anchors

Each game's directory holds the `summary.json` that `python reproduce.py atari-GAME --seeds 1` wrote (copied with
the model). Per game the table gives the last-100 training mean (what the anchors report), the evaluation on the
suite's protocol (30 full games, greedy with epsilon 0.01, eval seed 1) and under sticky actions 0.25, the env
steps, training wall time and env steps/s with the CPU, the four anchors, and the human-normalised score of the
training mean. Below it: the median human-normalised score over the games trained so far, and how many anchors
were beaten. A game without a summary is listed as not trained yet, never estimated. `--plot` draws one panel per
game: the last-100 training mean against env steps from the shipped `progress.csv`, the four anchors as dashed lines
at their 10M env steps.

Owns: reading the shipped summaries and formatting the table. Must not: train, evaluate or import TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import atari_suite  # noqa: E402
import plot as plot_lib  # noqa: E402
from errors import ArgumentParser  # noqa: E402
from hparams import game_slug  # noqa: E402

STICKY = atari_suite.STICKY_EVAL
DEFAULT_MODELS = os.path.join(os.path.dirname(HERE), "models", "atari")


class TableError(Exception):
    """Printed as one `error: ...` line, exit status 2."""


def read_game(models_dir: str, game: str) -> dict | None:
    """The figures of one game's shipped run, or None if models_dir/<slug>/summary.json does not exist."""
    path = os.path.join(models_dir, game_slug(game), "summary.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            summary = json.load(f)
        seed = summary["seeds"][-1]
        figures = {
            "seed": seed["seed"], "env_steps": seed["env_steps"], "wall_time_s": seed["wall_time_s"],
            "env_steps_per_s": seed["env_steps_per_s"], "train_mean": seed["final_mean_return"],
            "eval_mean": seed["eval_mean"], "eval_std": seed["eval_std"], "cpu": summary["cpu"],
            "sticky_mean": seed["also_eval"].get(STICKY, {}).get("mean"),
            "sticky_std": seed["also_eval"].get(STICKY, {}).get("std"),
        }
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise TableError(f"cannot read {path} ({type(e).__name__}: {e}); copy the summary.json that "
                         f"`python reproduce.py atari-{game_slug(game)}` wrote") from None
    if figures["train_mean"] is None:
        raise TableError(f"{path}: the run finished no episode; it is not a result")
    return figures


def table(models_dir: str) -> str:
    header = ("| game | env steps | wall time | env steps/s | last-100 training mean | eval (30, eps 0.01) | "
              "eval, sticky 0.25 | " + " | ".join(atari_suite.ANCHOR_COLUMNS) + " | human-normalised |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(atari_suite.ANCHOR_COLUMNS) + "---:|"]
    trained, beaten, cpus = {}, {c: 0 for c in atari_suite.ANCHOR_COLUMNS}, set()
    for game in atari_suite.GAMES:
        anchors = " | ".join(f"{a:,.1f}" for a in atari_suite.ANCHORS[game])
        figures = read_game(models_dir, game)
        if figures is None:
            lines.append(f"| {game} | not trained yet | | | | | | {anchors} | |")
            continue
        trained[game] = figures["train_mean"]
        cpus.add(figures["cpu"])
        for column, won in atari_suite.anchors_beaten(game, figures["train_mean"]).items():
            beaten[column] += won
        sticky = ("-" if figures["sticky_mean"] is None
                  else f"{figures['sticky_mean']:,.1f} ± {figures['sticky_std']:,.1f}")
        lines.append(
            f"| {game} | {figures['env_steps'] / 1e6:.2f}M | {figures['wall_time_s'] / 3600:.2f} h | "
            f"{figures['env_steps_per_s']:,.0f} | **{figures['train_mean']:,.1f}** | "
            f"{figures['eval_mean']:,.1f} ± {figures['eval_std']:,.1f} | {sticky} | {anchors} | "
            f"{atari_suite.human_normalised(game, figures['train_mean']):.2f} |")
    if trained:
        median = atari_suite.median_human_normalised(trained)
        lines += ["", f"Median human-normalised score (last-100 training mean) over {len(trained)} of "
                      f"{len(atari_suite.GAMES)} games: **{median:.2f}**. Anchors beaten: "
                  + ", ".join(f"{c} {beaten[c]}/{len(trained)}" for c in atari_suite.ANCHOR_COLUMNS)
                  + f". CPU: {'; '.join(sorted(cpus))}."]
    else:
        lines += ["", "No game trained yet."]
    return "\n".join(lines)


def read_curve(models_dir: str, game: str) -> dict | None:
    """progress.csv columns of one game's shipped run (rows with a mean return), or None when it is not trained."""
    if read_game(models_dir, game) is None:
        return None
    path = os.path.join(models_dir, game_slug(game), "progress.csv")
    try:
        return plot_lib.read_progress(path)
    except plot_lib.PlotError as e:
        raise TableError(f"{e} (copy the run's progress.csv beside its summary.json)") from None


def suite_figure(curves: dict):
    """{game: progress columns or None} -> a matplotlib figure with one panel per suite game: the training curve
    and the anchors; a game not trained yet gets its anchors and "not trained yet". The caller closes it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    columns = 4
    rows = -(-len(atari_suite.GAMES) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), constrained_layout=True)
    axes = axes.ravel()
    for ax, game in zip(axes, atari_suite.GAMES):
        curve = curves[game]
        for i, (column, anchor) in enumerate(zip(atari_suite.ANCHOR_COLUMNS, atari_suite.ANCHORS[game])):
            ax.axhline(anchor, color=f"C{i + 1}", ls="--", lw=1.0, label=f"{column} at 10M")
        if curve is None:
            ax.text(0.5, 0.5, "not trained yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_title(game, fontsize="medium")
        else:
            ax.plot(curve["env_steps"], curve["mean_return"], color="C0", lw=1.5, label="a3c-tf, --preset atari")
            ax.set_title(f"{game}: {curve['mean_return'][-1]:,.0f} at {curve['env_steps'][-1] / 1e6:.1f}M",
                         fontsize="medium")
        ax.set_xlim(0, 10_000_000)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        ax.set_xlabel("env steps")
    axes[0].set_ylabel(f"last-{plot_lib.RETURN_WINDOW} training mean")
    for ax in axes[len(atari_suite.GAMES):]:
        ax.axis("off")
    # The legend of a panel with a curve (every panel has the same anchors' labels), in the spare eighth panel.
    trained = [ax for ax, game in zip(axes, atari_suite.GAMES) if curves[game] is not None]
    handles, labels = (trained or axes)[0].get_legend_handles_labels()
    spare = axes[-1] if len(axes) > len(atari_suite.GAMES) else axes[0]
    spare.legend(handles, labels, loc="center", fontsize="medium")
    fig.suptitle("Atari suite, one preset (`--preset atari`, ACER), one seed per game; anchors: the PPO paper's "
                 "Table 6 and CleanRL")
    return fig


def plot_suite(models_dir: str, out_path: str) -> None:
    """suite_figure of the shipped runs in models_dir, written to out_path."""
    fig = suite_figure({game: read_curve(models_dir, game) for game in atari_suite.GAMES})
    try:
        plot_lib.save_figure(fig, out_path, dpi=90, flag="--plot path")
    except plot_lib.PlotError as e:
        raise TableError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="The Atari suite's results table beside the published anchors.",
                       error_type=TableError)
    p.add_argument("--models", default=None,
                   help="directory with one sub-directory per game (default: models/atari, which holds none until "
                        "the first game ships)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw every game's training curve against the anchors to this PNG")
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.models is not None and not os.path.isdir(args.models):
            raise TableError(f"--models {args.models} is not a directory")
        models_dir = args.models or DEFAULT_MODELS
        print(table(models_dir))
        if args.plot:
            try:
                out = plot_lib.png_path(args.plot)
            except plot_lib.PlotError as e:
                raise TableError(str(e).replace("--out", "--plot")) from None
            plot_suite(models_dir, out)
            print(f"wrote {out}")
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
