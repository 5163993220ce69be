"""Shared optimizers: one set of statistics for all learner threads, as in the A3C paper ("shared RMSProp").

Written out (not keras.optimizers) so that the update is a handful of assign ops we can reason about under
concurrent, lock-free use, and so every slot is a plain tf.Variable in the checkpoint.
Owns: the optimizer slots (shared by all threads) and the update rule.
Must not: compute gradients, clip them or decide the learning rate (learner.py and hparams.py do).
"""
from __future__ import annotations

import tensorflow as tf


RMSPROP_INITS = ("zeros", "ones", "debiased")


class SharedOptimizer(tf.Module):
    """`rmsprop`: ms <- decay * ms + (1 - decay) * g^2;  w <- w - lr * g / sqrt(ms + eps)
    (eps inside the square root, as in the A3C paper and TF1's RMSPropOptimizer that tf-a3c-gpu and GA3C used).
    Inside the root, eps floors the denominator at sqrt(eps): with eps = 1e-5 that floor (3.2e-3) is ~100x the
    RMS gradient of most weights of the A3C net on Pong (median sqrt(ms) ~2e-5 for conv0 and fc, read from a
    5.5M-step checkpoint), so RMSProp degenerates into plain SGD with a tiny step. eps = 1e-10 (floor 1e-5)
    is the same as PyTorch's RMSprop(eps=1e-5), the A2C baseline setting, and learned Pong ~3.5x faster per env step.
    `rmsprop_init` sets where ms starts: `zeros` (PyTorch's RMSprop, A3G) makes a weight's first steps
    ~lr / sqrt(1 - decay) = 10x lr in the sign of its gradient, whatever the gradient's size; `ones` (TF1's
    RMSPropOptimizer, OpenAI baselines) makes them ~lr * g, a warm-up over the ~log(g^2)/log(decay) updates ms
    takes to decay to the gradients' scale; `debiased` starts at zeros and divides ms by 1 - decay^t (Adam's
    bias correction), so the first step is lr in sign and the later ones those of `zeros`.
    `adam`: Kingma & Ba 2015 with bias correction, eps outside the square root.
    `amsgrad`: Adam that divides by the running maximum of the second moments instead of the second moment
    (Reddi et al. 2018), so a weight's step size never grows back after a burst of large gradients; A3G's
    `--amsgrad`. Same bias correction as `adam` (A3G / PyTorch form).
    """

    def __init__(self, kind: str, variables, *, decay=0.99, epsilon=1e-5, beta1=0.9, beta2=0.999,
                 rmsprop_init="zeros", device="/CPU:0", name="optimizer"):
        super().__init__(name=name)
        if kind not in ("rmsprop", "adam", "amsgrad"):
            raise ValueError(f"unknown optimizer {kind!r}")
        if rmsprop_init not in RMSPROP_INITS:
            raise ValueError(f"unknown rmsprop_init {rmsprop_init!r}")
        self.kind = kind
        self.debias_second = kind == "rmsprop" and rmsprop_init == "debiased"
        self.decay, self.epsilon, self.beta1, self.beta2 = decay, epsilon, beta1, beta2
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.first = []
        self.second = []
        self.max_second = []
        for v in variables:
            with tf.device(device):
                start = tf.ones_like(v) if kind == "rmsprop" and rmsprop_init == "ones" else tf.zeros_like(v)
                self.second.append(tf.Variable(start, trainable=False, name="second_moment"))
                if kind in ("adam", "amsgrad"):
                    self.first.append(tf.Variable(tf.zeros_like(v), trainable=False, name="first_moment"))
                if kind == "amsgrad":
                    self.max_second.append(tf.Variable(tf.zeros_like(v), trainable=False, name="max_second_moment"))

    def apply(self, grads, variables, learning_rate):
        """One update. Returns the iteration count after it."""
        step = self.iterations.assign_add(1)
        lr = tf.cast(learning_rate, tf.float32)
        if self.kind == "rmsprop":
            debias = 1.0
            if self.debias_second:
                debias = 1.0 - tf.pow(tf.cast(self.decay, tf.float32), tf.cast(step, tf.float32))
            for g, v, ms in zip(grads, variables, self.second):
                ms_new = ms.assign(self.decay * ms + (1.0 - self.decay) * tf.square(g))
                v.assign_sub(lr * g * tf.math.rsqrt(ms_new / debias + self.epsilon))
        else:
            t = tf.cast(step, tf.float32)
            lr_t = lr * tf.sqrt(1.0 - tf.pow(self.beta2, t)) / (1.0 - tf.pow(self.beta1, t))
            maxima = self.max_second or [None] * len(self.second)
            for g, v, m, s, s_max in zip(grads, variables, self.first, self.second, maxima):
                m_new = m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
                s_new = s.assign(self.beta2 * s + (1.0 - self.beta2) * tf.square(g))
                if s_max is not None:
                    s_new = s_max.assign(tf.maximum(s_max, s_new))
                v.assign_sub(lr_t * m_new / (tf.sqrt(s_new) + self.epsilon))
        return step
