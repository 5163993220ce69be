"""The shared policy-value network and where it lives.

Input: uint8 frames `[B, 4, 84, 84]` exactly as ale_py's AtariVectorEnv emits them (stack first). They stay
uint8 until they are inside the model, which casts, scales to [0, 1] and moves the stack axis last in the same
graph, so only 1 byte per pixel crosses from host to device and no transpose happens on the host.

Precision: `float32`, or `bfloat16` = mixed precision (Keras "mixed_bfloat16"): the torso computes in bfloat16
while variables, heads, losses and gradients stay float32. bf16 keeps float32's exponent range, so no loss
scaling is needed; on CPUs with AMX / AVX512-BF16 (and Ampere+ GPUs) oneDNN/cuDNN run it on bf16 units.

The first conv (8x8, stride 4, 4 input channels) is computed as a 2x2 stride-1 conv over a space-to-depth
view of the input (21x21x64): the same function of the same kernel variable (rearranged in-graph, so
checkpoints do not change), but 64 input channels keep the CPU conv kernels' vector lanes full where 4 do not.

Flat observations `[B, n]` float32 (CartPole, Pendulum, ...) go to the `mlp` network instead: two towers of
64-64 tanh units, one for the policy and one for the value, as the A2C/PPO baselines use for such envs, with an
optional running normalisation of the observations (`normalize_obs`; its statistics are variables of the
network, so checkpoints hold them, and the train step updates them from each rollout).

Output: `AgentOutput(policy_params, value [B] float32, state)`. `policy_params` are the parameters of the
head's action distribution (distributions.py): logits `[B, A]` for discrete actions, mean and log-std `[B, 2D]`
for Box actions (a state-dependent mean; the log-std one learned vector, a linear head, or gSDE's, as --std-head
says; with gSDE also `sde_features`, what its exploration noise is made of). `state` is the recurrent core state:
`[B, 0]` for the feed-forward nets, `[B, 2 * units]` (h and c) for `a3c-lstm` (the A3C paper's LSTM agent: its
conv torso and fc256, then an LSTM of 256 cells, then the heads; we add a LayerNorm on the cell's input). `call` is
one step; `unroll` runs a whole `[T, B]` rollout from its initial state with the same resets `act` applied, for
the train step's truncated backpropagation through time over t_max.
Owns: the network's layers, its input layout and precision, and the device it is placed on.
Must not: compute losses or apply gradients (a3c_math.py, learner.py), or know about envs or checkpoints.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import keras
import tensorflow as tf

from distributions import for_action_spec, sde_log_std
from hparams import CHOICES
from specs import ATARI_OBS, ActionSpec, ObsSpec, as_action_spec

OBS_SHAPE = ATARI_OBS.shape  # (frame stack, height, width), AtariVectorEnv's layout


class AgentOutput(NamedTuple):
    policy_params: tf.Tensor  # [B, P] float32: logits (discrete), or mean and log-std (Box); see distributions.py
    value: tf.Tensor  # [B] float32, V(s)
    state: tf.Tensor  # [B, S] float32 recurrent state after this step (S = 0 for feed-forward nets)
    q_values: tf.Tensor | None = None  # [B, A] float32, Q(s, .) (ACER's Q head; None without one)
    sde_features: tf.Tensor | None = None  # [B, F] float32, gSDE's features for its exploration noise (--std-head sde)
    # [B, F] float32, what the value head reads: continuous ACER's advantage head A(x, a) takes them with the action
    critic_features: tf.Tensor | None = None


def compute_device() -> str:
    """The device the network lives on: the first GPU when there is one, else the CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "/CPU:0"


