"""Every knob of a3c-tf in one frozen, typed dataclass.

Edit the defaults here, pick a preset (`--preset breakout`) or override any field on the command line
of a3c.py as `--field-name VALUE` (booleans as `--flag` / `--no-flag`). The resolved config is printed at
start and saved as `config.json` in the run directory, next to every checkpoint.

Owns: the fields, their defaults and docstrings, presets, validation, the command-line parser built from the
fields, which fields a checkpoint depends on, and the learning-rate schedule they define.
Must not import TensorFlow or any other module of the project but errors.py: everything else imports it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field

from errors import ArgumentParser, ConfigError

def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class HParams:
    # --- environment -------------------------------------------------------------------------------
    env_id: str = "ALE/Pong-v5"
    """An Atari id (`ALE/Pong-v5`, `PongNoFrameskip-v4` or a bare ROM name `pong`), any registered gymnasium id
    (`CartPole-v1`, `Pendulum-v1`, `LunarLander-v3`, ...), or a retro game (`retro:Airstriker-Genesis`).
    The Atari settings below (frameskip ... full_action_space) apply to Atari and retro games; gymnasium envs
    keep their registered settings (time limit included)."""
    vector_env: str = "sync"
    """Gymnasium envs only: `sync` steps a thread's envs one after another in its own process; `async` gives
    each env a process of its own (worth it when one step costs more than ~1 ms). Atari envs always run in
    ale-py's C++ threads and retro games in processes (one emulator per process is all retro allows)."""
    frameskip: int = 4
    """Emulator frames per agent step (the action is repeated; the last two frames are max-pooled)."""
    repeat_action_probability: float = 0.0
    """Sticky-action probability. 0.0 = the classic DQN/A3C setting; 0.25 = Machado et al. (v5 default)."""
    noop_max: int = 30
    """Up to this many no-op steps at every reset, so starts differ (DQN protocol)."""
    episodic_life: bool = True
    """Training only: a life loss is a terminal for the returns (no bootstrap) but the game goes on.
    Evaluation always plays full games."""
    full_action_space: bool = False
    """Use all 18 Atari actions instead of the game's minimal set (6 for Pong, 4 for Breakout)."""
    max_episode_frames: int = 108_000
    """Emulator frames after which an episode is truncated (30 min of play at 60 Hz); it bootstraps from V."""

    # --- parallelism -------------------------------------------------------------------------------
    threads: int = field(default_factory=lambda: min(2, _cpu_count()))
    """Learner threads, each owning one vector env and applying its own gradients (A3C).
    Default: one per core, at most 2 - more threads than cores oversubscribes and is slower."""
    envs_per_thread: int = 64
    """Environments stepped together by one thread; they form the batch dimension B."""
    env_threads: int = 0
    """Atari only: ale-py's emulator worker threads per vector env. 0 = cores // threads (no oversubscription).
    Retro games run one emulator process per env, gymnasium envs as --vector-env says."""
    devices: str = ""
    """Devices for the network, e.g. `GPU:0,GPU:1`: with several, each holds a replica that its threads (spread
    round-robin) act and compute gradients with; gradients are applied to the shared weights on the first.
    Empty: every GPU present, else the CPU."""
    tf_intra_op_threads: int = 0
    """TensorFlow threads inside one op. 0 = number of cores."""
    tf_inter_op_threads: int = 0
    """TensorFlow threads running independent ops. 0 = number of learner threads."""

    # --- distributed (Ray) ---------------------------------------------------------------------------
    executor: str = "local"
    """`local`: the learner threads run in this process. `ray`: a parameter-server actor holds the weights,
    optimizer, counters, checkpoints and logs (on this machine), and --workers rollout-worker actors, each running
    --threads learner threads, compute gradients on their own copy of the weights and push them (README, Running
    on a cluster)."""
    ray_address: str = ""
    """Ray only. Empty: start a private Ray on this machine; `auto`: join the cluster `ray start` made here;
    `HOST:PORT`: join that head node."""
    workers: int = 2
    """Ray only: rollout-worker actors, each reserving --threads CPUs of the cluster."""
    weight_pull_interval: int = 1
    """Ray only: a worker thread fetches fresh weights every this many of its updates (1 = before every rollout;
    larger = less traffic, more policy lag)."""
    worker_gpus: float = 0.0
    """Ray only: GPUs per worker actor (a fraction shares one GPU between workers)."""
    wire_dtype: str = "float32"
    """Ray only: the dtype gradients and weights travel in. `bfloat16` / `float16` halve the bytes of every push and
    pull; the server casts back and applies in float32 (its weights and statistics stay float32). For clusters whose
    network is the wall: on one machine bfloat16 was 11% slower; float16 flushes small gradients (docs/cluster.md)."""
    sync: bool = False
    """Ray only: Distributed BA3C's synchronous mode. Every round, each worker thread acts with the same weights,
    the shards apply the mean of all threads' gradients once, and the next round starts: a large batch, no policy
    lag. A worker that dies is dropped from the round (Ray restarts it). Pair with --optimizer adam (BA3C's best)."""
    ps_shards: int = 1
    """Ray only: parameter-server shards. 1: one actor applies every update. S > 1: S shard actors each hold about
    1/S of the weights and optimizer statistics (the fc matrix cut by rows) and apply their slice of every push,
    spread over the nodes; the parameter server keeps the counters, logs and checkpoints (docs/cluster.md)."""
    off_policy_correction: str = "none"
    """`none`: the gradient is taken with the weights that acted (the A3C paper's thread-local copy). `vtrace`:
    it is taken with the newest weights (Ray: fetched just before) and importance-weighted against the acting
    policy with V-trace (Espeholt et al. 2018), so a lagging actor's data stays usable without bias."""
    vtrace_rho_clip: float = 1.0
    """V-trace: truncation of the importance weights in the targets and the policy gradient (rho-bar)."""
    vtrace_c_clip: float = 1.0
    """V-trace: truncation of the trace-cutting weights (c-bar)."""

    # --- ACER (--algorithm acer) -----------------------------------------------------------------------
    algorithm: str = "a3c"
    """`a3c`, or `acer` (Wang et al. 2016): a Q head, per-thread replay, Retrace targets, truncated importance
    sampling with bias correction and a trust region against an average policy. Feed-forward nets; discrete
    actions, or Box actions with the paper's stochastic dueling critic (--std-head shared or state)."""
    replay_ratio: float = 4.0
    """ACER: off-policy updates per on-policy update, drawn from Poisson(replay_ratio); 0 = on-policy ACER."""
    replay_batch_envs: int = 0
    """ACER: env columns in each off-policy batch ([t_max, N], each column a random stored rollout of a random env);
    0 = the thread's --envs-per-thread, as in the ACER paper. Fewer makes each off-policy update cheaper (8 of 16
    columns: 25 against 36 ms on Pong); with --replay-ratio 2 it cost env steps to 18 on Pong (docs/results.md)."""
    replay_capacity: int = 100_000
    """ACER: transitions (env steps) each learner thread's replay memory keeps; ~7.1 KB each for Atari frames."""
    save_replay: bool = True
    """ACER: write the replay memories beside a checkpoint (checkpoints/replay-N.npz, compressed; only the newest
    kept; how often: --replay-save-interval-s), so a resumed run goes on with a full memory instead of refilling it. Turned off, with a warning, when
    the disk has less room than the memories' uncompressed size."""
    replay_save_interval_s: float = 1800.0
    """ACER with --save-replay: seconds between the checkpoints that also write the replay memories (the last
    checkpoint, at the end, on Ctrl-C or SIGTERM, always does); 0 = every checkpoint. The threads wait while the
    memories are written: 2 x 400,000 BeamRider transitions (5.3 GiB) took 14.6 s, a twentieth of a 300 s
    checkpoint interval. A resume after a hard crash restores the newest memory saved, up to this much older."""
    replay_start: int = 10_000
    """ACER: transitions a thread's memory must hold before its off-policy updates start."""
    acer_c: float = 10.0
    """ACER: truncation of the importance weights (c), with bias correction for the rest."""
    acer_delta: float = 1.0
    """ACER: trust-region radius (delta) on the KL to the average policy, in the distribution's statistics."""
    acer_avg_decay: float = 0.99
    """ACER: Polyak decay of the average policy network (alpha) after every update."""
    acer_trust_region: bool = True
    """ACER: project the policy gradient onto the trust region (off: plain truncated-IS ACER)."""

    # --- A3C ---------------------------------------------------------------------------------------
    network: str = "auto"
    """For frames: `a3c` (Mnih et al. 2016: conv16 8x8/4, conv32 4x4/2, fc256), `nature` (Mnih et al. 2015), or
    `a3c-lstm` (the A3C paper's LSTM agent: the a3c torso, a LayerNorm, then an LSTM of 256 cells; state reset
    at episode starts). For flat observations: `mlp` (policy and value towers of 64-64 tanh units). `auto`: a3c
    for frames, mlp for flat observations; the config saved with the run names the network chosen."""
    torso_init: str = "glorot"
    """Initial conv and fc weights of the frame torso: `glorot` (Keras' default) or `orthogonal` with the ReLU gain
    sqrt(2) (OpenAI baselines, CleanRL), ~2.3x larger at conv0; the MLP towers are orthogonal (gain sqrt(2)) under
    both. `torch`: every layer, heads included, as PyTorch's default U(+-1/sqrt(fan_in)), the net of the RL Zoo
    with ortho_init=False (its A2C BipedalWalker). Only a new run's start; a resume keeps its weights."""
    mlp_units: str = "64,64"
    """mlp only: the widths of each tower's tanh layers (policy and value alike), e.g. `256,256`. Part of the
    model: a checkpoint keeps its own."""
    center_frames: bool = False
    """Frame torsos: subtract each frame's mean pixel before conv0. Inputs that are all >= 0 on a mostly uniform
    background (Pong) move all of a filter's weights together, and RMSProp killed 15 or 16 of conv0's 16 filters
    in the first ~100K env steps (README, tuning record). Part of the model: a checkpoint keeps its setting."""
    normalize_obs: bool = False
    """mlp only: normalise observations by their running mean and variance (kept in checkpoints)."""
    log_std_init: float = 0.0
    """Continuous actions only: the Gaussian policy's starting log standard deviation, the same for every action
    dimension (0: std 1, as wide as a [-1, 1] action range; -1: std 0.37). Learned from there."""
    std_head: str = "shared"
    """Continuous actions only: where the Gaussian's log-std comes from. `shared`: one learned vector, the same in
    every state. `state`: a linear head on the policy tower's features, as the A3C paper's continuous agent (its
    sigma^2 was an output of the network), starting at --log-std-init in every state and clipped to [-5, 2]. Part
    of the model. No preset uses it: on LunarLanderContinuous its std collapsed to the clip (docs/tuning.md).
    `sde`: generalized state-dependent exploration (gSDE, Raffin et al. 2021, as the RL Zoo's A2C and PPO use for
    BipedalWalker and LunarLanderContinuous): the noise is the policy tower's last features times a random matrix
    W ~ N(0, exp(L)^2) per env, redrawn every --sde-sample-steps steps, so exploration is smooth in time and
    shrinks where the features are small; L ([features, D], starting at --log-std-init) is learned through the
    Gaussian's log-likelihood, log-std = 0.5 log(sum_i f_i^2 exp(2 L_id))."""
    sde_sample_steps: int = 0
    """--std-head sde only: draw each env's noise matrix anew every this many agent steps. 0: once per rollout,
    every t_max steps of the thread acting (the RL Zoo's sde_sample_freq -1; under --t-max-per-thread each thread
    its own length). Evaluation with --sample draws it as thread 0 does."""
    t_max: int = 5
    """Rollout length: agent steps per env between updates; the n of the n-step return."""
    t_max_per_thread: str = ""
    """Per-thread rollout lengths, e.g. `16,32,64` (A3G's distributed step size), given to the threads
    round-robin; at most one per thread. Empty: every thread uses --t-max."""
    gamma: float = 0.99
    """Discount per agent step."""
    gae_lambda: float = 1.0
    """GAE(lambda) mixing; 1.0 is the plain n-step advantage of the A3C paper."""
    optimizer: str = "rmsprop"
    """`rmsprop` (as in the A3C paper), `adam`, or `amsgrad` (Adam with the running maximum of the second
    moments, Reddi et al. 2018; A3G's option). Statistics are shared by all threads unless --per-thread-stats."""
    learning_rate: float = 7e-4
    """Initial step size."""
    lr_schedule: str = "linear"
    """`constant`, or `linear` decay to 0 at total_env_steps."""
    rmsprop_decay: float = 0.99
    """RMSProp moving-average decay of squared gradients (alpha in the paper)."""
    rmsprop_init: str = "zeros"
    """Where RMSProp's mean square starts: `zeros` (PyTorch, A3G: each weight's first steps are ~10x lr in the
    sign of its gradient), `ones` (TF1, OpenAI baselines: a warm-up of a few thousand updates) or `debiased`
    (zeros with Adam's bias correction: the first step is lr in sign). Ignored by adam and amsgrad."""
    optimizer_epsilon: float = 1e-10
    """RMSProp: added to the mean square INSIDE the root (A3C paper / TF1 form), so sqrt(eps) floors the
    denominator; 1e-10 matches PyTorch's RMSprop(eps=1e-5) of the A2C baselines. 1e-5 here made RMSProp
    SGD-like and Pong learn ~3.5x slower per env step; the paper's 0.1 is slower still. Adam: added outside."""
    per_thread_stats: bool = False
    """Each learner thread keeps optimizer statistics of its own (A3G's non-shared optimizer) while the weights
    stay shared. Checkpoints then hold every thread's statistics, so a resume needs the same --threads."""
    adam_beta1: float = 0.9
    """Adam first-moment decay."""
    adam_beta2: float = 0.999
    """Adam second-moment decay."""
    entropy_beta: float = 0.01
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss 0.5 * (G - V)^2 relative to the policy loss."""
    max_grad_norm: float = 0.5
    """Global-norm gradient clip (tf.clip_by_global_norm)."""
    clip_rewards: bool = True
    """Clip rewards to [-1, 1] for learning. Logged returns are always the raw game score."""
    reward_scale: float = 1.0
    """Multiply the rewards the loss sees by this (after clipping, when on): e.g. 0.1 for Pendulum, whose step
    rewards reach -16. Logged returns are always the raw score."""
    normalize_rewards: bool = False
    """Divide the rewards the loss sees by the running std of each env's discounted return, clipped to [-10, 10]
    (Stable-Baselines3's VecNormalize, which the RL Zoo's continuous-control recipes use), then times
    --reward-scale. Not with --clip-rewards. The statistics are kept in checkpoints: a resume keeps this setting.
    --executor local only."""
    total_env_steps: int = 10_000_000
    """Agent steps summed over all envs (1 step = `frameskip` frames) before training stops."""
    stop_at_env_steps: int | None = None
    """Stop (checkpoint, exit 0) after this many env steps while the learning-rate schedule still runs to
    --total-env-steps: to train one schedule in legs, e.g. --total-env-steps 10000000 --stop-at-env-steps 2560000,
    then resume. Unset: train to --total-env-steps."""
    stop_at_mean_return: float | None = None
    """Also stop (checkpoint, exit 0) once the mean raw return of the last 100 episodes reaches this, e.g. 18
    for Pong; checked at every log row, needs 100 episodes. Unset: train to --total-env-steps."""
    seed: int = 0
    """Seeds TF and the envs (env j of thread i gets seed + i * envs_per_thread + j)."""
    deterministic_ops: bool = False
    """tf.config.experimental.enable_op_determinism (reproducible with threads=1 only; slower)."""
    jit_compile: bool = False
    """Compile the train step with XLA."""
    overlap_env_step: bool = True
    """Send the next rollout's first actions to the emulator before the gradient step, so env stepping
    and the update run at the same time (one more update of policy lag on 1 step in t_max). Atari, retro and
    `--vector-env async`; a sync gymnasium env steps in the learner thread, so there it changes nothing."""
    precision: str = "float32"
    """`float32`, `bfloat16` (mixed precision: the conv/fc torso computes in bfloat16 while weights, heads,
    losses and gradients stay float32), or `auto`: bfloat16 where the device has bf16 units (a CPU with
    AVX512-BF16 or AMX, a GPU of compute capability 8.0+: each replica's own), float32 elsewhere, where bf16
    would be emulated and slower. Checkpoints are the same either way. ACER on Pong learned as well in bf16 over 3 seeds
    (`pong-acer-t10` takes `auto`); A3C's bf16 is untested beyond one seed (README, Throughput)."""

    # --- outputs -----------------------------------------------------------------------------------
    logdir: str = "runs/pong"
    """Run directory: checkpoints, config.json, TensorBoard events, progress.csv. Re-use it to resume."""
    checkpoint_interval_s: float = 300.0
    """Seconds between checkpoints (one is also written at exit)."""
    checkpoints_kept: int = 3
    """Newest checkpoints kept on disk."""
    log_interval_s: float = 10.0
    """Seconds between TensorBoard / progress.csv rows."""
    progress_bar: bool = True
    """Show a tqdm bar on stderr."""
    histogram_interval_updates: int = 0
    """Write TensorBoard histograms of every weight and its gradient every this many updates; 0 = never."""

    # ------------------------------------------------------------------------------------------------
    @property
    def num_envs(self) -> int:
        return self.threads * self.envs_per_thread

    @property
    def mlp_units_tuple(self) -> tuple[int, ...]:
        return tuple(parse_int_list(self.mlp_units))

    def t_max_of(self, thread: int) -> int:
        """The rollout length of learner thread `thread`."""
        lengths = parse_int_list(self.t_max_per_thread) or [self.t_max]
        return lengths[thread % len(lengths)]

    def resolved_env_threads(self) -> int:
        return self.env_threads or max(1, _cpu_count() // self.threads)

    def resolved_intra_op_threads(self) -> int:
        return self.tf_intra_op_threads or _cpu_count()

    def resolved_inter_op_threads(self) -> int:
        return self.tf_inter_op_threads or self.threads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_PONG_ACER = dict(env_id="ALE/Pong-v5", logdir="runs/pong-acer", envs_per_thread=16, t_max=20, algorithm="acer",
                  max_grad_norm=10.0, total_env_steps=10_000_000)

_LUNARLANDER = dict(env_id="LunarLander-v3", logdir="runs/lunarlander", envs_per_thread=8, gamma=0.995,
                    entropy_beta=1e-3, clip_rewards=False, episodic_life=False, reward_scale=0.01, algorithm="acer",
                    t_max=10, max_grad_norm=10.0, replay_ratio=16.0, total_env_steps=1_000_000)

PRESETS: dict[str, dict] = {
    # Classic DQN/A3C Pong protocol (no sticky actions, minimal action set, 30 no-ops).
    # 2 x 16 envs x t_max 5 = 80 samples per update, as in A2C (16 envs): A3C's learning speed per env step
    # is set by updates per env step, and the gradient costs the same per sample at any batch size, so
    # small batches buy ~4x the updates of 2 x 64 for ~20% less throughput.
    "pong": dict(env_id="ALE/Pong-v5", logdir="runs/pong", envs_per_thread=16, total_env_steps=10_000_000),
    # The A3C paper's LSTM agent on the same Pong settings, so the two rows of README's results compare.
    "pong-lstm": dict(env_id="ALE/Pong-v5", logdir="runs/pong-lstm", envs_per_thread=16, network="a3c-lstm",
                      total_env_steps=10_000_000),
    # ACER on Pong with OpenAI baselines' ACER settings where ours differ: 20-step rollouts (Retrace needs traces),
    # replay ratio 4, global-norm clip 10. Seed 0 reached 18 in 1.86M and 2.20M env steps in two runs (README).
    "pong-acer": _PONG_ACER,
    # The same with 10-step rollouts (the same compute per env step, an update's cost being per sample, for twice
    # the updates) and each frame's mean subtracted before conv0: without it Pong's uniform background drives the
    # first layer's filters dead (seed 1 never learned; 1.58M / never / 1.75M env steps to 18). With it, seeds 0-2
    # reached 18 in 1.15M / 0.78M / 0.86M (README, tuning record). bf16 where the CPU or GPU runs it natively:
    # 3 seeds in bf16 reached 18 in 1.17M / 0.70M / 0.87M env steps at 1.29x float32's env steps/s (AVX512-BF16).
    "pong-acer-t10": dict(_PONG_ACER, logdir="runs/pong-acer-t10", t_max=10, center_frames=True, precision="auto"),
    # The same under Machado et al.'s sticky actions (v5 protocol): a policy trained without them falls from ~19 to
    # 6-10 when the emulator repeats its previous action with probability 0.25. Seed 0 reached 18.1-18.6 greedy under
    # them after 7.4M env steps in legs that lowered the entropy weight and the step (README, robustness).
    "pong-acer-t10-sticky": dict(_PONG_ACER, logdir="runs/pong-acer-t10-sticky", t_max=10, center_frames=True,
                                 precision="auto", repeat_action_probability=0.25),
    "breakout": dict(env_id="ALE/Breakout-v5", logdir="runs/breakout", total_env_steps=40_000_000),
    # One preset for every Atari game (issue 36; docs/tuning.md, Atari suite): only --env-id changes, and the run
    # directory follows the game (runs/atari-seaquest). ACER with pong-acer-t10's settings over a 10M-step
    # schedule. Probes of 2M env steps (docs/tuning.md, Atari suite): on SpaceInvaders ACER beat A3C per env step and
    # per minute (567 against 250); on Seaquest it led per env step to 1.5M and tied at 2M (727 against 755).
    # The replay memory stays at 100,000 per thread: 400,000 (5.3 GiB) reached BeamRider's plateau 7M env steps
    # sooner but ended level at 10M (1,981 against 1,849 training, one seed).
    "atari": dict(_PONG_ACER, env_id="", logdir="runs/atari-{game}", t_max=10, center_frames=True,
                  precision="auto"),
    # --- beyond Atari (README, Beyond Atari). Gymnasium envs keep their registered time limits; rewards are not
    # clipped (the scores are small and their size matters). Figures measured on this 2-core machine are in README.
    "cartpole": dict(env_id="CartPole-v1", logdir="runs/cartpole", envs_per_thread=8, clip_rewards=False,
                     episodic_life=False, total_env_steps=500_000),
    # Continuous actions (Gaussian head). Pendulum's reward is -(angle^2 + 0.1 velocity^2 + 0.001 torque^2) per
    # step, down to -16: scaled by 0.1; a short horizon (gamma 0.9) as in the A2C baselines' tuned Pendulum.
    "pendulum": dict(env_id="Pendulum-v1", logdir="runs/pendulum", envs_per_thread=8, t_max=8, gamma=0.9,
                     gae_lambda=0.9, entropy_beta=0.0, normalize_obs=True, reward_scale=0.1, clip_rewards=False,
                     episodic_life=False, optimizer="adam", learning_rate=1e-3, total_env_steps=3_000_000),
    # ACER with 16 replay updates per rollout (docs/tuning.md, LunarLander): the landing is found late (the policy
    # first learns to hover, out of reach of the -100 crash, until the 1,000-step limit), and replay is what gets it
    # out of that plateau on every seed. A3C with the same gamma hovers at 1M env steps; ACER with replay ratio 4
    # or 8 lands on 2 of 3 seeds. The step decays to 0 over the 1M env steps.
    "lunarlander": _LUNARLANDER,
    # The same on Box(2) actions (issue 37's second row): continuous ACER (docs/algorithms.md), a Gaussian with one
    # learned log-std per action and the stochastic dueling critic, plus two changes. No entropy bonus: the env clips
    # actions to [-1, 1], so once they saturate nothing holds a bonus back and the std grew without bound (entropy
    # 8-13 nats for 2 dimensions at 1M env steps) and the lander hovered. Observations normalised. Greedy medians
    # over 3 seeds at 1M env steps: 136.19 as `lunarlander` (one seed crashed), 207.89 with both (docs/tuning.md).
    "lunarlander-continuous": dict(_LUNARLANDER, env_id="LunarLanderContinuous-v3",
                                   logdir="runs/lunarlander-continuous", entropy_beta=0.0, normalize_obs=True),
    # The RL Zoo's A2C recipe (docs/tuning.md, BipedalWalker): gSDE exploration (a noise matrix per env, held for a
    # rollout; log-std from -2), RMSProp 9.6e-4 decaying to 0 over 5M env steps, GAE 0.9, value weight 0.4, returns
    # normalised by their running std. The Gaussian head with Adam plateaued near 200 at 5M env steps.
    "bipedalwalker": dict(env_id="BipedalWalker-v3", logdir="runs/bipedalwalker", envs_per_thread=8, t_max=8,
                          gae_lambda=0.9, entropy_beta=0.0, normalize_obs=True, normalize_rewards=True,
                          reward_scale=1.0, value_coef=0.4, clip_rewards=False, episodic_life=False,
                          optimizer="rmsprop", learning_rate=9.6e-4, std_head="sde", log_std_init=-2.0,
                          total_env_steps=5_000_000),
    # A Genesis shooter whose ROM ships with stable-retro: 18 actions (8 ways, with and without fire), Atari-style
    # frames, episodic life (3 lives); 8 emulator processes in all.
    "airstriker": dict(env_id="retro:Airstriker-Genesis", logdir="runs/airstriker", envs_per_thread=4,
                       total_env_steps=10_000_000),
    # The same with A3G's LSTM core (the A3C paper's recurrent agent), to be set against the feed-forward preset at
    # the same env steps (issue 37; `python reproduce.py airstriker-lstm --seeds 3`). Step 2e-4: on Pong the LSTM at
    # the feed-forward step of 7e-4 drove its fc features up ~100x and never learned; at 2e-4 it did (docs/tuning.md).
    "airstriker-lstm": dict(env_id="retro:Airstriker-Genesis", logdir="runs/airstriker-lstm", envs_per_thread=4,
                            network="a3c-lstm", learning_rate=2e-4, total_env_steps=10_000_000),
    # A few hundred steps; used by the tests and to check an install.
    "smoke": dict(env_id="ALE/Pong-v5", threads=2, envs_per_thread=4, total_env_steps=400,
                  logdir="runs/smoke", log_interval_s=1.0, progress_bar=False),
}

CHOICES = {
    "network": ("auto", "a3c", "nature", "a3c-lstm", "mlp"),
    "vector_env": ("sync", "async"),
    "optimizer": ("rmsprop", "adam", "amsgrad"),
    "rmsprop_init": ("zeros", "ones", "debiased"),
    "torso_init": ("glorot", "orthogonal", "torch"),
    "std_head": ("shared", "state", "sde"),
    "lr_schedule": ("constant", "linear"),
    "precision": ("float32", "bfloat16", "auto"),
    "executor": ("local", "ray"),
    "wire_dtype": ("float32", "bfloat16", "float16"),
    "off_policy_correction": ("none", "vtrace"),
    "algorithm": ("a3c", "acer"),
}

# Fields that change the trained weights' meaning; a checkpoint cannot be resumed or evaluated with others.
MODEL_FIELDS = ("env_id", "network", "full_action_space", "normalize_obs", "algorithm", "center_frames", "std_head",
                "mlp_units")
# Fields added after checkpoints were shipped (model or statistics fields): the value a saved config without them
# was trained with.
MODEL_FIELDS_ABSENT_MEANS = {"center_frames": False, "std_head": "shared", "normalize_rewards": False,
                             "mlp_units": "64,64"}
# Fields the statistics in a checkpoint (the optimizer's, the returns') depend on: a resume must keep them.
OPTIMIZER_FIELDS = ("optimizer", "per_thread_stats", "normalize_rewards")
# Settings of the env that a resumed run may change, but with a warning: the policy was trained under the old ones.
ENV_FIELDS = ("frameskip", "repeat_action_probability", "noop_max", "max_episode_frames", "episodic_life")


def learning_rate_at(hp: HParams, env_steps: int) -> float:
    """The step size after `env_steps` env steps of the run, by hp.lr_schedule."""
    if hp.lr_schedule == "linear":
        return hp.learning_rate * max(0.0, 1.0 - env_steps / hp.total_env_steps)
    return hp.learning_rate


def step_budget(hp: HParams) -> int:
    """The env steps this run trains to: --stop-at-env-steps when set, else --total-env-steps (the schedule's end)."""
    return hp.total_env_steps if hp.stop_at_env_steps is None else hp.stop_at_env_steps


def parse_int_list(text: str) -> list[int]:
    """`16,32,64` -> [16, 32, 64]; `` -> []. ValueError if an entry is not an integer."""
    return [int(x) for x in text.split(",")] if text.strip() else []


def _int_list_or_invalid(text: str) -> list[int]:
    """parse_int_list, or [0] (which every range check refuses) when an entry is not an integer."""
    try:
        return parse_int_list(text)
    except ValueError:
        return [0]


def validate(hp: HParams) -> HParams:
    """Raise ConfigError naming the first out-of-range field and the valid range."""
    def need(ok: bool, msg: str):
        if not ok:
            raise ConfigError(msg)

    for name, choices in CHOICES.items():
        need(getattr(hp, name) in choices, f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                                           f"got {getattr(hp, name)!r}")
    for name in ("threads", "envs_per_thread", "t_max", "frameskip", "total_env_steps", "checkpoints_kept",
                 "max_episode_frames", "workers", "weight_pull_interval", "ps_shards"):
        need(getattr(hp, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(hp, name)}")
    for name in ("env_threads", "tf_intra_op_threads", "tf_inter_op_threads", "noop_max"):
        need(getattr(hp, name) >= 0, f"--{name.replace('_', '-')} must be >= 0, got {getattr(hp, name)}")
    for name in ("learning_rate", "max_grad_norm", "optimizer_epsilon", "checkpoint_interval_s", "log_interval_s",
                 "reward_scale", "vtrace_rho_clip", "vtrace_c_clip", "acer_c", "acer_delta"):
        need(getattr(hp, name) > 0, f"--{name.replace('_', '-')} must be > 0, got {getattr(hp, name)}")
    for name in ("gamma", "gae_lambda", "repeat_action_probability", "rmsprop_decay", "adam_beta1", "adam_beta2",
                 "acer_avg_decay"):
        need(0.0 <= getattr(hp, name) <= 1.0, f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(hp, name)}")
    for name in ("entropy_beta", "value_coef", "worker_gpus", "replay_ratio", "replay_start", "replay_batch_envs",
                 "replay_save_interval_s"):
        need(getattr(hp, name) >= 0, f"--{name.replace('_', '-')} must be >= 0, got {getattr(hp, name)}")
    need(hp.stop_at_env_steps is None or 1 <= hp.stop_at_env_steps <= hp.total_env_steps,
         f"--stop-at-env-steps must be in [1, --total-env-steps {hp.total_env_steps}], got {hp.stop_at_env_steps}; "
         f"to train longer, raise --total-env-steps")
    need(hp.histogram_interval_updates >= 0,
         f"--histogram-interval-updates must be >= 0, got {hp.histogram_interval_updates}")
    lengths = _int_list_or_invalid(hp.t_max_per_thread)
    need(all(n >= 1 for n in lengths),
         f"--t-max-per-thread must be positive integers separated by commas, e.g. 16,32,64; "
         f"got {hp.t_max_per_thread!r}")
    widths = _int_list_or_invalid(hp.mlp_units)
    need(1 <= len(widths) <= 8 and all(1 <= n <= 65_536 for n in widths),
         f"--mlp-units must be 1 to 8 layer widths, positive integers separated by commas, e.g. 64,64 or 256,256; "
         f"got {hp.mlp_units!r}")
    need(len(lengths) <= hp.threads, f"--t-max-per-thread gives {len(lengths)} rollout lengths but there are "
                                     f"{hp.threads} --threads; give at most one per thread")
    need(math.isfinite(hp.log_std_init) and -5.0 <= hp.log_std_init <= 2.0,
         f"--log-std-init must be within [-5, 2] (a starting std from 0.007 to 7.4), got {hp.log_std_init:g}")
    need(hp.sde_sample_steps >= 0, f"--sde-sample-steps must be >= 0 (0: once per rollout), got {hp.sde_sample_steps}")
    need(hp.sde_sample_steps == 0 or hp.std_head == "sde",
         f"--sde-sample-steps is for --std-head sde (gSDE's noise); this run's --std-head is {hp.std_head}")
    need(bool(hp.logdir), "--logdir must not be empty")
    need(hp.executor == "ray" or not hp.ray_address,
         f"--ray-address {hp.ray_address} needs --executor ray (the local executor runs in this process)")
    if hp.algorithm == "acer":
        longest = max(parse_int_list(hp.t_max_per_thread) or [hp.t_max])
        need(hp.replay_capacity >= 2 * longest * hp.envs_per_thread,
             f"--replay-capacity {hp.replay_capacity} holds less than two rollouts of {longest} steps x "
             f"{hp.envs_per_thread} envs ({2 * longest * hp.envs_per_thread} transitions); raise it")
        need(hp.executor == "local", "--algorithm acer runs on --executor local (the replay lives with the threads)")
        need(hp.off_policy_correction == "none", "--off-policy-correction is for --algorithm a3c (ACER corrects with "
                                                 "Retrace and truncated importance weights of its own)")
    need(hp.executor == "ray" or hp.ps_shards == 1,
         f"--ps-shards {hp.ps_shards} needs --executor ray (the local executor shares its weights in memory)")
    need(hp.executor == "ray" or hp.wire_dtype == "float32",
         f"--wire-dtype {hp.wire_dtype} needs --executor ray (the local executor's threads share the weights in "
         f"memory)")
    need(hp.executor == "ray" or not hp.sync, "--sync needs --executor ray (the local executor's threads are "
                                              "asynchronous by design: A3C)")
    need(not hp.sync or hp.weight_pull_interval == 1,
         f"--sync pulls the new weights every round; drop --weight-pull-interval {hp.weight_pull_interval}")
    need(not hp.sync or hp.off_policy_correction == "none",
         "--off-policy-correction vtrace corrects policy lag, and --sync has none; drop one of them")
    need(not hp.sync or not hp.normalize_obs,
         "--sync with --normalize-obs: the observation statistics live on one server; drop --normalize-obs")
    need(hp.ps_shards == 1 or not hp.normalize_obs,
         f"--ps-shards {hp.ps_shards} with --normalize-obs: the observation statistics live on one server; use "
         f"--ps-shards 1 or drop --normalize-obs")
    need(not (hp.normalize_rewards and hp.clip_rewards),
         "--normalize-rewards with --clip-rewards: the clipped rewards would be normalised again; add "
         "--no-clip-rewards (or drop --normalize-rewards)")
    need(hp.executor == "local" or not hp.normalize_rewards,
         "--normalize-rewards is for --executor local (its return statistics live with the learner threads)")
    need(hp.executor == "local" or not hp.histogram_interval_updates,
         "--histogram-interval-updates is for --executor local (the parameter server sees gradients, not rollouts)")
    need(hp.executor == "local" or not hp.per_thread_stats,
         "--per-thread-stats is for --executor local: with ray the parameter server applies every update with one "
         "set of optimizer statistics")
    return hp


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true/false, got {text!r}")


def from_dict(values: dict, base: HParams | None = None) -> HParams:
    """HParams from a (possibly older) saved config; unknown keys are ignored, missing ones keep defaults, but a
    model field added later takes the value the config was trained with (MODEL_FIELDS_ABSENT_MEANS)."""
    known = {f.name for f in dataclasses.fields(HParams)}
    base = base or HParams()
    values = {**MODEL_FIELDS_ABSENT_MEANS, **values}
    return dataclasses.replace(base, **{k: v for k, v in values.items() if k in known})


def parse_args(argv: list[str] | None = None) -> HParams:
    """Build HParams from `--preset NAME` then `--field-name VALUE` overrides."""
    hints = typing.get_type_hints(HParams)
    parser = ArgumentParser(description="Batched-agent A3C trainer. Every HParams field is a flag; the defaults "
                                        "shown are HParams' own, which --preset NAME changes for some fields.",
                            allow_abbrev=False)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="named starting point: its fields replace the defaults, and flags given override it")
    docs = _field_docs()
    defaults = HParams()
    for f in dataclasses.fields(HParams):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        optional = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(optional) == 1:  # `float | None`: the flag takes the value; leaving it out keeps None
            kind = optional[0]
        # Every flag's argparse default is None (meaning "not given": the preset's value stands), so the field's
        # own default goes into the help text; argparse would print `(default: None)`.
        text = docs.get(f.name, "") + _default_note(f.name, getattr(defaults, f.name))
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=text)
    args = parser.parse_args(argv)
    hp = HParams()
    if args.preset:
        hp = dataclasses.replace(hp, **PRESETS[args.preset])
    overrides = {k: v for k, v in vars(args).items() if k != "preset" and v is not None}
    hp = dataclasses.replace(hp, **overrides)
    if not hp.env_id:  # a preset for any game of a family (`atari`) leaves the game to the command line
        raise ConfigError(f"--preset {args.preset} trains the game given by --env-id: add one, "
                          f"e.g. --env-id ALE/Seaquest-v5")
    if "{game}" in hp.logdir:
        hp = dataclasses.replace(hp, logdir=hp.logdir.replace("{game}", game_slug(hp.env_id)))
    return validate(hp)


def game_name(env_id: str) -> str:
    """The game an env id names: `ALE/MsPacman-v5`, `MsPacmanNoFrameskip-v4` -> `MsPacman`."""
    name = env_id.rsplit("/", 1)[-1].split(":")[-1]
    name = re.sub(r"-v\d+$", "", name)
    return re.sub(r"(NoFrameskip|Deterministic)$", "", name)


def game_slug(env_id: str) -> str:
    """A run directory's name for an env id: `ALE/MsPacman-v5` -> `mspacman`."""
    return re.sub(r"[^a-z0-9]+", "-", game_name(env_id).lower()).strip("-") or "game"


def _default_note(name: str, value) -> str:
    """` (default: X)` for a field's --help: the flag that is on for a boolean, `empty` for an empty string, and
    nothing for None (the field's docstring says what unset means). Escaped for argparse's %-formatting."""
    if value is None:
        return ""
    if isinstance(value, bool):
        shown = "--" + ("" if value else "no-") + name.replace("_", "-")
    else:
        shown = str(value) if value != "" else "empty"
    return f" (default: {shown})".replace("%", "%%")


def _field_docs() -> dict[str, str]:
    """Field docstrings, read from this file so --help and the docs never disagree."""
    import ast
    import inspect
    import sys
    tree = ast.parse(inspect.getsource(sys.modules[__name__]))
    docs = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "HParams":
            body = node.body
            for a, b in zip(body, body[1:]):
                if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                    docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs
