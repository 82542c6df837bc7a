"""Write your own analysis: class-contrastive saliency d(logit_k - logit_j)/dx for all pairs,
and the same idea as a registered attribution method (target vs. the runner-up class).
Command:  python -m experiments.examples.custom_analysis   (a few seconds, after `make demo`)
Result:   runs/custom/contrastive.png: why digit 0 is a 0 rather than each other class;
          runs/custom/attribution_gradient_path.png: the registered method beside the
          other gradient methods (the other families' figures beside it).
"""
import argparse
import functools

import jax
import jax.numpy as jnp

from jaxviz import attribution as A
from jaxviz.core import analysis, compile


@functools.partial(compile.jit, static_argnames="fn")
def contrastive_saliency(fn, params, images):
    """images: (N, H, W, C) -> (N, K, K, H, W, C), entry [n, k, j] = d(logit_k - logit_j)/dx."""
    model = compile.fast_model(fn)  # jaxviz's CPU backward rules, where the policy enables them

    def logits_one(x):
        return model(params, x[None])[0]

    def pair_grads(x):
        jac = jax.jacrev(logits_one)(x)  # (K, H, W, C): one backward pass per class
        return jac[:, None] - jac[None, :]  # every pair from K gradients, no K*K passes

    return jax.vmap(pair_grads)(images)


@functools.partial(compile.jit, static_argnames="fn")
def _versus_runner_up(fn, params, x, t):
    def margin(x):
        logits = compile.fast_model(fn)(params, x)
        rival = jnp.argmax(jnp.where(jax.nn.one_hot(t, logits.shape[-1]) > 0, -jnp.inf, logits), -1)
        return (analysis.target_score(logits, t) - analysis.target_score(logits, rival)).sum()
    return jax.grad(margin)(x)


def versus_runner_up(fn, params, images, target):
    """d(logit_target - logit_runner_up)/dx: what separates the class from its closest rival.
    (N, H, W, C) -> (N, H, W, C), signed."""
    x, t = analysis.check_inputs(fn, params, images, target)
    return _versus_runner_up(analysis.static_fn(fn), params, x, t)


def register() -> A.Method:
    """The one line that makes it a jaxviz method: from then on the CLI, the report's
    comparison figure and the shared tests list it. Explicit, so importing this module
    changes nothing."""
    return A.register(A.Method("versus_runner_up", versus_runner_up, label="vs runner-up"),
                      replace=True)


def main(argv=None) -> None:
    from jaxviz import data, io, plot, train  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    from jaxviz.report import attribution_stage  # noqa: PLC0415
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/mnist_seed")
    parser.add_argument("--out", default="runs/custom")
    args = parser.parse_args(argv)
    probe = probe_lib.from_model(train.load_trained(args.checkpoint)[0])
    ds = data.load_bundled()
    maps = contrastive_saliency(probe, probe.params, jnp.asarray(ds.x_val[:1]))
    fig = plot.image_grid(maps[0, 0, ..., 0], titles=[f"0 vs {j}" for j in range(10)], ncols=5,
                          cmap="RdBu_r", symmetric=True)
    print(io.save_figure(fig, f"{args.out}/contrastive.png", rc=plot.core.STYLE)[0])
    register()
    stage = attribution_stage.AttributionStage(n_samples=8, n_steps=16)
    result = attribution_stage.compute(probe, probe.params, ds.x_val[:4], ds.y_val[:4],
                                       jax.random.key(0), sanity_methods=("versus_runner_up",))
    print(*stage.render(result, args.out), sep="\n")


if __name__ == "__main__":
    main()