def resolve_devices(spec: str) -> list[str]:
    """--devices (`GPU:0,GPU:1`, `/device:CPU:1`, ...) -> TF device names, in order. Empty: every GPU present,
    else the CPU. ValueError naming the device that does not exist and the ones that do."""
    if not spec.strip():
        return [d.name for d in tf.config.list_logical_devices("GPU")] or [compute_device()]
    available = {d.name.split("device:")[-1]: d.name for d in tf.config.list_logical_devices()}
    names = []
    for item in spec.split(","):
        short = item.strip().split("device:")[-1].lstrip("/").upper()
        if short not in available:
            raise ValueError(f"device {item.strip()!r} does not exist on this machine (it has "
                             f"{', '.join(sorted(available))}); pass --devices with some of those")
        if available[short] in names:
            raise ValueError(f"device {item.strip()!r} is listed twice in --devices")
        names.append(available[short])
    return names


_TORSOS = {
    # name: (conv layers as (filters, kernel, stride), hidden units)
    "a3c": ([(16, 8, 4), (32, 4, 2)], 256),  # Mnih et al. 2016, the A3C paper
    "nature": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),  # Mnih et al. 2015, DQN Nature
}
TORSO_INITS = CHOICES["torso_init"]  # hparams.torso_init
STD_HEADS = CHOICES["std_head"]  # the Gaussian's log-std: one learned vector, a head, or gSDE's (hparams.std_head)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # a state head's log-std range (std 0.007 to 7.4), as --log-std-init's
MLP_UNITS = (64, 64)  # per tower (policy, value), tanh: the A2C / PPO baselines' net (hparams.mlp_units)
# --network name: (torso, LSTM units after the torso's fc layer, or 0 for a feed-forward net)
NETWORKS = {
    "a3c": ("a3c", 0),
    "nature": ("nature", 0),
    "a3c-lstm": ("a3c", 256),  # the A3C paper's LSTM agent: its torso, then 256 LSTM cells
    "mlp": ("mlp", 0),  # flat observations: separate policy and value towers
}
AUTO = "auto"  # --network auto: a3c for frames, mlp for flat observations


def resolve_kind(kind: str, obs: ObsSpec) -> str:
    """--network as given (`auto` included) -> the network for observations `obs`; ValueError on a mismatch."""
    if kind == AUTO:
        return "a3c" if obs.is_image else "mlp"
    if kind not in NETWORKS:
        raise ValueError(f"unknown network {kind!r}; choose one of {sorted(NETWORKS) + [AUTO]}")
    if obs.is_image != (NETWORKS[kind][0] != "mlp"):
        seen = "84x84 frames" if obs.is_image else f"flat observations of {obs.shape[0]} numbers"
        fits = "a3c, nature or a3c-lstm" if obs.is_image else "mlp"
        raise ValueError(f"--network {kind} cannot read {seen}; use --network {fits} (or auto)")
    return kind


PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # hparams name -> Keras dtype policy
AUTO_PRECISION = "auto"  # --precision auto: bfloat16 where the device has bf16 units, else float32
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of x86 CPUs whose oneDNN kernels run bf16 natively


