"""network: output shapes/dtypes of both torsos, batch independence, and device placement."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import network
from helpers import HANG_GUARD_SCALE

NUM_ACTIONS = 6
KINDS = ["a3c", "nature"]


@pytest.fixture(scope="module", params=KINDS)
def net(request):
    tf.random.set_seed(0)
    return network.build_network(NUM_ACTIONS, request.param, device="/CPU:0")


def _frames(batch, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(batch,) + network.OBS_SHAPE, dtype=np.uint8)


def test_obs_shape_is_stack_first():
    assert network.OBS_SHAPE == (4, 84, 84)


@pytest.mark.parametrize("batch", [1, 5])
def test_output_shapes_and_dtypes(net, batch):
    out = net(tf.constant(_frames(batch)))
    assert isinstance(out, network.AgentOutput)
    assert out.policy_params.shape == (batch, NUM_ACTIONS) and out.policy_params.dtype == tf.float32
    assert out.value.shape == (batch,) and out.value.dtype == tf.float32
    assert out.state.shape == (batch, 0) and out.state.dtype == tf.float32
    assert np.all(np.isfinite(out.policy_params.numpy())) and np.all(np.isfinite(out.value.numpy()))


def test_state_is_passed_through_and_initial_state_is_empty(net):
    assert net.state_size == 0
    init = net.initial_state(3)
    assert init.shape == (3, 0) and init.dtype == tf.float32
    out = net(tf.constant(_frames(3)), init)
    assert out.state.shape == (3, 0)


def test_architecture(net):
    convs = {"a3c": [(16, 8, 4), (32, 4, 2)], "nature": [(32, 8, 4), (64, 4, 2), (64, 3, 1)]}[net.kind]
    assert [(c.filters, c.kernel_size[0], c.strides[0]) for c in (getattr(net, n) for n in net.conv_names)] == convs
    assert net.hidden.units == {"a3c": 256, "nature": 512}[net.kind]
    assert net.policy_head.units == NUM_ACTIONS and net.value_head.units == 1
    assert all(v.dtype == "float32" for v in net.trainable_variables)


def test_initial_policy_is_near_uniform(net):
    """The small orthogonal(0.01) policy init keeps the first policy's entropy close to log(A)."""
    logits = net(tf.constant(_frames(4))).policy_params.numpy()
    p = tf.nn.softmax(logits).numpy()
    entropy = -(p * np.log(p)).sum(-1)
    assert np.all(entropy > 0.99 * np.log(NUM_ACTIONS))


def test_output_does_not_depend_on_batch_composition(net):
    frames = _frames(3, seed=1)
    batched = net(tf.constant(frames))
    for i in range(3):
        single = net(tf.constant(frames[i:i + 1]))
        np.testing.assert_allclose(batched.policy_params.numpy()[i], single.policy_params.numpy()[0],
                                   atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(batched.value.numpy()[i], single.value.numpy()[0], atol=1e-5, rtol=1e-5)
    # and distinct frames give distinct values (the input is actually used)
    assert len(set(np.round(batched.value.numpy(), 7))) == 3


def test_uint8_input_is_scaled_inside_the_model(net):
    """Feeding uint8 frames equals feeding the same frames as float32 0..255 (the cast/scale is in-graph)."""
    frames = _frames(2, seed=2)
    a = net(tf.constant(frames)).value.numpy()
    b = net(tf.constant(frames.astype(np.float32))).value.numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="resnet"):
        network.PolicyValueNet(NUM_ACTIONS, "resnet")


def test_compute_device_without_gpu():
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is present")
    assert network.compute_device() == "/CPU:0"


