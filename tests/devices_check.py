"""Test driver (not a test): the learner on 3 logical CPU devices, in a fresh interpreter because logical devices
must be configured before TensorFlow initialises. Prints OK; any failed check raises. Run by test_devices.py."""
import os
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 3)

import numpy as np  # noqa: E402

import hparams  # noqa: E402
from batch_agents import Rollout  # noqa: E402
from errors import ConfigError  # noqa: E402
from learner import A3CLearner  # noqa: E402

NETWORK = sys.argv[1] if len(sys.argv) > 1 else "a3c"


def device_of(v):
    return v.device if isinstance(v, tf.Variable) else v.value.device  # Keras 3 Variables wrap a tf.Variable


def values(variables):
    return [v.numpy().copy() for v in variables]


def rollout(seed, state_size, T=5, B=3):
    rng = np.random.default_rng(seed)
    return Rollout(rng.integers(0, 256, (T, B, 4, 84, 84), dtype=np.uint8), rng.integers(0, 4, (T, B)).astype(np.int32),
                   rng.normal(size=(T, B)).astype(np.float32), rng.random((T, B)) < 0.2, np.zeros((T, B), bool),
                   np.ones((T, B), bool), rng.random((T, B)) < 0.2, np.zeros((B, state_size), np.float32),
                   rng.normal(size=B).astype(np.float32))


hp = hparams.HParams(devices="CPU:1, cpu:2", threads=4, network=NETWORK, optimizer="adam")
learner = A3CLearner(hp, 4)
assert learner.devices == ["/device:CPU:1", "/device:CPU:2"], learner.devices
shared, replica = learner.net, learner.replicas[1]
S = shared.state_size

# 1. Where things live: shared weights and optimizer statistics on the first device, the replica on the second.
assert all(device_of(v).endswith("CPU:1") for v in shared.variables)
assert all(device_of(v).endswith("CPU:1") for v in learner.optimizer.first + learner.optimizer.second)
assert all(device_of(v).endswith("CPU:2") for v in replica.variables)
# ... and the ops: thread 1 (device 2) runs its forward and backward pass there, the update on device 1.
graph = learner.thread_train_steps[1].get_concrete_function().graph
convs = [op for op in graph.get_operations() if op.type.startswith("Conv2D")]
assert convs and all(op.device.endswith("CPU:2") for op in convs), [(op.type, op.device) for op in convs]
update = [op for op in graph.get_operations() if op.type in ("If", "StatelessIf")]
assert len(update) == 1 and update[0].device.endswith("CPU:1"), [(op.type, op.device) for op in update]
act_convs = [op for op in learner.acts[1].get_concrete_function().graph.get_operations() if op.type == "Conv2D"]
assert act_convs and all(op.device.endswith("CPU:2") for op in act_convs)
assert [op.device for op in learner.acts[0].get_concrete_function().graph.get_operations()
        if op.type == "Conv2D"][0].endswith("CPU:1")

# 2. The replica starts as a copy, and a refresh brings it up to date after updates.
for a, b in zip(values(shared.variables), values(replica.variables)):
    np.testing.assert_array_equal(a, b)

# 3. Every thread's update reaches the shared variables; a replica changes only when refreshed.
for thread in range(4):
    before_shared, before_replica = values(shared.variables), values(replica.variables)
    learner.refresh(thread)
    if thread % 2 == 1:  # device 2: the refresh brought the replica to the shared weights
        for a, b in zip(before_shared, values(replica.variables)):
            np.testing.assert_array_equal(a, b)
    metrics = learner.train_on(rollout(thread, S), 1e-3, thread=thread)
    assert metrics["applied"] and int(metrics["iteration"]) == thread + 1, metrics
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before_shared, values(shared.variables))), thread
    if thread % 2 == 0:  # device 1 trains the shared net itself; device 2's replica is left alone
        for a, b in zip(values(replica.variables), before_replica):
            np.testing.assert_array_equal(a, b)
learner.refresh(1)
for a, b in zip(values(shared.variables), values(replica.variables)):
    np.testing.assert_array_equal(a, b)

# 4. The replica computes the same update as the shared net would (same weights, same rollout).
start, slots = values(shared.variables), values(learner.optimizer.variables)


def restart():
    for v, x in zip(shared.variables, start):
        v.assign(x)
    for v, x in zip(learner.optimizer.variables, slots):
        v.assign(x)
    learner.refresh(1)


restart()
learner.train_on(rollout(99, S), 1e-3, thread=1)
via_replica = values(shared.variables)
restart()
learner.train_on(rollout(99, S), 1e-3, thread=0)
for a, b in zip(via_replica, values(shared.variables)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

# 5. A device that does not exist is refused in one line.
try:
    A3CLearner(hparams.HParams(devices="GPU:0"), 4)
    raise AssertionError("a missing device was accepted")
except ConfigError as e:
    assert "device 'GPU:0' does not exist" in str(e) and "\n" not in str(e), e

# 6. A whole run on two devices (fake env): every update of both threads is applied to the shared weights.
import tempfile  # noqa: E402

from helpers import make_trainer  # noqa: E402

trainer = make_trainer(tempfile.mkdtemp(), devices="CPU:1,CPU:2", network=NETWORK, total_env_steps=100)
assert trainer.learner.devices == ["/device:CPU:1", "/device:CPU:2"]
assert trainer.run() == 0
assert trainer.counters.updates == int(trainer.learner.optimizer.iterations.numpy()) == 10, trainer.counters.updates
assert "network on /device:CPU:1, /device:CPU:2" in trainer.out.getvalue()

params = sum(int(np.prod(v.shape)) for v in shared.trainable_variables)
print(f"PARAMS {params} BYTES {4 * params}")
print("OK")
