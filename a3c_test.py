"""Evaluate a trained a3c-tf checkpoint: play full games and write scores.json plus videos.

    python a3c_test.py --model runs/pong --out eval/pong                      # 30 greedy episodes, 1 video
    python a3c_test.py --model runs/pong/checkpoints/ckpt-420 --out eval/x --episodes 10 --sample --record 3
    python a3c_test.py --model models/pong --out eval/y --env ALE/Pong-v5 --seed 7 --max-steps 5000

--model is a run directory (a3c.py's --logdir), a checkpoint directory holding a `checkpoint` file, or a
checkpoint prefix (`.../ckpt-420`). The hyperparameters come from the config.json saved next to the checkpoint
(or in its parent directory); evaluation always plays full games (no episodic life) with raw, unclipped scores.

The agents run through the same code as training: batch_agents.make_vector_env + BatchAgents, and the shared
network's `act` function (`--greedy` takes the argmax action, `--sample` samples the policy). N episodes are
N envs of one vector env, each contributing its first finished episode. Videos come from a second, RGB vector
env seeded alike and fed the same actions, so it plays the same games frame for frame.

Writes to --out: scores.json, episode_{k}.mp4 and episode_{k}.gif for the first --record episodes.
Prints `mean ± std over N episodes` on stdout; problems are one `error: ...` line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import sys
import typing
import zlib

import numpy as np

import a3c  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow is imported)
import hparams as hparams_lib
from a3c import CHECKPOINT_SUBDIR, CONFIG_FILE, RunError, warn
from hparams import ConfigError, HParams

GIF_MAX_BYTES = 5 * 1024 * 1024  # GIFs are re-encoded with fewer frames until they fit
GIF_MAX_FRAMES = 3000  # frames kept (compressed) per GIF; the frame stride doubles when more arrive
ATARI_FPS = 60.0  # emulator frames per second


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise ConfigError(f"{message} (see --help)")


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(description="Evaluate an a3c-tf checkpoint: scores.json and videos of full games.",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True,
                   help="run directory (a3c.py --logdir), checkpoint directory, or checkpoint prefix (…/ckpt-N)")
    p.add_argument("--out", required=True, help="output directory for scores.json and the videos")
    p.add_argument("--episodes", type=int, default=30, help="episodes to play (one per env, in parallel)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="greedy", action="store_true", default=True,
                      help="take the most probable action")
    mode.add_argument("--sample", dest="greedy", action="store_false", help="sample actions from the policy")
    p.add_argument("--seed", type=int, default=0, help="env j is seeded with seed + j; also seeds sampling")
    p.add_argument("--env", default=None, help="evaluate on this env id instead of the one trained on")
    p.add_argument("--record", type=int, default=1, help="record the first K episodes as mp4 and gif")
    p.add_argument("--max-steps", type=int, default=None,
                   help="safety cap: end an episode after this many agent steps (counted as truncated)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.record < 0:
        raise ConfigError(f"--record must be >= 0, got {args.record}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
    if not 0 <= args.seed < 2 ** 31 - args.episodes:
        raise ConfigError(f"--seed must be in [0, 2^31 - episodes), got {args.seed}")
    return args


# ----------------------------------------------------------------------------------------------------------
# Finding the checkpoint and its config
# ----------------------------------------------------------------------------------------------------------
def _ckpt_number(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    return int(m.group(1)) if m else -1


def _latest_in(directory: str, tf) -> str | None:
    """The checkpoint a directory points at: its `checkpoint` file, else the highest-numbered *.index."""
    if os.path.isfile(os.path.join(directory, "checkpoint")):
        try:
            latest = tf.train.latest_checkpoint(directory)
        except Exception:  # noqa: BLE001 - a malformed `checkpoint` file; reported below
            latest = None
        if latest is None:
            raise RunError(f"{directory}/checkpoint names no checkpoint that exists (the file is corrupt or the "
                           f"ckpt-N.index/.data files are missing); pass a checkpoint prefix such as "
                           f"{directory}/ckpt-N instead")
        return latest
    prefixes = [p[:-len(".index")] for p in glob.glob(os.path.join(glob.escape(directory), "*.index"))]
    return max(prefixes, key=_ckpt_number) if prefixes else None


def resolve_checkpoint(model: str, tf) -> tuple[str, str]:
    """--model -> (checkpoint prefix, config.json path)."""
    model = os.path.normpath(model)
    model = re.sub(r"\.(index|data-\d+-of-\d+)$", "", model)  # a checkpoint's own files name its prefix
    if os.path.isfile(model) and os.path.basename(model) == "checkpoint":
        model = os.path.dirname(model) or "."
    hint = ("pass a run directory (a3c.py --logdir), a checkpoint directory or a prefix like "
            "runs/pong/checkpoints/ckpt-420")
    if os.path.isdir(model):
        prefix = _latest_in(model, tf)
        sub = os.path.join(model, CHECKPOINT_SUBDIR)
        if prefix is None and os.path.isdir(sub):
            prefix = _latest_in(sub, tf)
        if prefix is None:
            raise RunError(f"no checkpoint in {model} (no 'checkpoint' file or ckpt-N.index there or in "
                           f"{sub}); train with a3c.py --logdir {model} first or {hint}")
    elif os.path.isfile(model + ".index"):
        prefix = model
    elif os.path.exists(model):
        raise RunError(f"--model {model} is not a checkpoint; {hint}")
    else:
        raise RunError(f"--model {model} does not exist; {hint}")
    here = os.path.dirname(prefix) or "."
    candidates = [os.path.join(here, CONFIG_FILE), os.path.join(os.path.dirname(os.path.abspath(here)), CONFIG_FILE)]
    for path in candidates:
        if os.path.isfile(path):
            return prefix, path
    raise RunError(f"no {CONFIG_FILE} next to checkpoint {prefix} or in its parent directory; copy the "
                   f"{CONFIG_FILE} of the training run (a3c.py --logdir) next to the checkpoint")


def load_config(path: str) -> tuple[HParams, int | None]:
    """config.json -> (validated HParams, num_actions or None). Wrong types are reported, not crashed on."""
    config = a3c.read_config(path)
    fix = f"restore {path} from the training run or use another checkpoint"
    if not isinstance(config, dict):
        raise RunError(f"{path} is not a JSON object of hyperparameters; {fix}")
    hints = typing.get_type_hints(HParams)
    for name, value in config.items():
        kind = hints.get(name)
        if kind is None:
            continue
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, kind) and not isinstance(value, bool)
            or kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise RunError(f"{path}: {name} should be of type {kind.__name__}, got {value!r}; {fix}")
    num_actions = config.get("num_actions")
    if num_actions is not None and (isinstance(num_actions, bool) or not isinstance(num_actions, int)
                                    or num_actions < 1):
        raise RunError(f"{path}: num_actions should be a positive integer, got {num_actions!r}; {fix}")
    try:
        hp = hparams_lib.validate(hparams_lib.from_dict(config))
    except ConfigError as e:
        raise RunError(f"{path} is invalid ({e}); {fix}") from None
    return hp, num_actions


def restore_model(tf, net, prefix: str):
    """Restore only the network weights (not the optimizer or counters) and insist that every variable of the
    network was found in the checkpoint with the right shape. Reading never modifies the checkpoint."""
    try:
        status = tf.train.Checkpoint(model=net).restore(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except Exception as e:  # noqa: BLE001 - OpError, AssertionError, ValueError, and IndexError for a truncated file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"checkpoint {prefix} cannot be loaded ({first[:160]}); it is corrupt or was not "
                       f"trained with the network/action set in its {CONFIG_FILE}") from None
    # assert_existing_objects_matched only sees the layers the checkpoint's dependency graph tracks; a layer it
    # does not track (e.g. one kept in a plain Python list) silently keeps its random init. So also insist
    # that every variable of the network now holds exactly one of the model tensors stored in the file.
    reader = tf.train.load_checkpoint(prefix)
    saved = [reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
             if key.startswith("model/") and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")]
    missing = []
    for v in net.variables:
        value = v.numpy()
        match = next((i for i, t in enumerate(saved) if t.shape == value.shape and np.array_equal(t, value)), None)
        if match is None:
            missing.append(getattr(v, "path", v.name))
        else:
            saved.pop(match)
    if missing:
        raise RunError(f"checkpoint {prefix} restored only {len(net.variables) - len(missing)} of the network's "
                       f"{len(net.variables)} variables (not {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
                       f"those layers were never saved (network.py does not track them for tf.train.Checkpoint) "
                       f"or the checkpoint is from another model - it cannot be evaluated")


def trained_env_steps(tf, prefix: str) -> int | None:
    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor("env_steps/.ATTRIBUTES/VARIABLE_VALUE"))
    except Exception:  # noqa: BLE001 - an older / foreign checkpoint without the counter
        n = _ckpt_number(prefix)
        return n if n >= 0 else None


# ----------------------------------------------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------------------------------------------
class EpisodeVideo:
    """Streams one episode's RGB frames to an mp4 (every frame, real time) and keeps a subsampled copy for a
    GIF of bounded size and memory."""

    def __init__(self, out: str, index: int, frameskip: int, first_frame: np.ndarray):
        import imageio
        self.mp4_path = os.path.join(out, f"episode_{index}.mp4")
        self.gif_path = os.path.join(out, f"episode_{index}.gif")
        self.step_ms = 1000.0 * frameskip / ATARI_FPS
        self.writer = imageio.get_writer(self.mp4_path, fps=ATARI_FPS / frameskip, codec="libx264", quality=7,
                                         macro_block_size=1, pixelformat="yuv420p", ffmpeg_log_level="error")
        self.gif_stride = 2
        self.gif_frames = []  # zlib-compressed RGB bytes: a 100 kB frame takes a few kB
        self.count = 0
        self.closed = False
        self.add(first_frame)

    def add(self, frame: np.ndarray):
        frame = np.ascontiguousarray(frame, np.uint8)
        self.shape = frame.shape
        self.writer.append_data(frame)
        if self.count % self.gif_stride == 0:
            self.gif_frames.append(zlib.compress(frame.tobytes(), 1))
            if len(self.gif_frames) > GIF_MAX_FRAMES:
                self.gif_frames = self.gif_frames[::2]
                self.gif_stride *= 2
        self.count += 1

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        self.write_gif(self.gif_frames, self.gif_stride)
        self.gif_frames = []

    def write_gif(self, compressed: list, stride: int):
        from PIL import Image

        def image(data):
            rgb = np.frombuffer(zlib.decompress(data), np.uint8).reshape(self.shape)
            # Atari frames have far fewer than 256 colours, so this palette conversion is lossless.
            return Image.fromarray(rgb).quantize(256, dither=Image.Dither.NONE)

        while True:
            frames = (image(c) for c in compressed)  # decoded one at a time: Pillow keeps its own copies
            next(frames).save(self.gif_path, save_all=True, append_images=frames, loop=0, optimize=False,
                              duration=max(20, int(round(stride * self.step_ms))), disposal=1)
            if os.path.getsize(self.gif_path) <= GIF_MAX_BYTES or len(compressed) <= 2:
                break
            compressed, stride = compressed[::2], stride * 2


# ----------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------
def evaluate(args) -> int:
    from batch_agents import check_env_id, rom_name

    tf = a3c.import_tensorflow()  # only file utilities are used before configure_tensorflow below
    prefix, config_path = resolve_checkpoint(args.model, tf)
    saved_hp, saved_actions = load_config(config_path)
    env_id = args.env or saved_hp.env_id
    check_env_id(env_id)
    a3c.prepare_writable_dir(args.out, "--out")
    N = args.episodes
    K = min(args.record, N)
    if args.record > N:
        warn(f"--record {args.record} > --episodes {N}: recording all {N} episodes")
    # Evaluation plays full games; everything else (frameskip, sticky actions, no-ops, action set, network)
    # stays as trained.
    hp = dataclasses.replace(saved_hp, env_id=env_id, episodic_life=False, seed=args.seed, progress_bar=False)

    a3c.configure_tensorflow(hp)
    from batch_agents import BatchAgents, make_vector_env
    from tqdm import tqdm

    cores = hparams_lib._cpu_count()
    env = make_vector_env(hp, N, num_threads=min(N, cores))
    video_env = None
    videos: list[EpisodeVideo] = []
    bar = None
    try:
        num_actions = int(env.single_action_space.n)
        if saved_actions is not None and saved_actions != num_actions:
            if rom_name(env_id) != rom_name(saved_hp.env_id):
                raise RunError(f"{env_id} has {num_actions} actions but the checkpoint's policy has "
                               f"{saved_actions} (trained on {saved_hp.env_id}); evaluate on a game with the "
                               f"same action set")
            raise RunError(f"{config_path} says num_actions={saved_actions} but {env_id} has {num_actions} "
                           f"actions (full_action_space={hp.full_action_space}); the config does not belong to "
                           f"this checkpoint or ale-py changed the action set")
        if rom_name(env_id) != rom_name(saved_hp.env_id):
            warn(f"evaluating on {env_id} but the checkpoint was trained on {saved_hp.env_id}")
        learner = a3c.Learner(hp, saved_actions or num_actions)
        restore_model(tf, learner.net, prefix)
        env_steps_trained = trained_env_steps(tf, prefix)

        agent = BatchAgents(env, seed=args.seed, state_size=learner.net.state_size, episodic_life=False)
        if K:
            video_env = make_vector_env(hp, K, rgb=True, num_threads=min(K, cores))
            frames, _ = video_env.reset(seed=int(args.seed))
            try:
                for k in range(K):
                    videos.append(EpisodeVideo(args.out, k, hp.frameskip, frames[k, 0]))
            except Exception as e:  # noqa: BLE001 - e.g. no ffmpeg binary (imageio-ffmpeg not installed)
                raise RunError(f"cannot write videos to {args.out} ({type(e).__name__}: {e}); install "
                               f"imageio-ffmpeg or pass --record 0") from None
        video_return = np.zeros(K)
        video_ended = np.zeros(K, bool)

        policy = learner.policy(greedy=args.greedy)
        finished = np.zeros(N, bool)
        returns = np.zeros(N)
        lengths = np.zeros(N, np.int64)
        capped = np.zeros(N, bool)  # cut by --max-steps
        time_limit = np.zeros(N, bool)  # cut by the env's max_episode_frames
        mismatched = []
        bar = tqdm(total=N, unit="episode", dynamic_ncols=True, file=sys.stderr, desc="episodes")

        def finish(i, ret, length, cap=False, limit=False):
            finished[i], returns[i], lengths[i], capped[i], time_limit[i] = True, ret, length, cap, limit
            bar.update(1)
            if i < K:
                if not cap and (not video_ended[i] or video_return[i] != ret):
                    mismatched.append(i)
                videos[i].close()

        while not finished.all():
            actions, _, agent.state = agent.act(policy)
            _, terminated, truncated, _, (ended_returns, ended_lengths) = agent.step(actions)
            if K and not all(v.closed for v in videos):
                frames, reward, v_term, v_trunc, _ = video_env.step(actions[:K])
                for k in range(K):
                    if not videos[k].closed:
                        videos[k].add(frames[k, 0])
                        video_return[k] += reward[k]
                        video_ended[k] = bool(v_term[k] or v_trunc[k])
            # With episodic_life=False the returned masks mark exactly the envs whose episode just ended,
            # in the order of ended_returns.
            for i, ret, length in zip(np.flatnonzero(terminated | truncated), ended_returns, ended_lengths):
                if not finished[i]:
                    finish(i, ret, length, limit=bool(truncated[i]))
            if args.max_steps is not None:
                for i in np.flatnonzero(~finished & (agent.episode_length >= args.max_steps)):
                    finish(i, float(agent.episode_return[i]), int(agent.episode_length[i]), cap=True)
        bar.close()
        bar = None
        for v in videos:
            v.close()
    finally:
        if bar is not None:
            bar.close()
        for v in videos:
            if not v.closed:
                v.writer.close()
        env.close()
        if video_env is not None:
            video_env.close()

    if mismatched:
        warn(f"the recorded video of episode(s) {mismatched} diverged from the scored game (the RGB env did not "
             f"replay it exactly); the scores are unaffected")
    if capped.any():
        warn(f"{int(capped.sum())} of {N} episodes were cut at --max-steps {args.max_steps}; their partial "
             f"returns are included")
    if time_limit.any():
        warn(f"{int(time_limit.sum())} of {N} episodes hit the time limit of {hp.max_episode_frames} frames")
    scores = {
        "env": env_id,
        "trained_env": saved_hp.env_id,
        "checkpoint": prefix,
        "config": config_path,
        "episodes": [float(r) for r in returns],
        "lengths": [int(n) for n in lengths],
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "max": float(np.max(returns)),
        "min": float(np.min(returns)),
        "greedy": bool(args.greedy),
        "seed": int(args.seed),
        "env_steps_trained": env_steps_trained,
        "truncated_episodes": int(capped.sum() + time_limit.sum()),
        "truncated": [bool(c or t) for c, t in zip(capped, time_limit)],
        "max_steps": args.max_steps,
        "frameskip": hp.frameskip,
        "repeat_action_probability": hp.repeat_action_probability,
        "noop_max": hp.noop_max,
        "full_action_space": hp.full_action_space,
        "videos": [os.path.basename(p) for v in videos for p in (v.mp4_path, v.gif_path)],
    }
    a3c.write_json_atomic(os.path.join(args.out, "scores.json"), scores)
    print(f"{scores['mean']:.2f} ± {scores['std']:.2f} over {N} episodes", flush=True)
    return 0


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        return evaluate(args)
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: no scores written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