_DEVICE_SCRIPT = textwrap.dedent("""
    import tensorflow as tf
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import network
    net = network.build_network(6, "a3c", device="/CPU:1")
    devices = set()
    for v in net.variables:
        tf_var = getattr(v, "value", v)  # Keras 3 Variable wraps a tf.Variable in .value
        devices.add(tf_var.device)
    print("DEVICES", sorted(devices))
    assert devices and all(d.endswith("/device:CPU:1") for d in devices), devices
    if not tf.config.list_logical_devices("GPU"):
        assert network.compute_device() == "/CPU:0", network.compute_device()
    # the net still runs when called from the default device
    out = net(tf.zeros((2, 4, 84, 84), tf.uint8))
    assert out.policy_params.shape == (2, 6)
    print("OK")
""")


def test_variables_are_placed_on_the_requested_device():
    """Logical devices must be configured before TF initialises, hence a fresh interpreter."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120 * HANG_GUARD_SCALE)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "OK" in proc.stdout


def _copy_weights(src, dst):
    assert [v.shape for v in src.variables] == [v.shape for v in dst.variables]
    for a, b in zip(src.variables, dst.variables):
        b.assign(a)


@pytest.mark.parametrize("kind", KINDS)
def test_space_to_depth_first_conv_is_the_same_function(kind):
    """The 2x2 stride-1 conv over the space-to-depth view must equal Keras' 8x8 stride-4 conv with the same
    kernel variable - forward and gradient - or checkpoints would change meaning.

    Seeded: with fresh random weights, once in many runs a ReLU's input fell within rounding of 0 and the two
    convolutions put it on different sides, which changes every gradient upstream of that unit (seen as >= 1e-5
    differences on 251 kernel elements of conv0, nearly one output channel's 8 x 8 x 4, where 2e-7 is normal)."""
    tf.keras.utils.set_random_seed(0)
    plain = network.build_network(NUM_ACTIONS, kind, device="/CPU:0", space_to_depth=False)
    s2d = network.build_network(NUM_ACTIONS, kind, device="/CPU:0", space_to_depth=True)
    assert s2d.space_to_depth and not plain.space_to_depth
    _copy_weights(plain, s2d)
    obs = tf.constant(_frames(3, seed=1))

    def grads(net):
        with tf.GradientTape() as tape:
            out = net(obs)
            loss = tf.reduce_sum(out.policy_params ** 2) + tf.reduce_sum(out.value)
        return out, tape.gradient(loss, net.trainable_variables)
    (out_p, g_p), (out_s, g_s) = grads(plain), grads(s2d)
    np.testing.assert_allclose(out_s.policy_params.numpy(), out_p.policy_params.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out_s.value.numpy(), out_p.value.numpy(), rtol=1e-4, atol=1e-6)
    for a, b in zip(g_p, g_s):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5)