def cpu_bf16_flag(cpuinfo: str) -> str | None:
    """The first of CPU_BF16_FLAGS in a /proc/cpuinfo text's `flags` line, or None."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags") and ":" in line), [])
    return next((f for f in CPU_BF16_FLAGS if f in flags), None)


def physical_gpu(device: str):
    """The physical GPU behind logical device `device` ('/GPU:2', '/device:GPU:2'; no index: 0), or None.
    Logical GPUs are numbered physical GPU by physical GPU, each contributing as many as its logical device
    configuration has (one when it has none), so with one GPU split in two, '/GPU:1' is still physical GPU 0."""
    tail = device.upper().rsplit("GPU", 1)[1].lstrip(":")
    index = int(tail) if tail.isdigit() else 0
    for gpu in tf.config.list_physical_devices("GPU"):
        count = len(tf.config.get_logical_device_configuration(gpu) or [None])
        if index < count:
            return gpu
        index -= count
    return None


def bf16_units(device: str) -> str | None:
    """What runs bfloat16 natively on `device` ('avx512_bf16', 'GPU compute capability 8.0', ...), or None.
    Without such units bf16 is emulated and slower than float32 (a CPU without AVX512-BF16 or AMX, a GPU
    before Ampere)."""
    if "GPU" in device.upper():
        gpu = physical_gpu(device)
        capability = gpu and tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):
            return f"GPU compute capability {capability[0]}.{capability[1]}"
        return None
    try:
        with open("/proc/cpuinfo") as f:
            return cpu_bf16_flag(f.read())
    except OSError:  # not Linux: no cheap way to tell, so no bf16
        return None


def resolve_precision(precision: str, device: str) -> str:
    """--precision as given -> `float32` or `bfloat16` for a network on `device`; `auto` picks bfloat16 where
    bf16_units finds native support."""
    if precision == AUTO_PRECISION:
        return "bfloat16" if bf16_units(device) else "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS) + [AUTO_PRECISION]}")
    return precision


def space_to_depth_input(obs: tf.Tensor, block: int, dtype) -> tf.Tensor:
    """uint8 `[B, C, H, W]` -> `[B, H/block, W/block, block*block*C]` in `dtype`, scaled to [0, 1].

    Channel (i * block + j) * C + c holds pixel (block*h + i, block*w + j) of frame c - the order
    `space_to_depth_kernel` expects. Also does the NCHW -> NHWC move, so there is still one transpose."""
    _, c, h, w = obs.shape
    x = tf.reshape(obs, [-1, c, h // block, block, w // block, block])
    x = tf.transpose(x, [0, 2, 4, 3, 5, 1])  # B, h/block, w/block, i, j, C
    x = tf.reshape(x, [-1, h // block, w // block, block * block * c])
    return tf.cast(x, dtype) * tf.cast(1.0 / 255.0, dtype)


def space_to_depth_kernel(kernel: tf.Tensor, block: int) -> tf.Tensor:
    """Conv kernel `[K, K, C, F]` (stride `block`) -> `[K/block, K/block, block*block*C, F]` (stride 1)."""
    k, _, c, f = kernel.shape
    x = tf.reshape(kernel, [k // block, block, k // block, block, c, f])  # a, i, b, j, C, F
    x = tf.transpose(x, [0, 2, 1, 3, 4, 5])  # a, b, i, j, C, F
    return tf.reshape(x, [k // block, k // block, block * block * c, f])


def _forget_bias_one(shape, dtype=None):
    """LSTM bias init: 1 for the forget gate, 0 elsewhere (Jozefowicz et al. 2015), gate order i, f, g, o."""
    units = shape[0] // 4
    return tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0)


class LSTMCore(keras.layers.Layer):
    """An LSTM cell (Hochreiter & Schmidhuber 1997), written out so its math and variables are plain:
    i, f, g, o = split(x W + b + h U);  c' = sigmoid(f) c + sigmoid(i) tanh(g);  h' = sigmoid(o) tanh(c').
    `project` (x W + b) is separate from `step` so that a rollout projects all T * B inputs in one matmul and
    only h U runs step by step. State: [h, c] concatenated, `[B, 2 * units]`."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        n, u = input_shape[-1], self.units
        self.kernel = self.add_weight(name="kernel", shape=(n, 4 * u), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(u, 4 * u), initializer="orthogonal")
        self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=_forget_bias_one)

    def project(self, x):
        return tf.matmul(x, self.kernel) + self.bias

    def step(self, projected, state):
        """(x W + b) `[B, 4 units]`, state `[B, 2 units]` -> (h' `[B, units]`, new state `[B, 2 units]`)."""
        h, c = tf.split(state, 2, axis=-1)
        i, f, g, o = tf.split(projected + tf.matmul(h, self.recurrent_kernel), 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, tf.concat([h, c], -1)

    def call(self, x, state):
        return self.step(self.project(x), state)


class RunningObsNorm(keras.layers.Layer):
    """Running mean and variance of flat observations (parallel merge, Chan et al. 1979), applied as
    clip((x - mean) / sqrt(var + 1e-8), -10, 10), as baselines' VecNormalize. The statistics are non-trainable
    variables: checkpoints and device replicas carry them with the weights."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.mean = self.add_weight(name="mean", shape=(size,), initializer="zeros", trainable=False)
        self.var = self.add_weight(name="var", shape=(size,), initializer="ones", trainable=False)
        self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        return tf.clip_by_value((x - self.mean) * tf.math.rsqrt(self.var + 1e-8), -10.0, 10.0)

    def update(self, x, mask):
        """Fold the rows of x `[N, n]` where mask `[N]` is True into the statistics."""
        x = tf.boolean_mask(x, mask)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        safe_n = tf.maximum(n, 1.0)  # an all-masked batch changes nothing (guarded below)
        batch_mean = tf.reduce_sum(x, 0) / safe_n
        batch_var = tf.reduce_sum(tf.square(x - batch_mean), 0) / safe_n
        total = self.count + n
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * n / tf.maximum(total, 1.0)
        m2 = self.var * self.count + batch_var * n + tf.square(delta) * self.count * n / tf.maximum(total, 1.0)
        new_var = tf.where(total > 0, m2 / tf.maximum(total, 1.0), self.var)
        self.mean.assign(tf.where(n > 0, new_mean, self.mean))
        self.var.assign(tf.where(n > 0, new_var, self.var))
        self.count.assign(total)


def _frame_means(obs: tf.Tensor) -> tf.Tensor:
    """uint8 `[N, C, H, W]` -> float32 `[N, C]`: each frame's mean pixel, scaled to [0, 1].

    Why centre: with inputs >= 0 and a frame that is mostly one colour (Pong's background is 0.34), the gradient of
    every conv0 weight of a filter is ~(sum of its output's errors) x 0.34: all 256 of them move together, and
    RMSProp, scaling each weight's step alone, moves their sum ~256 lr per update. Pong runs drove the filters'
    response to the background below 0 within ~100K env steps: 15 of 16 (or all 16) dead for good (README,
    tuning record). Subtracting the frame's mean removes that common direction (LeCun et al., Efficient
    BackProp, 1998: inputs of mean 0)."""
    return tf.reduce_mean(tf.cast(obs, tf.float32), axis=[2, 3]) * (1.0 / 255.0)


def _torso_kernel_init(torso_init: str):
    """Keras' default Glorot-uniform, or orthogonal with the ReLU gain sqrt(2) as OpenAI baselines and CleanRL
    initialise their conv torsos: ~2.3x Glorot's weights at conv0 (fan-in 256 against fan-in + fan-out 1,280).
    (`torch` is drawn after the build: torch_default_init.)"""
    return "glorot_uniform" if torso_init == "glorot" else keras.initializers.Orthogonal(2 ** 0.5)


def torch_default_init(net: "PolicyValueNet"):
    """Re-draw the kernel and bias of every dense and conv layer of a built `net` as PyTorch's nn.Linear and
    nn.Conv2d do by default, both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)): the net
    of Stable-Baselines3 and the RL Zoo with ortho_init=False (their A2C BipedalWalker recipe). Every head too,
    so the policy does not start near uniform; the state-dependent log-std head keeps its start at
    --log-std-init, and the LSTM core and log-std vectors keep theirs."""
    for layer in net.weight_layers():
        if layer is getattr(net, "log_std_head", None):
            continue
        limit = math.prod(layer.kernel.shape[:-1]) ** -0.5  # fan-in: inputs x kernel window
        for variable in (layer.kernel, layer.bias):
            variable.assign(keras.initializers.RandomUniform(-limit, limit)(variable.shape, variable.dtype))


class PolicyValueNet(keras.Model):
    """A torso (convs + fc for frames, or the MLP towers for flat observations), an optional LSTM core, a policy
    head for the action spec's distribution and a value head.

    `state_size` is 0 for the feed-forward nets and 2 * units for an LSTM core (state = [h, c])."""

    def __init__(self, action: ActionSpec | int, kind: str = "a3c", precision: str = "float32",
                 space_to_depth: bool = True, obs: ObsSpec = ATARI_OBS, normalize_obs: bool = False,
                 q_head: bool = False, torso_init: str = "glorot", center_frames: bool = False,
                 log_std_init: float = 0.0, std_head: str = "shared", mlp_units: tuple[int, ...] = MLP_UNITS,
                 **kwargs):
        super().__init__(**kwargs)
        if torso_init not in TORSO_INITS:
            raise ValueError(f"unknown torso_init {torso_init!r}; choose one of {', '.join(TORSO_INITS)}")

        kind = resolve_kind(kind, obs)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
        action = as_action_spec(action)
        self.kind, self.obs_spec, self.action_spec = kind, obs, action
        self.center_frames = center_frames
        self.dist = for_action_spec(action)
        self.num_actions = action.size if action.is_discrete else None
        torso, lstm_units = NETWORKS[kind]
        policy = PRECISIONS[precision]
        self.mlp = torso == "mlp"
        self.normalize_obs = normalize_obs and self.mlp
        if self.mlp:
            if self.normalize_obs:
                self.obs_norm = RunningObsNorm(obs.shape[0], name="obs_norm", dtype="float32")
            if not mlp_units or min(mlp_units) < 1:
                raise ValueError(f"mlp_units must be one or more positive layer widths, got {mlp_units!r}")
            self.mlp_units = tuple(int(u) for u in mlp_units)
            # Two towers, as attributes each (tf.train.Checkpoint does not see layers in Python lists).
            self.tower_names = tuple(f"{head}_fc{i}" for head in ("policy", "value") for i in range(len(mlp_units)))
            for i, name in enumerate(self.tower_names):
                setattr(self, name, keras.layers.Dense(
                    self.mlp_units[i % len(mlp_units)], activation="tanh", name=name, dtype=policy,
                    kernel_initializer=keras.initializers.Orthogonal(2 ** 0.5)))
            hidden = self.mlp_units[-1]
        else:
            convs, hidden = _TORSOS[torso]
            # Each conv is its own attribute: tf.train.Checkpoint does not see layers held in a Python list,
            # and a checkpoint without them would silently re-initialise the torso on restore.
            self.conv_names = tuple(f"conv{i}" for i in range(len(convs)))
            for name, (f, k, s) in zip(self.conv_names, convs):
                setattr(self, name, keras.layers.Conv2D(f, k, s, activation="relu", name=name, dtype=policy,
                                                        kernel_initializer=_torso_kernel_init(torso_init)))
            _, first_kernel, self.first_stride = convs[0]
            self.space_to_depth = (space_to_depth and first_kernel % self.first_stride == 0
                                   and OBS_SHAPE[1] % self.first_stride == 0)
            if self.space_to_depth:  # conv0 is applied by hand below; build it so its variables exist
                self.conv0.build((None, OBS_SHAPE[1], OBS_SHAPE[2], OBS_SHAPE[0]))
            self.flatten = keras.layers.Flatten(dtype=policy)
            self.hidden = keras.layers.Dense(hidden, activation="relu", name="fc", dtype=policy,
                                             kernel_initializer=_torso_kernel_init(torso_init))
        # The LSTM stays float32 under mixed precision: its state is carried over thousands of steps.
        self.lstm_units = lstm_units
        self.state_size = 2 * lstm_units
        if lstm_units:
            # LayerNorm on the cell's input (Ba et al. 2016). Without it, Pong with RMSProp eps 1e-10 drove the
            # fc features to ~100x their initial size within 3.5M steps: gate pre-activations ~35, a saturated
            # cell, a state-independent policy and no learning (README, A3G features). Normalised input keeps
            # the gates in range whatever the torso's scale.
            self.lstm_input_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="lstm_input_norm",
                                                                   dtype="float32")
            self.lstm_input_norm.build((None, hidden))
            self.lstm = LSTMCore(lstm_units, name="lstm", dtype="float32")
            self.lstm.build((None, hidden))
        # Small policy init keeps the first policy near uniform (high entropy), as in A2C/PPO baselines.
        self.policy_head = keras.layers.Dense(
            action.size, name="policy", kernel_initializer=keras.initializers.Orthogonal(0.01))
        if std_head not in STD_HEADS:
            raise ValueError(f"unknown std_head {std_head!r}; choose one of {', '.join(STD_HEADS)}")
        self.std_head = std_head if not action.is_discrete else None
        if self.std_head == "shared":  # the Gaussian's log-std: learned, the same in every state
            self.log_std = self.add_weight(name="log_std", shape=(action.size,),
                                           initializer=keras.initializers.Constant(log_std_init))
        elif self.std_head == "state":  # a function of the state, starting at log_std_init everywhere
            self.log_std_head = keras.layers.Dense(
                action.size, name="log_std", kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(log_std_init))
        elif self.std_head == "sde":  # gSDE: the log-std of each feature's weight in the noise, per action dimension
            self.sde_log_std = self.add_weight(name="sde_log_std", shape=(lstm_units or hidden, action.size),
                                               initializer=keras.initializers.Constant(log_std_init))
        self.q_head = q_head
        if q_head and action.is_discrete:  # ACER: Q(s, .) for every action, and V(s) = sum_a pi(a|s) Q(s, a)
            self.q_values_head = keras.layers.Dense(action.size, name="q",
                                                    kernel_initializer=keras.initializers.Orthogonal(1.0))
        else:
            self.value_head = keras.layers.Dense(1, name="value", kernel_initializer=keras.initializers.Orthogonal(1.0))
        if q_head and not action.is_discrete:
            # Continuous ACER's stochastic dueling critic (Wang et al. 2016, Section 5): Q~(s, a) = V(s) + A(s, a) -
            # mean_i A(s, u_i), u_i ~ pi. A is one tanh layer as wide as the features, on [features, action].
            features = lstm_units or hidden
            self.advantage_hidden = keras.layers.Dense(features, activation="tanh", name="advantage_fc",
                                                       kernel_initializer=keras.initializers.Orthogonal(2 ** 0.5))
            self.advantage_out = keras.layers.Dense(1, name="advantage",
                                                    kernel_initializer=keras.initializers.Orthogonal(1.0))
            self.advantage_hidden.build((None, features + action.size))
            self.advantage_out.build((None, features))

    def initial_state(self, batch_size: int) -> tf.Tensor:
        return tf.zeros([batch_size, self.state_size], tf.float32)

    def torso(self, obs, frames_in=None) -> tf.Tensor:
        """Observations `[N, *obs_shape]` -> float32 features `[N, hidden]` (for the MLP: the policy tower's
        and the value tower's, concatenated). `frames_in`: `frames_input(obs)`, if the caller already has it."""
        if self.mlp:
            x = tf.cast(obs, tf.float32)
            if self.normalize_obs:
                x = self.obs_norm(x)
            n = len(self.mlp_units)
            towers = []
            for names in (self.tower_names[:n], self.tower_names[n:]):
                h = x
                for name in names:
                    h = getattr(self, name)(h)
                towers.append(tf.cast(h, tf.float32))
            return tf.concat(towers, -1)
        # Heads in float32: a bf16 value (3 significant digits) would blur the n-step targets' differences.
        return tf.cast(self.relu_layers(obs, frames_in)[-1][1], tf.float32)

    def frames_input(self, obs) -> tf.Tensor | None:
        """uint8 frames `[N, C, H, W]` -> the first conv's input `[N, h, w, c]` in the torso's dtype: scaled,
        NHWC (space-to-depth when that is on), centred when --center-frames. It holds no weight, so two networks
        of the same layout (ACER's learner and average network) can share one: this is about half of a replayed
        update's op time at Atari size (docs/throughput.md). None for the MLP (its input is the observation)."""
        if self.mlp:
            return None
        dtype = self.hidden.compute_dtype  # the torso's dtype policy decides: "float32" or "bfloat16"
        if self.space_to_depth:
            x = space_to_depth_input(obs, self.first_stride, dtype)
            if self.center_frames:  # channel (i * block + j) * C + c is a pixel of frame c: tile the C means
                x = x - tf.cast(tf.tile(_frame_means(obs), [1, self.first_stride ** 2])[:, None, None, :], dtype)
            return x
        x = tf.cast(obs, dtype) * tf.cast(1.0 / 255.0, dtype)
        x = tf.transpose(x, [0, 2, 3, 1])  # NHWC: the layout TF's CPU and GPU convs both accept
        if self.center_frames:
            x = x - tf.cast(_frame_means(obs)[:, None, None, :], dtype)
        return x

    def relu_layers(self, obs, frames_in=None) -> list:
        """The frame torso's ReLU outputs in order, [(layer name, [N, ..., units])]: each conv's, then fc's,
        the torso's features. [] for the MLP (tanh towers). `frames_in`: `frames_input(obs)`, if already made."""
        if self.mlp:
            return []
        dtype = self.hidden.compute_dtype
        x = self.frames_input(obs) if frames_in is None else frames_in
        if self.space_to_depth:
            kernel = tf.cast(space_to_depth_kernel(self.conv0.kernel, self.first_stride), dtype)
            x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), tf.cast(self.conv0.bias, dtype)))
            outputs = [("conv0", x)]
            rest = self.conv_names[1:]
        else:
            outputs, rest = [], self.conv_names
        for name in rest:
            x = getattr(self, name)(x)
            outputs.append((name, x))
        outputs.append(("fc", self.hidden(self.flatten(x))))
        return outputs

    def weight_layers(self) -> list:
        """The dense and conv layers, torso first, then the heads present."""
        names = self.tower_names if self.mlp else (*self.conv_names, "hidden")
        heads = ("policy_head", "log_std_head", "q_values_head", "value_head", "advantage_hidden", "advantage_out")
        return [getattr(self, name) for name in names + heads if hasattr(self, name)]

    def update_obs_norm(self, obs, mask):
        """Fold observations `[T, B, n]` where mask `[T, B]` into the running normalisation (a no-op without it)."""
        if self.normalize_obs:
            self.obs_norm.update(tf.reshape(tf.cast(obs, tf.float32), [-1, self.obs_spec.shape[0]]),
                                 tf.reshape(mask, [-1]))

    def _heads(self, x, state) -> AgentOutput:
        """The heads on the core's output `x` (`[..., F]`); `state` is passed through."""
        policy_x, value_x = tf.split(x, 2, axis=-1) if self.mlp else (x, x)
        params, sde_features = self.policy_head(policy_x), None
        if self.std_head == "shared":
            params = tf.concat([params, tf.broadcast_to(self.log_std, tf.shape(params))], -1)
        elif self.std_head == "state":
            log_std = tf.clip_by_value(self.log_std_head(policy_x), LOG_STD_MIN, LOG_STD_MAX)
            params = tf.concat([params, log_std], -1)
        elif self.std_head == "sde":
            # The features only shape the noise: the loss moves L, not the torso (gSDE's learn_features=False).
            sde_features = tf.stop_gradient(policy_x)
            params = tf.concat([params, sde_log_std(sde_features, self.sde_log_std)], -1)
        if self.q_head and self.action_spec.is_discrete:
            q = self.q_values_head(value_x)
            return AgentOutput(params, tf.reduce_sum(tf.nn.softmax(params) * q, -1), state, q, sde_features)
        return AgentOutput(params, tf.squeeze(self.value_head(value_x), -1), state, None, sde_features,
                           value_x if self.q_head else None)

    def advantage(self, critic_features, actions):
        """Continuous ACER's A(s, a): critic_features `[..., F]` (AgentOutput.critic_features) and K actions per
        state `[..., K, D]` -> `[..., K]` float32."""
        shape = tf.concat([tf.shape(actions)[:-1], tf.shape(critic_features)[-1:]], 0)
        features = tf.broadcast_to(tf.expand_dims(critic_features, -2), shape)
        hidden = self.advantage_hidden(tf.concat([features, tf.cast(actions, features.dtype)], -1))
        return tf.squeeze(self.advantage_out(hidden), -1)

    def call(self, obs, state=None) -> AgentOutput:
        """One step for a batch: observations `[B, *obs_shape]`, state `[B, S]` (None = zeros) -> AgentOutput."""
        x = self.torso(obs)
        if state is None:
            state = tf.zeros([tf.shape(obs)[0], self.state_size], tf.float32)
        if self.lstm_units:
            x, state = self.lstm(self.lstm_input_norm(x), state)
        return self._heads(x, state)

    def unroll(self, obs, initial_state, resets, frames_in=None) -> AgentOutput:
        """T steps of B envs: observations `[T, B, *obs_shape]`, state before step 0 `[B, S]`, resets `[T, B]`
        bool (zero the state before step t, as `act` does) -> AgentOutput(policy_params [T, B, P], value [T, B],
        state after the last step [B, S]). The torso runs on all T * B observations at once; only the core
        steps in time. `frames_in`: `frames_input` of the time-major flattened `[T * B, ...]` observations, if
        the caller has it (its first T * B rows serve an unroll over obs[:T])."""
        T, B = tf.shape(obs)[0], tf.shape(obs)[1]
        flat = tf.reshape(obs, tf.concat([[T * B], tf.shape(obs)[2:]], 0))
        x = self.torso(flat, None if frames_in is None else frames_in[:T * B])
        state = initial_state
        if self.lstm_units:
            projected = tf.reshape(self.lstm.project(self.lstm_input_norm(x)), [T, B, 4 * self.lstm_units])

            def step(t, state, outputs):
                state = tf.where(resets[t][:, None], tf.zeros_like(state), state)
                y, state = self.lstm.step(projected[t], state)
                return t + 1, state, outputs.write(t, y)
            _, state, outputs = tf.while_loop(
                lambda t, *_: t < T, step, (0, state, tf.TensorArray(tf.float32, size=T)),
                shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, self.state_size]), None))
            x = outputs.stack()
        else:
            x = tf.reshape(x, [T, B, x.shape[-1]])
        return self._heads(x, state)


