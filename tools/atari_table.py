"""Print the Atari suite's results table (issue 36) from the shipped models, beside the published anchors.

    python tools/atari_table.py                    # reads models/atari/GAME/summary.json for every suite game
    python tools/atari_table.py --models DIR       # another directory laid out the same way

Each game's directory holds the `summary.json` that `python reproduce.py atari-GAME --seeds 1` wrote (copied with
the model). Per game the table gives the last-100 training mean (what the anchors report), the evaluation on the
suite's protocol (30 full games, greedy with epsilon 0.01, eval seed 1) and under sticky actions 0.25, the env
steps, training wall time and env steps/s with the CPU, the four anchors, and the human-normalised score of the
training mean. Below it: the median human-normalised score over the games trained so far, and how many anchors
were beaten. A game without a summary is listed as not trained yet, never estimated.

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


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="The Atari suite's results table beside the published anchors.",
                       error_type=TableError)
    p.add_argument("--models", default=None,
                   help="directory with one sub-directory per game (default: models/atari, which holds none until "
                        "the first game ships)")
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.models is not None and not os.path.isdir(args.models):
            raise TableError(f"--models {args.models} is not a directory")
        print(table(args.models or DEFAULT_MODELS))
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