def test_space_to_depth_matches_a_naive_strided_conv():
    """Against a loop written from the conv definition, not against another TF conv."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (2, 4, 12, 12), dtype=np.uint8)
    kernel = rng.normal(size=(8, 8, 4, 3)).astype(np.float32)
    x = network.space_to_depth_input(tf.constant(obs), 4, tf.float32)
    w = network.space_to_depth_kernel(tf.constant(kernel), 4)
    got = tf.nn.conv2d(x, w, 1, "VALID").numpy()
    frames = obs.astype(np.float32) / 255.0  # [B, C, H, W]
    want = np.zeros((2, 2, 2, 3), np.float32)
    for b in range(2):
        for oy in range(2):
            for ox in range(2):
                patch = frames[b, :, 4 * oy:4 * oy + 8, 4 * ox:4 * ox + 8]  # [C, 8, 8]
                want[b, oy, ox] = np.einsum("cij,ijcf->f", patch, kernel)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_keeps_float32_weights_outputs_and_gradients(kind):
    full = network.build_network(NUM_ACTIONS, kind, device="/CPU:0")
    mixed = network.build_network(NUM_ACTIONS, kind, device="/CPU:0", precision="bfloat16")
    _copy_weights(full, mixed)
    assert all(v.dtype == tf.float32 for v in mixed.variables)
    obs = tf.constant(_frames(4, seed=2))
    with tf.GradientTape() as tape:
        out = mixed(obs)
        loss = tf.reduce_sum(out.value) + tf.reduce_sum(out.policy_params ** 2)
    grads = tape.gradient(loss, mixed.trainable_variables)
    assert out.policy_params.dtype == tf.float32 and out.value.dtype == tf.float32
    assert all(g.dtype == tf.float32 and np.all(np.isfinite(g.numpy())) for g in grads)
    ref = full(obs)
    # bf16 keeps 8 significant bits: ~1% relative error through the torso.
    np.testing.assert_allclose(out.value.numpy(), ref.value.numpy(), rtol=0.05, atol=0.02)
    np.testing.assert_allclose(out.policy_params.numpy(), ref.policy_params.numpy(), rtol=0.05, atol=0.02)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        network.PolicyValueNet(NUM_ACTIONS, "a3c", precision="float16")


def test_cpu_bf16_flag_is_read_from_the_flags_line_only():
    amd = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    assert network.cpu_bf16_flag(amd) == "avx512_bf16"
    assert network.cpu_bf16_flag("flags\t: fpu avx512f amx_tile amx_bf16 avx512_bf16") == "amx_bf16"
    assert network.cpu_bf16_flag("flags\t: fpu sse4_2 avx2 fma") is None  # e.g. the EPYC without AVX-512
    assert network.cpu_bf16_flag("model name\t: avx512_bf16 lookalike\nflags\t: fpu avx2") is None
    assert network.cpu_bf16_flag("") is None


def test_auto_precision_is_bfloat16_only_where_the_device_has_bf16_units(monkeypatch):
    monkeypatch.setattr(network, "bf16_units", lambda device: "avx512_bf16")
    assert network.resolve_precision("auto", "/CPU:0") == "bfloat16"
    monkeypatch.setattr(network, "bf16_units", lambda device: None)
    assert network.resolve_precision("auto", "/CPU:0") == "float32"
    assert network.resolve_precision("bfloat16", "/CPU:0") == "bfloat16"  # an explicit choice is kept
    assert network.resolve_precision("float32", "/CPU:0") == "float32"
    with pytest.raises(ValueError, match="auto"):
        network.resolve_precision("float16", "/CPU:0")


def test_auto_precision_on_a_gpu_asks_the_gpu_the_replica_runs_on(monkeypatch):
    # Two physical GPUs, a Volta (7.0, no bf16 units) split into two logical devices and an Ampere (8.0):
    # logical /GPU:0 and /GPU:1 are the Volta, /GPU:2 the Ampere.
    volta, ampere = "volta", "ampere"
    capability = {volta: (7, 0), ampere: (8, 0)}
    monkeypatch.setattr(network.tf.config, "list_physical_devices", lambda kind: [volta, ampere])
    monkeypatch.setattr(network.tf.config, "get_logical_device_configuration",
                        lambda gpu: ["half", "half"] if gpu == volta else None)
    monkeypatch.setattr(network.tf.config.experimental, "get_device_details",
                        lambda gpu: {"compute_capability": capability[gpu]})
    assert [network.physical_gpu(d) for d in ("/GPU:0", "/GPU:1", "/device:GPU:2", "/GPU")] == \
        [volta, volta, ampere, volta]
    assert network.physical_gpu("/GPU:3") is None
    assert network.bf16_units("/GPU:1") is None  # before: any Ampere in the machine made every replica bf16
    assert network.bf16_units("/device:GPU:2") == "GPU compute capability 8.0"
    assert network.resolve_precision("auto", "/GPU:0") == "float32"
    assert network.resolve_precision("auto", "/GPU:2") == "bfloat16"


def test_orthogonal_torso_init_has_the_relu_gain_and_glorot_stays_the_default():
    ortho = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", torso_init="orthogonal")
    for layer in (ortho.conv0, ortho.conv1, ortho.hidden):
        w = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])  # [fan_in, units]: orthogonal columns
        np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(w.shape[1]), atol=1e-4)
    default = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0")
    fan_in, fan_out = 8 * 8 * 4, 8 * 8 * 16
    assert np.abs(default.conv0.kernel.numpy()).max() <= np.sqrt(6 / (fan_in + fan_out)) + 1e-6  # Glorot-uniform
    with pytest.raises(ValueError, match="torso_init"):
        network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", torso_init="he")


@pytest.mark.parametrize("std_head", ["sde", "state"])
def test_torch_init_draws_every_layer_as_pytorch_within_its_fan_in_bound(std_head):
    """--torso-init torch (the RL Zoo's ortho_init=False): kernel and bias of every dense layer, heads included,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), written from nn.Linear.reset_parameters; a state log-std head keeps its
    start at --log-std-init, gSDE's L its constant."""
    tf.keras.utils.set_random_seed(0)
    box = network.ActionSpec("box", 4, (-1.0,) * 4, (1.0,) * 4)
    flat = network.ObsSpec((24,), "float32")
    net = network.build_network(box, "mlp", "/CPU:0", obs=flat, torso_init="torch", mlp_units=(256, 128),
                                std_head=std_head, log_std_init=-2.0)
    fan_ins = {"policy_fc0": 24, "policy_fc1": 256, "value_fc0": 24, "value_fc1": 256, "policy": 128, "value": 128}
    for layer in net.weight_layers():
        if layer.name == "log_std":
            np.testing.assert_array_equal(layer.kernel.numpy(), 0.0)
            np.testing.assert_array_equal(layer.bias.numpy(), -2.0)
            continue
        bound = fan_ins.pop(layer.name) ** -0.5
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound, layer.name
        assert np.abs(bias).max() > 0, layer.name  # drawn, not Keras' zeros
        np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.15)  # uniform on [-b, b]: std b/sqrt(3)
    assert not fan_ins, f"layers not drawn: {fan_ins}"
    if std_head == "sde":
        np.testing.assert_array_equal(net.sde_log_std.numpy(), -2.0)
    conv = network.build_network(NUM_ACTIONS, "a3c", "/CPU:0", torso_init="torch")
    assert np.abs(conv.conv0.kernel.numpy()).max() <= (8 * 8 * 4) ** -0.5  # a conv's fan-in counts its window
    assert np.abs(conv.hidden.kernel.numpy()).max() <= (9 * 9 * 32) ** -0.5


