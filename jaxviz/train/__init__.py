"""Training: one jitted train step, a jitted eval step, a fit loop with Orbax checkpoints.

    result = train.fit(TrainConfig(model="pkg.mod:factory"), data, "runs/x")
    model, config = train.load_trained("runs/x")        # inference mode, state restored
    model = train.recalibrate_batchnorm(model, x_train)  # BatchNorm statistics from data

Everything is a pure function of (params, rest, opt_state, batch, key): `rest` is the
model's non-parameter state (BatchNorm statistics, RNG counters), updated by every step
and kept in every checkpoint. Modules: config (TrainConfig, optimizer), step (the
compiled steps and the model's train / inference modes), checkpoint (the run directory),
loop (fit, load_trained), batchnorm (running statistics recomputed from data, and a check
that they are not stale), checks (warnings about a training set that fits a run badly).
"""
from jaxviz.train.batchnorm import (batchnorm_accuracies, check_batchnorm_statistics,
                                    recalibrate_batchnorm)
from jaxviz.train.checkpoint import CheckpointStore, check_resumable, check_same_structure
from jaxviz.train.config import TrainConfig, make_optimizer
from jaxviz.train.loop import FitResult, fit, load_trained, make_model
from jaxviz.train.step import (Trainable, TrainState, eval_step, evaluate, infer,
                                   jitted_eval_step, jitted_train_step, random_shift,
                                   split_model, train_forward, train_step)

__all__ = ["CheckpointStore", "FitResult", "TrainConfig", "TrainState", "Trainable",
           "batchnorm_accuracies", "check_batchnorm_statistics", "check_resumable",
           "check_same_structure", "eval_step", "evaluate", "fit", "infer", "jitted_eval_step",
           "jitted_train_step", "load_trained", "make_model", "make_optimizer", "random_shift",
           "recalibrate_batchnorm", "split_model", "train_forward", "train_step"]
