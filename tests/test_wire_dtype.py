"""--wire-dtype and the one-call set_weights: what a push and a pull carry, against float32 (learner.py; no Ray).

A bfloat16 / float16 gradient is the float32 one rounded once; the server casts it back and applies in float32,
so a copy fed the rounded gradient by hand ends with the same weights. A pull in bfloat16 rounds each weight to
8 bits of mantissa and keeps the observation statistics exact.
"""
import dataclasses

import numpy as np
import pytest

import hparams
from errors import ConfigError


def _learners(wire, normalize_obs=False):
    from learner import make_learner
    from specs import ObsSpec, discrete
    hp = dataclasses.replace(hparams.HParams(), env_id="CartPole-v1", network="mlp", executor="ray",
                             wire_dtype=wire, normalize_obs=normalize_obs)
    spec = (ObsSpec((4,), "float32"), discrete(2))
    a, b = make_learner(hp, spec[1], obs=spec[0]), make_learner(hp, spec[1], obs=spec[0])
    b.set_weights(a.get_weights())
    return hp, a, b


def _rollout(learner):
    import envs
    from batch_agents import BatchAgents
    hp = dataclasses.replace(hparams.HParams(), env_id="CartPole-v1")
    agents = BatchAgents(envs.make_vector_env(hp, 4), seed=0)
    try:
        return agents.collect(learner.policy(), 5)[0]
    finally:
        agents.close()


@pytest.mark.parametrize("wire, mantissa_bits", [("bfloat16", 8), ("float16", 11)])
def test_a_narrow_wire_gradient_is_the_float32_one_rounded_once_and_applied_in_float32(wire, mantissa_bits):
    _, full, _ = _learners("float32")
    _, narrow, mirror = _learners(wire)
    narrow.set_weights(full.get_weights())
    mirror.set_weights(full.get_weights())
    rollout = _rollout(full)
    g32, _ = full.gradients_on(rollout)
    g_wire, metrics = narrow.gradients_on(rollout)
    assert metrics["applied"]
    assert all(str(g.dtype) == wire for g in g_wire)
    assert sum(g.nbytes for g in g_wire) * 2 == sum(g.nbytes for g in g32)
    for a, b in zip(g_wire, g32):
        a = np.asarray(a, np.float32)
        np.testing.assert_allclose(a, b, rtol=2.0 ** -(mantissa_bits - 1), atol=1e-7)  # rounded once, no more
    narrow.apply_gradients(g_wire, 1e-3)
    start = [w.copy() for w in mirror.get_weights()]
    # By hand: the rounded gradient in float32 through a float32 server gives the same update.
    import tensorflow as tf
    mirror.optimizer.apply([tf.constant(np.asarray(g, np.float32)) for g in g_wire],
                           mirror.net.trainable_variables, 1e-3)
    for a, b, s in zip(narrow.get_weights(), mirror.get_weights(), start):
        assert a.dtype == np.float32 and not np.array_equal(a, s)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_a_bfloat16_pull_rounds_the_weights_and_keeps_the_observation_statistics_exact():
    _, server, worker = _learners("bfloat16", normalize_obs=True)
    rollout = _rollout(server)
    server.update_obs_norm(rollout.obs, rollout.valid)
    sent = server.wire_weights()
    kinds = [(v.trainable, str(w.dtype)) for v, w in zip(server.net.variables, sent)]
    assert {k for k in kinds} == {(True, "bfloat16"), (False, "float32")}
    worker.set_weights(sent)
    for v, got, want in zip(server.net.variables, worker.get_weights(), server.get_weights()):
        if v.trainable:
            np.testing.assert_allclose(got, want, rtol=2.0 ** -8, atol=1e-30)
        else:
            assert np.array_equal(got, want)  # mean, var, count: exact


def test_set_weights_is_one_call_that_refuses_a_wrong_count():
    _, a, b = _learners("float32")
    weights = [w + 1.0 for w in a.get_weights()]
    b.set_weights(weights)
    assert all(np.array_equal(x, y) for x, y in zip(b.get_weights(), weights))
    assert len(b._assigns) == 1
    b.set_weights([w - 1.0 for w in weights])  # the same dtypes: the traced assign is reused
    assert len(b._assigns) == 1
    with pytest.raises(ValueError, match="arrays for"):
        b.set_weights(weights[:-1])


@pytest.mark.parametrize("flags, needle", [
    (dict(wire_dtype="bfloat16"), "--wire-dtype bfloat16 needs --executor ray"),
    (dict(wire_dtype="int8", executor="ray"), "--wire-dtype must be one of float32, bfloat16, float16"),
])
def test_bad_wire_flags_are_one_clear_config_error(flags, needle):
    with pytest.raises(ConfigError, match=needle):
        hparams.validate(dataclasses.replace(hparams.HParams(), **flags))