def test_mlp_units_shape_both_towers_and_bad_widths_are_refused():
    flat = network.ObsSpec((6,), "float32")
    net = network.build_network(3, "mlp", "/CPU:0", obs=flat, mlp_units=(32, 16, 8))
    shapes = [tuple(layer.kernel.shape) for layer in net.weight_layers()]
    assert shapes == [(6, 32), (32, 16), (16, 8), (6, 32), (32, 16), (16, 8), (8, 3), (8, 1)], shapes
    assert net(tf.zeros((2, 6))).policy_params.shape == (2, 3)
    with pytest.raises(ValueError, match="mlp_units"):
        network.build_network(3, "mlp", "/CPU:0", obs=flat, mlp_units=(32, 0))


@pytest.mark.parametrize("space_to_depth", [True, False])
def test_centred_frames_ignore_the_background_level(space_to_depth):
    """--center-frames: adding a constant to every pixel of a frame (a brighter background) changes nothing, as
    the torso sees each frame minus its mean; without it the first layer's output moves."""
    obs = np.random.default_rng(2).integers(0, 200, size=(3,) + network.OBS_SHAPE, dtype=np.uint8)
    brighter = obs + np.uint8(40)
    centred = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", center_frames=True,
                                    space_to_depth=space_to_depth)
    plain = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", space_to_depth=space_to_depth)
    _copy_weights(centred, plain)
    np.testing.assert_allclose(centred.torso(brighter).numpy(), centred.torso(obs).numpy(), atol=1e-5)
    assert np.abs(plain.torso(brighter).numpy() - plain.torso(obs).numpy()).max() > 1e-3


