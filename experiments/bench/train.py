"""Train step and eval throughput at batch 128 on the seed's CNN (the baseline figures):
the compiled steps `jaxviz.train.fit` runs, every tensor an argument."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.bench import harness
from jaxviz import train
from jaxviz.data import load_bundled

BATCH = 128


def rows(quick: bool = False) -> list[dict]:
    ds = load_bundled()
    config = train.TrainConfig(batch_size=BATCH)
    trainable, params = train.split_model(train.make_model(config))
    opt = train.make_optimizer(config, 31)
    x, y = jnp.asarray(ds.x_train[:BATCH]), jnp.asarray(ds.y_train[:BATCH])
    state = {"p": params, "r": trainable.rest, "o": opt.init(params)}

    def step():  # the step donates params, model state and optimizer state: carry them over
        state["p"], state["r"], state["o"], loss, _ = train.jitted_train_step(
            trainable.graphdef, opt, config.shift, state["p"], state["r"], state["o"], x, y,
            jax.random.key(0))
        return loss

    def evaluate():
        return train.jitted_eval_step(trainable.graphdef, state["p"], state["r"], x, y)

    t_train = harness.timed(step, repeats=3 if quick else 8)
    t_eval = harness.timed(evaluate, repeats=5 if quick else 20)
    fwd = harness.CNN_FORWARD_FLOPS * BATCH
    return [
        harness.row("train step (Adam, batch 128)", t_train.seconds,
                    settings="MnistCNN, shift augmentation", compile_s=t_train.compile_s,
                    gflops=3 * fwd / t_train.seconds / 1e9, images_per_s=BATCH / t_train.seconds,
                    forward_equiv=t_train.seconds / t_eval.seconds),
        harness.row("eval step (batch 128)", t_eval.seconds, settings="MnistCNN, loss + accuracy",
                    gflops=fwd / t_eval.seconds / 1e9, images_per_s=BATCH / t_eval.seconds,
                    forward_equiv=1.0),
    ]
