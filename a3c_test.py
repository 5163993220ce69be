"""Evaluate a trained a3c-tf checkpoint: play full games and write scores.json plus videos.

    python a3c_test.py --model runs/pong --out eval/pong                      # 30 greedy episodes, 1 video
    python a3c_test.py --model runs/pong/checkpoints/ckpt-420 --out eval/x --episodes 10 --sample --record 3
    python a3c_test.py --model models/pong --out eval/y --env-id ALE/Pong-v5 --seed 7 --max-steps 5000
    python a3c_test.py --model models/breakout --out eval/b --epsilon 0.01   # greedy, 1% random actions
    python a3c_test.py --model models/pong --export exported/pong          # a SavedModel of the policy
    python a3c_test.py --model exported/pong --out eval/z                  # ... evaluated like a checkpoint

--model is a run directory (a3c.py's --logdir), a checkpoint directory holding a `checkpoint` file, a
checkpoint prefix (`.../ckpt-420`), or a SavedModel written by --export. The hyperparameters come from the
config.json saved next to the checkpoint (or in its parent directory); evaluation always plays full games (no
episodic life) with raw, unclipped scores.

The agents run through the same code as training: envs.make_vector_env + BatchAgents, and the learner's
policy (`--greedy` takes the argmax action, `--sample` samples the policy; `--epsilon E` replaces each action
by a uniformly random one with probability E, which breaks the loops a greedy Atari policy can fall into and
run to the time limit; what is not given comes from the env family's envs.EvalProtocol). N episodes are
N envs of one vector env, each contributing its first finished episode. Videos come from a second, RGB vector
env seeded alike and fed the same actions, so it plays the same games frame for frame.

Writes to --out: scores.json, episode_{k}.mp4 and episode_{k}.gif for the first --record episodes.
Prints `mean ± std over N episodes` on stdout; problems are one `error: ...` line on stderr, exit status 2.
Owns: the evaluation loop, its scores and the videos (finding and reading the checkpoint is checkpoints.py's).
Must not: write anything outside --out, or go through the trainer.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import zlib

import numpy as np

import hparams as hparams_lib
from checkpoints import load_config, prepare_writable_dir, read_config, resolve_checkpoint, restore_weights, \
    trained_env_steps, write_json_atomic
import specs as specs_lib
from envs import EvalProtocol, check_env_id, env_specs, family_of, make_vector_env, rom_name, video_fps
from errors import ArgumentParser, ConfigError, RunError, warn
from tf_setup import configure_tensorflow, import_tensorflow

GIF_MAX_BYTES = 5 * 1024 * 1024  # GIFs are re-encoded with fewer frames until they fit
GIF_MAX_FRAMES = 3000  # frames kept (compressed) per GIF; the frame stride doubles when more arrive


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description="Evaluate an a3c-tf checkpoint: scores.json and videos of full games.")
    p.add_argument("--model", required=True,
                   help="run directory (a3c.py --logdir), checkpoint directory, checkpoint prefix (…/ckpt-N), "
                        "or a SavedModel written by --export")
    p.add_argument("--out", default=None, help="output directory for scores.json and the videos")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="instead of evaluating, write the policy as a TensorFlow SavedModel to DIR (export.py)")
    p.add_argument("--episodes", type=int, default=30, help="episodes to play (one per env, in parallel)")
    mode = p.add_mutually_exclusive_group()
    # The pair shares one dest: its default is said in words (a printed default would be True for both flags).
    # Unset (None), it and --epsilon take the env family's protocol (envs.EvalProtocol): greedy, epsilon 0 today.
    mode.add_argument("--greedy", dest="greedy", action="store_true", default=None,
                      help="take the most probable action (the default of every env family)")
    mode.add_argument("--sample", dest="greedy", action="store_false",
                      help="sample actions from the policy instead of taking the most probable one")
    p.add_argument("--epsilon", type=float, default=None, metavar="E",
                   help="with probability E per env and step, play a uniformly random action instead of the "
                        "policy's (discrete actions only; 0.01 breaks greedy loops; DQN-family Atari evaluations "
                        "use 0.05 down to 0.001); default: the env family's, 0 for every family")
    p.add_argument("--seed", type=int, default=0, help="env j is seeded with seed + j; also seeds sampling")
    p.add_argument("--env-id", "--env", dest="env_id", default=None,
                   help="evaluate on this env id instead of the one trained on (same flag as a3c.py's)")
    p.add_argument("--repeat-action-probability", "--sticky-actions", dest="repeat_action_probability", type=float,
                   default=None, metavar="P",
                   help="sticky actions: the emulator repeats the previous action with probability P (0.25 is "
                        "Machado et al.'s v5 protocol); default: as trained")
    p.add_argument("--record", type=int, default=1, help="record the first K episodes as mp4 and gif")
    p.add_argument("--max-steps", type=int, default=None,
                   help="safety cap: end an episode after this many agent steps (counted as truncated)")
    p.add_argument("--no-progress-bar", dest="progress_bar", action="store_false",
                   help="hide the episode progress bar, which is shown on stderr by default (for logs; same flag "
                        "as a3c.py's)")
    args = p.parse_args(argv)
    if (args.out is None) == (args.export is None):
        raise ConfigError("pass --out DIR to evaluate or --export DIR to write a SavedModel (one of them)")
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.repeat_action_probability is not None and not 0.0 <= args.repeat_action_probability <= 1.0:
        raise ConfigError(f"--repeat-action-probability must be in [0, 1], got {args.repeat_action_probability}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    if args.record < 0:
        raise ConfigError(f"--record must be >= 0, got {args.record}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
    if not 0 <= args.seed < 2 ** 31 - args.episodes:
        raise ConfigError(f"--seed must be in [0, 2^31 - episodes), got {args.seed}")
    return args


def epsilon_random(actions: np.ndarray, epsilon: float, num_actions: int, rng: np.random.Generator) -> np.ndarray:
    """actions `[N]` int with each entry replaced, with probability epsilon, by one drawn uniformly from
    [0, num_actions) (which may be the same action); same dtype."""
    replace = rng.random(actions.shape) < epsilon
    uniform = rng.integers(0, num_actions, actions.shape).astype(actions.dtype)
    return np.where(replace, uniform, actions)


# ----------------------------------------------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------------------------------------------
class EpisodeVideo:
    """Streams one episode's RGB frames to an mp4 (every frame, real time) and keeps a subsampled copy for a
    GIF of bounded size and memory."""

    def __init__(self, out: str, index: int, fps: float, first_frame: np.ndarray):
        import imageio
        self.mp4_path = os.path.join(out, f"episode_{index}.mp4")
        self.gif_path = os.path.join(out, f"episode_{index}.gif")
        self.step_ms = 1000.0 / fps
        self.writer = imageio.get_writer(self.mp4_path, fps=fps, codec="libx264", quality=7,
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
            # Atari frames have far fewer than 256 colours, so this palette conversion is lossless for them.
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
def export(args) -> int:
    """Write the checkpoint's policy as a SavedModel to --export."""
    import_tensorflow()  # only file utilities are used before configure_tensorflow below
    prefix, config_path = resolve_checkpoint(args.model)
    hp, (obs, action) = load_config(config_path)
    hp = dataclasses.replace(hp, devices="")
    prepare_writable_dir(args.export, "--export")
    configure_tensorflow(hp)
    from export import export_policy
    from network import network_for, resolve_precision
    if action is None:  # a config from before the spaces were saved: the env knows
        env = make_vector_env(hp, 1, num_threads=1)
        obs, action = env_specs(env, hp.env_id)
        env.close()
    # ACER's net has a Q head where A3C's has a value head (V = sum pi Q): build the one the checkpoint holds.
    net = network_for(hp, action, obs, "/CPU:0", resolve_precision(hp.precision, "/CPU:0"),
                      q_head=hp.algorithm == "acer")
    restore_weights(net, prefix)
    export_policy(net, dict(hp.to_dict(), **specs_lib.to_config(obs, action)), trained_env_steps(prefix),
                  args.export)
    print(f"exported {prefix} ({hp.network}, {specs_lib.describe(obs, action)}) to {args.export}", flush=True)
    return 0