def dead_unit_fractions(relu_layers: list) -> dict:
    """{layer name: share of its channels (conv) or units (fc) whose ReLU output is 0 for every observation and
    every position}: units that pass no gradient and, once all are so, a network whose output no longer depends
    on its input. `relu_layers` as PolicyValueNet.relu_layers returns them."""
    fractions = {}
    for name, x in relu_layers:
        per_unit_max = tf.reduce_max(tf.reshape(x, [-1, x.shape[-1]]), axis=0)
        fractions[name] = tf.reduce_mean(tf.cast(per_unit_max <= 0, tf.float32))
    return fractions


def build_network(action: ActionSpec | int, kind: str = "a3c", device: str | None = None,
                  precision: str = "float32", space_to_depth: bool = True, obs: ObsSpec = ATARI_OBS,
                  normalize_obs: bool = False, q_head: bool = False, torso_init: str = "glorot",
                  center_frames: bool = False, log_std_init: float = 0.0, std_head: str = "shared",
                  mlp_units: tuple[int, ...] = MLP_UNITS) -> PolicyValueNet:
    """Create the network for `obs` -> `action` (an int A = A discrete actions) with its variables on `device`
    (default: compute_device())."""
    with tf.device(device or compute_device()):
        net = PolicyValueNet(action, kind, precision, space_to_depth, obs, normalize_obs, q_head, torso_init,
                             center_frames, log_std_init, std_head, mlp_units)
        net(tf.zeros((1,) + tuple(obs.shape), obs.dtype))  # build the variables on that device
        if torso_init == "torch":
            torch_default_init(net)
    return net


def network_for(hp, action: ActionSpec | int, obs: ObsSpec, device: str | None = None, precision: str = "float32",
                q_head: bool = False) -> PolicyValueNet:
    """build_network with the model settings of a run's config `hp` (an hparams.HParams): the one place that maps
    config fields to the network, for training, ACER's average network and export alike."""
    return build_network(action, hp.network, device, precision, obs=obs, normalize_obs=hp.normalize_obs,
                         q_head=q_head, torso_init=hp.torso_init, center_frames=hp.center_frames,
                         log_std_init=hp.log_std_init, std_head=hp.std_head, mlp_units=hp.mlp_units_tuple)
