"""Ship one seed of a finished `reproduce.py` row as a model: the slim network, its records, and a small GIF.

    python reproduce.py atari-mspacman --seeds 1
    python tools/ship_run.py --run runs/reproduce/atari-mspacman --out models/atari/mspacman \\
        --gif assets/atari/mspacman.gif
    python tools/atari_table.py                      # the Atari suite's table now has the game

Writes to --out what tools/slim_model.py writes for the seed's run (the network of its newest checkpoint,
config.json, network_only.json, progress.csv) and beside it:
  summary.json                 the row's summary (commands, CPU, wall time, env steps/s, every evaluation)
  curves.png                   the row's learning curves
  scores.json                  the seed's evaluation (RUN/seed-N/eval/scores.json)
  scores-NAME.json             each extra evaluation of the row (RUN/seed-N/eval-NAME/scores.json), e.g.
                               scores-sticky-0.25.json for the Atari suite
and, with --gif, the first frames of the recorded evaluation game 0 that fit --gif-max-bytes (a clone downloads
every GIF ever committed, so the shipped one stays small). The seed is --seed, or by default the seed whose
evaluation mean is the median of the row's (the lower middle one for an even count).

Problems are one `error: ...` line on stderr, exit status 2; nothing is written to --out before the run has been
checked (a finished evaluation for the seed, summary.json readable).
Owns: choosing what of a reproduce run is shipped, and trimming its GIF.
Must not: train or evaluate, or write outside --out and --gif (the slim copy itself is slim_model's).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import slim_model  # noqa: E402
from errors import ArgumentParser, ConfigError, RunError, run_writing_command  # noqa: E402
from tf_setup import import_tensorflow  # noqa: E402

GIF_MAX_BYTES = 300_000  # the committed Atari GIFs are 150-700 kB; 300 kB holds ~500 Atari frames


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description="Ship one seed of a finished reproduce.py row: its slim model, summary, curves, "
                                   "evaluation scores and a trimmed GIF.")
    p.add_argument("--run", required=True, help="the row's directory (reproduce.py --out; holds summary.json)")
    p.add_argument("--out", required=True, help="a new directory for the model, e.g. models/atari/GAME")
    p.add_argument("--seed", type=int, default=None,
                   help="the seed to ship (default: the seed with the median evaluation mean)")
    p.add_argument("--gif", default=None, help="where to write the trimmed GIF of evaluation game 0 (default: none)")
    p.add_argument("--gif-max-bytes", type=int, default=GIF_MAX_BYTES,
                   help="the GIF keeps the first frames of the game that fit in this many bytes")
    args = p.parse_args(argv)
    if args.gif_max_bytes < 1_000:
        p.error(f"--gif-max-bytes {args.gif_max_bytes} is too small for a GIF; give at least 1000")
    if args.gif is not None and not args.gif.lower().endswith(".gif"):
        p.error(f"--gif {args.gif} must end in .gif")
    return args


def read_summary(run: str) -> dict:
    path = os.path.join(run, "summary.json")
    try:
        with open(path) as f:
            summary = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no summary.json in --run {run}; pass the directory reproduce.py wrote "
                          f"(runs/reproduce/ROW by default) after it finished") from None
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path} ({e}); re-run reproduce.py with the same arguments to rewrite it") from None
    if not summary.get("seeds"):
        raise RunError(f"{path} lists no seeds; re-run reproduce.py with the same arguments to finish the row")
    return summary


def choose_seed(summary: dict, seed: int | None) -> dict:
    """The summary entry of `seed`, or of the seed whose eval_mean is the (lower) median."""
    entries = summary["seeds"]
    if seed is None:
        ranked = sorted(entries, key=lambda e: (e["eval_mean"], e["seed"]))
        return ranked[(len(ranked) - 1) // 2]
    for entry in entries:
        if entry["seed"] == seed:
            return entry
    raise ConfigError(f"--seed {seed} is not in the row (its seeds: {', '.join(str(e['seed']) for e in entries)})")


def seed_dir(run: str, entry: dict) -> str:
    """The seed's run directory inside the row's (reproduce.py's layout; the summary's own `logdir` is relative
    to where reproduce.py ran)."""
    return os.path.join(run, f"seed-{entry['seed']}")


def seed_files(run: str, entry: dict) -> dict[str, str]:
    """Destination name -> source path of the files shipped beside the slim model; all must exist."""
    logdir = seed_dir(run, entry)
    files = {"summary.json": os.path.join(run, "summary.json"),
             "curves.png": os.path.join(run, "curves.png"),
             "scores.json": os.path.join(logdir, "eval", "scores.json")}
    for name in entry.get("also_eval", {}):
        files[f"scores-{name}.json"] = os.path.join(logdir, f"eval-{name}", "scores.json")
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise RunError(f"{', '.join(missing)} missing: the row has not finished for seed {entry['seed']}; re-run "
                       f"reproduce.py with the same arguments")
    return files


def trim_gif(source: str, out: str, max_bytes: int) -> tuple[int, int]:
    """Write to `out` the longest prefix of the frames of `source` whose GIF fits in max_bytes (at least one
    frame), same frame durations; returns (frames kept, frames in the source)."""
    from PIL import Image, ImageSequence
    with Image.open(source) as gif:
        frames, durations = [], []
        for frame in ImageSequence.Iterator(gif):
            frames.append(frame.copy())
            durations.append(frame.info.get("duration", 40))  # Pillow merges repeated frames into longer ones

    def encode(count: int) -> bytes:
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:count], loop=0,
                       duration=durations[:count], disposal=1)
        return buffer.getvalue()

    whole = encode(len(frames))
    if len(whole) <= max_bytes:  # the common case: one encoding, no search
        low, high, best = len(frames), len(frames), whole
    else:  # encode(1) is written even if it is over the budget: one frame is the floor
        low, high, best = 1, len(frames) - 1, encode(1)
    while low < high:  # the largest count that fits; a GIF's size grows with its frame count
        middle = (low + high + 1) // 2
        data = encode(middle)
        if len(data) <= max_bytes:
            low, best = middle, data
        else:
            high = middle - 1
    with open(out, "wb") as f:
        f.write(best)
    return low, len(frames)


def ship(args) -> str:
    summary = read_summary(args.run)
    entry = choose_seed(summary, args.seed)
    files = seed_files(args.run, entry)
    gif_source = os.path.join(seed_dir(args.run, entry), "eval", "episode_0.gif")
    if args.gif is not None and not os.path.isfile(gif_source):
        raise RunError(f"{gif_source} missing: the evaluation recorded no game 0 (reproduce.py records it); "
                       f"leave out --gif")
    import_tensorflow()  # quietly, before slim_model loads it; after the checks, which need no TensorFlow
    slim_line = slim_model.slim(argparse.Namespace(model=seed_dir(args.run, entry), out=args.out, records=True))
    for name, path in files.items():
        shutil.copyfile(path, os.path.join(args.out, name))
    lines = [slim_line, f"seed {entry['seed']} (eval {entry['eval_mean']:.2f} ± {entry['eval_std']:.2f}): copied "
                        f"{', '.join(files)} to {args.out}"]
    if args.gif is not None:
        os.makedirs(os.path.dirname(os.path.abspath(args.gif)), exist_ok=True)
        kept, total = trim_gif(gif_source, args.gif, args.gif_max_bytes)
        lines.append(f"wrote {args.gif}: the first {kept} of {total} frames of evaluation game 0, "
                     f"{os.path.getsize(args.gif) / 1e3:.0f} kB")
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_writing_command(lambda: ship(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