@pytest.mark.parametrize("space_to_depth", [True, False])
@pytest.mark.parametrize("center_frames", [True, False])
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_an_unroll_from_a_shared_frames_input_is_the_same_unroll(space_to_depth, center_frames, precision):
    """frames_input is the torso's weight-free preprocessing: made once for T + 1 steps, it serves an unroll over
    all of them and one over the first T, bit for bit as each unroll computing its own."""
    T, B = 3, 2
    obs = tf.constant(_frames((T + 1) * B, seed=6).reshape((T + 1, B) + network.OBS_SHAPE))
    net = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", precision=precision,
                                space_to_depth=space_to_depth, center_frames=center_frames)
    shared = net.frames_input(tf.reshape(obs, (-1,) + network.OBS_SHAPE))
    state, resets = tf.zeros((B, 0)), tf.zeros((T + 1, B), tf.bool)
    for steps in (T + 1, T):
        want = net.unroll(obs[:steps], state, resets[:steps])
        got = net.unroll(obs[:steps], state, resets[:steps], shared)
        np.testing.assert_array_equal(got.policy_params.numpy(), want.policy_params.numpy())
        np.testing.assert_array_equal(got.value.numpy(), want.value.numpy())
    assert network.build_network(NUM_ACTIONS, "mlp", obs=network.ObsSpec((8,), "float32")).frames_input(
        tf.zeros((2, 8))) is None


def test_centred_frames_are_the_same_function_with_and_without_space_to_depth():
    obs = tf.constant(_frames(3, seed=4))
    s2d = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", center_frames=True)
    plain = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", center_frames=True, space_to_depth=False)
    _copy_weights(s2d, plain)
    # Written out: frame c's mean over its 84 x 84 pixels, subtracted before conv0.
    x = obs.numpy().astype(np.float64) / 255.0
    conv0_by_hand = tf.nn.relu(tf.nn.conv2d(
        tf.constant(np.transpose(x - x.mean(axis=(2, 3), keepdims=True), [0, 2, 3, 1]), tf.float32),
        s2d.conv0.kernel, 4, "VALID") + s2d.conv0.bias)
    np.testing.assert_allclose(s2d.relu_layers(obs)[0][1].numpy(), conv0_by_hand.numpy(), atol=1e-5)
    np.testing.assert_allclose(plain.relu_layers(obs)[0][1].numpy(), conv0_by_hand.numpy(), atol=1e-5)
    np.testing.assert_allclose(s2d(obs).value.numpy(), plain(obs).value.numpy(), atol=1e-5)


def test_centring_has_the_same_gradients_with_and_without_space_to_depth():
    """The space-to-depth path subtracts each frame's mean tiled over its 16 channels of the 21x21x64 view; the
    plain path subtracts it from the 84x84 frames. Same function, so the same gradient for every variable."""
    obs = tf.constant(_frames(3, seed=5))
    s2d = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", center_frames=True)
    plain = network.build_network(NUM_ACTIONS, "a3c", device="/CPU:0", center_frames=True, space_to_depth=False)
    _copy_weights(s2d, plain)
    grads = []
    for net in (s2d, plain):
        with tf.GradientTape() as tape:
            out = net(obs)
            loss = tf.reduce_sum(out.value ** 2) + tf.reduce_sum(tf.nn.log_softmax(out.policy_params) ** 2)
        grads.append(tape.gradient(loss, net.trainable_variables))
    assert len(grads[0]) == len(grads[1]) and all(g is not None for g in grads[0])
    for var, g_s2d, g_plain in zip(s2d.trainable_variables, *grads):
        np.testing.assert_allclose(g_s2d.numpy(), g_plain.numpy(), rtol=1e-4, atol=1e-6, err_msg=var.path)
