"""Write your own analysis: class-contrastive saliency d(logit_k - logit_j)/dx for all pairs.
Command:  python -m experiments.custom_analysis   (a few seconds, after `make demo`)
Result:   runs/custom/contrastive.png: why digit 0 is a 0 rather than each other class.
"""
import argparse
import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames="fn")
def contrastive_saliency(fn, params, images):
    """images: (N, H, W, C) -> (N, K, K, H, W, C), entry [n, k, j] = d(logit_k - logit_j)/dx."""
    def logits_one(x):
        return fn(params, x[None])[0]

    def pair_grads(x):
        jac = jax.jacrev(logits_one)(x)  # (K, H, W, C): one backward pass per class
        return jac[:, None] - jac[None, :]  # every pair from K gradients, no K*K passes

    return jax.vmap(pair_grads)(images)


def main(argv=None) -> None:
    from jaxviz import data, io, plot, train  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/mnist_seed")
    parser.add_argument("--out", default="runs/custom")
    args = parser.parse_args(argv)
    probe = probe_lib.from_model(train.load_trained(args.checkpoint)[0])
    maps = contrastive_saliency(probe, probe.params, jnp.asarray(data.load_bundled().x_val[:1]))
    fig = plot.image_grid(maps[0, 0, ..., 0], titles=[f"0 vs {j}" for j in range(10)], ncols=5,
                          cmap="RdBu_r", symmetric=True)
    print(io.save_figure(fig, f"{args.out}/contrastive.png", rc=plot.STYLE)[0])


if __name__ == "__main__":
    main()