def acting_rule(args: argparse.Namespace, protocol: EvalProtocol, action_spec=None) -> EvalProtocol:
    """The acting rule of this evaluation: --greedy / --sample and --epsilon where given, the env family's
    protocol for what is not. A family's random actions are drawn from a discrete action set, so on an env of
    the family with box actions (action_spec known and not discrete) its epsilon is 0; a user's --epsilon is
    kept and refused there by _check_epsilon."""
    epsilon = protocol.epsilon if args.epsilon is None else args.epsilon
    if args.epsilon is None and action_spec is not None and not action_spec.is_discrete:
        epsilon = 0.0
    return EvalProtocol(protocol.greedy if args.greedy is None else args.greedy, epsilon)


def _check_epsilon(epsilon: float, action_spec, env_id: str) -> None:
    if epsilon > 0 and not action_spec.is_discrete:
        raise ConfigError(f"--epsilon needs a discrete action space; {env_id} has box({action_spec.size}) "
                          f"actions (evaluate with --epsilon 0)")


def _mismatch_message(why: str, env_id: str, action, saved_action, trained_env_id: str, other_game: bool,
                      config_path: str, full_action_space: bool) -> str:
    """Why the checkpoint cannot play env_id: another game (the user's choice), or a config that does not
    describe the checkpoint. Two discrete action sets are compared in their own words."""
    if saved_action is not None and saved_action.is_discrete and action.is_discrete:
        n, m = action.size, saved_action.size
        if other_game:
            return (f"{env_id} has {n} actions but the checkpoint's policy has {m} (trained on {trained_env_id}); "
                    f"evaluate on a game with the same action set")
        return (f"{config_path} says num_actions={m} but {env_id} has {n} actions (full_action_space="
                f"{full_action_space}); the config does not belong to this checkpoint or ale-py changed the "
                f"action set")
    what = why.replace("the env", env_id)
    if other_game:
        return (f"the checkpoint (trained on {trained_env_id}) has {what}; evaluate on an env with the same "
                f"observations and actions")
    return (f"{config_path} describes {what} (full_action_space={full_action_space}); the config does not belong "
            f"to this checkpoint or the env changed")


