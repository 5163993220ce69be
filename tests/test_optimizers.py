"""SharedOptimizer against NumPy implementations of its documented update rules (and against Keras)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from optimizers import SharedOptimizer

W0 = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -0.75]], np.float32)
B0 = np.array([0.1, -0.2], np.float32)
GRADS = np.random.default_rng(0).normal(size=(3, 2, 3)).astype(np.float32)  # 3 steps of gradients
B_GRADS = np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32)
LRS = [0.01, 0.005, 0.02]


def np_rmsprop(w, grads, lrs, decay, eps, init="zeros"):
    """ms <- decay * ms + (1 - decay) * g^2;  w <- w - lr * g / sqrt(ms_hat + eps), where ms starts at 0 (or 1
    for init "ones") and ms_hat = ms, or ms / (1 - decay^t) at update t = 1, 2, ... for init "debiased"."""
    w = w.astype(np.float64)
    ms = np.ones_like(w) if init == "ones" else np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        ms = decay * ms + (1 - decay) * g.astype(np.float64) ** 2
        ms_hat = ms / (1 - decay ** t) if init == "debiased" else ms
        w = w - lr * g / np.sqrt(ms_hat + eps)
    return w, ms


def np_adam(w, grads, lrs, beta1, beta2, eps):
    """Kingma & Ba 2015, bias-corrected, in the paper's efficient form (end of Section 2), eps outside the sqrt:
    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  lr_t = lr sqrt(1-b2^t) / (1-b1^t);
    w <- w - lr_t m / (sqrt(v) + eps)
    """
    w, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = g.astype(np.float64)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    return w, m, v


def np_amsgrad(w, grads, lrs, beta1, beta2, eps):
    """Reddi et al. 2018 (AMSGrad) with Adam's bias correction, as A3G and PyTorch apply it:
    as Adam, but  v_max <- max(v_max, v)  and  w <- w - lr_t m / (sqrt(v_max) + eps)."""
    w, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    v_max = np.zeros_like(v)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = g.astype(np.float64)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        v_max = np.maximum(v_max, v)
        lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        w = w - lr_t * m / (np.sqrt(v_max) + eps)
    return w, m, v, v_max


def _run(kind, graph, variable_type=tf.Variable, lrs=LRS, **kw):
    w, b = variable_type(W0), variable_type(B0)
    opt = SharedOptimizer(kind, [w, b], **kw)

    def apply(g, gb, lr):  # variables captured by closure, as in a3c.Learner.train_step
        return opt.apply([g, gb], [w, b], lr)

    if graph:
        apply = tf.function(apply)
    steps = [int(apply(tf.constant(g), tf.constant(gb), tf.constant(lr))) for g, gb, lr in zip(GRADS, B_GRADS, lrs)]
    assert steps == [1, 2, 3]
    assert int(opt.iterations.numpy()) == 3
    return opt, np.asarray(w.numpy()), np.asarray(b.numpy())


# A large epsilon (the A3C paper's 0.1) makes "eps inside vs outside the sqrt" clearly visible.
@pytest.mark.parametrize("eps", [1e-5, 0.1])
@pytest.mark.parametrize("graph", [False, True])
def test_rmsprop_matches_numpy(eps, graph):
    opt, w, b = _run("rmsprop", graph, decay=0.9, epsilon=eps)
    w_exp, ms_exp = np_rmsprop(W0, GRADS, LRS, 0.9, eps)
    b_exp, _ = np_rmsprop(B0, B_GRADS, LRS, 0.9, eps)
    np.testing.assert_allclose(w, w_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, b_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.second[0].numpy(), ms_exp, rtol=1e-5, atol=1e-7)
    assert opt.first == []


@pytest.mark.parametrize("init", ["ones", "debiased"])
@pytest.mark.parametrize("graph", [False, True])
def test_rmsprop_second_moment_start_matches_numpy(init, graph):
    opt, w, b = _run("rmsprop", graph, decay=0.9, epsilon=1e-8, rmsprop_init=init)
    w_exp, ms_exp = np_rmsprop(W0, GRADS, LRS, 0.9, 1e-8, init)
    b_exp, _ = np_rmsprop(B0, B_GRADS, LRS, 0.9, 1e-8, init)
    np.testing.assert_allclose(w, w_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, b_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.second[0].numpy(), ms_exp, rtol=1e-5, atol=1e-7)
    w_zeros, _ = np_rmsprop(W0, GRADS, LRS, 0.9, 1e-8)
    assert np.abs(w_exp - w_zeros).min() > 1e-4  # each start really changes every weight's path


def test_first_rmsprop_step_by_start():
    """What the option is for: from zeros the first step is lr / sqrt(1 - decay) in the gradient's sign, whatever
    its size (10x lr at decay 0.99); debiased, lr in sign; from ones, about lr * g."""
    g = np.array([1e-3, -3e-2, 2.0], np.float32)
    steps = {}
    for init in ("zeros", "debiased", "ones"):
        w = tf.Variable(np.zeros(3, np.float32))
        SharedOptimizer("rmsprop", [w], decay=0.99, epsilon=1e-14, rmsprop_init=init).apply([tf.constant(g)], [w], 1e-3)
        steps[init] = -w.numpy()
    np.testing.assert_allclose(steps["zeros"], 1e-2 * np.sign(g), rtol=1e-3)
    np.testing.assert_allclose(steps["debiased"], 1e-3 * np.sign(g), rtol=1e-3)
    np.testing.assert_allclose(steps["ones"], 1e-3 * g / np.sqrt(0.99 + 0.01 * g.astype(np.float64) ** 2 + 1e-14),
                               rtol=1e-4)


def test_unknown_rmsprop_start_is_refused():
    with pytest.raises(ValueError, match="rmsprop_init"):
        SharedOptimizer("rmsprop", [tf.Variable(W0)], rmsprop_init="random")


@pytest.mark.parametrize("eps", [1e-5, 0.1])
@pytest.mark.parametrize("graph", [False, True])
def test_adam_matches_numpy(eps, graph):
    opt, w, b = _run("adam", graph, beta1=0.8, beta2=0.95, epsilon=eps)
    w_exp, m_exp, v_exp = np_adam(W0, GRADS, LRS, 0.8, 0.95, eps)
    b_exp, _, _ = np_adam(B0, B_GRADS, LRS, 0.8, 0.95, eps)
    np.testing.assert_allclose(w, w_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, b_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.first[0].numpy(), m_exp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(opt.second[0].numpy(), v_exp, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("graph", [False, True])
def test_amsgrad_matches_numpy_and_differs_from_adam(graph):
    # A burst of large gradients, then small ones: the second moment decays, its maximum does not.
    grads = GRADS * np.array([10.0, 0.1, 0.1], np.float32)[:, None, None]
    w = tf.Variable(W0)
    opt = SharedOptimizer("amsgrad", [w], beta1=0.8, beta2=0.5, epsilon=1e-8)
    apply = tf.function(lambda g, lr: opt.apply([g], [w], lr)) if graph else (lambda g, lr: opt.apply([g], [w], lr))
    for g, lr in zip(grads, LRS):
        apply(tf.constant(g), tf.constant(lr))
    w_exp, m_exp, v_exp, v_max_exp = np_amsgrad(W0, grads, LRS, 0.8, 0.5, 1e-8)
    np.testing.assert_allclose(w.numpy(), w_exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.first[0].numpy(), m_exp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(opt.second[0].numpy(), v_exp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(opt.max_second[0].numpy(), v_max_exp, rtol=1e-5, atol=1e-7)
    assert np.all(v_max_exp > 2 * v_exp)  # the fixture really exercises the maximum
    w_adam, _, _ = np_adam(W0, grads, LRS, 0.8, 0.5, 1e-8)
    assert np.abs(w.numpy() - w_adam).max() > 1e-3


@pytest.mark.parametrize("kind", ["rmsprop", "adam", "amsgrad"])
def test_matches_keras_optimizer_on_keras_variables(kind):
    """Same numbers as keras.optimizers.RMSprop (rho; eps inside the sqrt) / keras.optimizers.Adam (eps hat),
    and it works in a tf.function on the Keras 3 variables the network actually has."""
    kw = dict(decay=0.9, epsilon=0.1) if kind == "rmsprop" else dict(beta1=0.8, beta2=0.95, epsilon=0.1)
    _, w, b = _run(kind, graph=True, variable_type=keras.Variable, lrs=[0.01] * 3, **kw)
    k_opt = (keras.optimizers.RMSprop(learning_rate=0.01, rho=0.9, epsilon=0.1) if kind == "rmsprop" else
             keras.optimizers.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=0.1,
                                   amsgrad=kind == "amsgrad"))
    w_ref, b_ref = keras.Variable(W0), keras.Variable(B0)
    for g, gb in zip(GRADS, B_GRADS):
        k_opt.apply_gradients([(tf.constant(g), w_ref), (tf.constant(gb), b_ref)])
    np.testing.assert_allclose(w, w_ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, b_ref.numpy(), rtol=1e-5, atol=1e-6)


def test_slots_are_zero_initialised_and_on_the_requested_device():
    w = tf.Variable(W0)
    opt = SharedOptimizer("adam", [w], device="/CPU:0")
    assert int(opt.iterations.numpy()) == 0
    for slot in opt.first + opt.second:
        assert slot.shape == w.shape and not slot.trainable
        assert not np.any(slot.numpy())
        assert slot.device.endswith("CPU:0")
    # Every slot is tracked by the tf.Module, so it is saved in the checkpoint.
    assert len(opt.variables) == 1 + 2


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="sgd"):
        SharedOptimizer("sgd", [tf.Variable(W0)])