def evaluate(args) -> int:
    import_tensorflow()  # only file utilities are used before configure_tensorflow below
    from export import EXPORT_CONFIG, is_saved_model
    if is_saved_model(args.model):
        prefix, config_path = args.model, os.path.join(args.model, EXPORT_CONFIG)
    else:
        prefix, config_path = resolve_checkpoint(args.model)
    saved_hp, saved_specs = load_config(config_path)
    env_id = args.env_id or saved_hp.env_id
    check_env_id(env_id)
    protocol = family_of(env_id).eval_protocol
    rule = acting_rule(args, protocol, saved_specs[1])
    if saved_specs[1] is not None:  # refuse before --out is created; configs without action info: checked below
        _check_epsilon(rule.epsilon, saved_specs[1], env_id)
    prepare_writable_dir(args.out, "--out")
    N = args.episodes
    K = min(args.record, N)
    if args.record > N:
        warn(f"--record {args.record} > --episodes {N}: recording all {N} episodes")
    # Evaluation plays full games; everything else (frameskip, no-ops, action set, network, and sticky actions
    # unless --repeat-action-probability asks for a robustness test) stays as trained.
    sticky = saved_hp.repeat_action_probability if args.repeat_action_probability is None \
        else args.repeat_action_probability
    hp = dataclasses.replace(saved_hp, env_id=env_id, episodic_life=False, seed=args.seed, progress_bar=False,
                             devices="", repeat_action_probability=sticky)  # devices: this machine's, not the run's

    configure_tensorflow(hp)
    from batch_agents import BatchAgents
    from learner import make_learner
    from tqdm import tqdm

    cores = hparams_lib._cpu_count()
    env = make_vector_env(hp, N, num_threads=min(N, cores))
    video_env = None
    videos: list[EpisodeVideo] = []
    bar = None
    try:
        specs = obs_spec, action_spec = env_specs(env, env_id)
        saved_action = saved_specs[1]
        other_game = rom_name(env_id) != rom_name(saved_hp.env_id)
        why = specs_lib.mismatch(saved_specs, specs)
        if why:
            raise RunError(_mismatch_message(why, env_id, action_spec, saved_action, saved_hp.env_id, other_game,
                                             config_path, hp.full_action_space))
        action_spec = saved_action or action_spec
        rule = acting_rule(args, protocol, action_spec)
        _check_epsilon(rule.epsilon, action_spec, env_id)
        if other_game:
            warn(f"evaluating on {env_id} but the checkpoint was trained on {saved_hp.env_id}")
        if is_saved_model(args.model):
            from export import SavedPolicy
            saved = SavedPolicy(args.model, action_spec)
            policy, state_size = saved.policy(greedy=rule.greedy), saved.state_size
            env_steps_trained = read_config(config_path).get("env_steps_trained")
        else:
            learner = make_learner(hp, action_spec, obs=obs_spec)
            restore_weights(learner.net, prefix)
            policy, state_size = learner.policy(greedy=rule.greedy), learner.net.state_size
            env_steps_trained = trained_env_steps(prefix)

        agent = BatchAgents(env, seed=args.seed, state_size=state_size, episodic_life=False)
        if K:
            video_env = make_vector_env(hp, K, rgb=True, num_threads=min(K, cores))
            frames, _ = video_env.reset(seed=int(args.seed))
            try:
                for k in range(K):
                    videos.append(EpisodeVideo(args.out, k, video_fps(hp), frames[k, 0]))
            except Exception as e:  # noqa: BLE001 - e.g. no ffmpeg binary (imageio-ffmpeg not installed)
                raise RunError(f"cannot write videos to {args.out} ({type(e).__name__}: {e}); install "
                               f"imageio-ffmpeg or pass --record 0") from None
        video_return = np.zeros(K)
        video_ended = np.zeros(K, bool)

        finished = np.zeros(N, bool)
        returns = np.zeros(N)
        lengths = np.zeros(N, np.int64)
        capped = np.zeros(N, bool)  # cut by --max-steps
        time_limit = np.zeros(N, bool)  # cut by the env's max_episode_frames
        mismatched = []
        bar = tqdm(total=N, unit="episode", dynamic_ncols=True, file=sys.stderr, desc="episodes",
                   disable=not args.progress_bar)

        def finish(i, ret, length, cap=False, limit=False):
            finished[i], returns[i], lengths[i], capped[i], time_limit[i] = True, ret, length, cap, limit
            bar.update(1)
            if i < K:
                if not cap and (not video_ended[i] or video_return[i] != ret):
                    mismatched.append(i)
                videos[i].close()

        # Its own stream, so --epsilon 0 plays exactly the games it played before the flag existed.
        explore = np.random.default_rng([int(args.seed), 0xE951])
        while not finished.all():
            actions, _, agent.state, *_ = agent.act(policy)
            if rule.epsilon > 0:
                actions = epsilon_random(actions, rule.epsilon, action_spec.size, explore)
            _, terminated, truncated, _, (ended_returns, ended_lengths) = agent.step(actions)
            if K and not all(v.closed for v in videos):
                frames, reward, v_term, v_trunc, _ = video_env.step(actions[:K])
                for k in range(K):
                    if not videos[k].closed:
                        videos[k].add(frames[k, 0])
                        video_return[k] += np.float32(reward[k])  # as BatchAgents sums the scored return
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
        # ALE and retro cut games at --max-episode-frames; a gymnasium env has its own TimeLimit (Pendulum 200 steps)
        limit = "the env's own time limit" if family_of(env_id).name == "gymnasium" else \
            f"the time limit of {hp.max_episode_frames} frames"
        warn(f"{int(time_limit.sum())} of {N} episodes hit {limit}")
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
        "greedy": bool(rule.greedy),
        "epsilon": float(rule.epsilon),
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
    write_json_atomic(os.path.join(args.out, "scores.json"), scores)
    print(f"{scores['mean']:.2f} ± {scores['std']:.2f} over {N} episodes ({rule.describe()})", flush=True)
    return 0


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        return export(args) if args.export else evaluate(args)
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: no scores written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
