"""Twins across frameworks: the plain twin (conv-relu-pool-conv-relu-dense, tests/helpers/
twins.py) in Flax NNX, Flax Linen, Equinox and Keras 3 with the same weights gives the same
logits, the same map for one method of each way of reaching the model (its `quick`
options; REACH in tests/helpers/method_checks.py, and Ablation-CAM, the one method that
replaces a layer's value through the adapter's edits), the same exact
and incremental occlusion, the same class maximization and the same summary.

The reference side is the NNX twin; every other framework's numbers must match it to
float tolerance (RTOL of the reference's largest magnitude: only the order of float32
operations differs, e.g. Equinox's per-image channel-first convolutions). The frameworks'
own forwards (no jaxviz) are compared first, so a wrong weight copy fails there, not as
a method's difference.
"""
import inspect
import warnings

import jax
import numpy as np
import pytest

from jaxviz import arch, attribution as A
from jaxviz import occlusion as O
from jaxviz.maximize import api as maximize_api
from tests.helpers import twins as tw
from tests.helpers.method_checks import REACH

KEY = jax.random.key(0)
N = 2
RTOL = 1e-4
OTHERS = ("linen", "equinox", "keras")
# (framework, method) -> why the twin differs today: a known defect, reported, kept
# visible (strict: the test fails once it is fixed, so the entry goes).
KNOWN = {}


@pytest.fixture(scope="module")
def plain():
    twins = {fw: tw.build("plain", fw) for fw in tw.FRAMEWORKS}
    x = jax.random.uniform(jax.random.fold_in(KEY, 1), (N, *tw.SHAPES["plain"]))
    t = np.asarray(twins["nnx"].apply(x).argmax(-1))  # the predicted class, as users explain
    return twins, x, t


def close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = float(np.abs(want).max())
    assert scale > 0, what  # an all-zero reference would make the comparison empty
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * scale, err_msg=what)


def test_framework_forwards_and_probes_agree(plain):
    twins, x, _ = plain
    want = twins["nnx"].apply(x)
    for fw, twin in twins.items():
        close(twin.apply(x), want, f"{fw}: the framework's own forward")
        close(twin.probe(twin.probe.params, x), want, f"{fw}: the Probe's logits")


def _run(name, twin, x, t):
    method = A.get(name)
    opts = dict(method.quick)
    if "layer" in inspect.signature(method.fn).parameters:  # a CAM layer: name it, the same
        # in all four (layer=None takes the last spatial layer: Keras ReLU layers come later)
        opts["layer"] = tw.CAM_LAYER[twin.arch]
    key = jax.random.split(KEY, N) if method.needs_key else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warnings on every twin; not the point here
        return method(twin.probe, twin.probe.params, x, t, key=key, **opts).map


# A framework is met only through its adapter: the forward, the params pytree, a layer's
# activations, edits at a layer (Grad-CAM's and FullGrad's added deltas, Ablation-CAM's
# replaced value) and the program the rule rewrites read. A method outside this list computes
# on the same reached values as one inside it (tests/helpers/method_checks.py says which).
ADAPTER_REACH = REACH + ("ablation_cam",)


@pytest.mark.parametrize("name", ADAPTER_REACH)
def test_every_way_of_reaching_the_model_gives_the_same_map(plain, name):
    twins, x, t = plain
    want = _run(name, twins["nnx"], x, t)
    bad = []
    for fw in OTHERS:
        try:
            close(_run(name, twins[fw], x, t), want, f"{fw}: {name}")
        except AssertionError as err:
            if (fw, name) not in KNOWN:
                raise
            bad.append((fw, str(err).splitlines()[-1]))
    known = [fw for fw in OTHERS if (fw, name) in KNOWN]
    if known:
        assert [fw for fw, _ in bad] == known, f"fixed? remove {known} from KNOWN ({name})"
        pytest.xfail("; ".join(KNOWN[fw, name] for fw in known))


def test_occlusion_exact_and_incremental(plain):
    twins, x, t = plain
    # occlusion's quick settings, as in test_every_method_gives_the_same_map: the exact
    # sweeps compiled there are reused here.
    kw = dict(A.get("occlusion").quick)
    runs = {fw: (O.occlusion(tw_.probe, tw_.probe.params, x, t, **kw).extras["scores"],
                 O.occlusion(tw_.probe, tw_.probe.params, x, t, method="incremental",
                             **kw).extras["scores"]) for fw, tw_ in twins.items()}
    close(runs["nnx"][1], runs["nnx"][0], "nnx: incremental vs exact")
    for fw in OTHERS:
        close(runs[fw][0], runs["nnx"][0], f"{fw}: exact occlusion")
        close(runs[fw][1], runs["nnx"][0], f"{fw}: incremental occlusion")


def test_class_maximization(plain):
    twins, _, _ = plain
    res = {fw: maximize_api.all_units(tw_.probe, tw_.probe.params, "logits", key=KEY, steps=4)
           for fw, tw_ in twins.items()}
    for fw in OTHERS:
        close(res[fw].images, res["nnx"].images, f"{fw}: maximized images")
        close(res[fw].trace, res["nnx"].trace, f"{fw}: ascent trace")


def test_summary(plain):
    """Same parameter count and output; the layers all four name alike have the same
    output shapes and parameter counts (Keras and Equinox add layers for what Flax writes
    as functions: ReLU, pooling, flatten)."""
    twins, x, _ = plain
    rows = {}
    for fw, tw_ in twins.items():
        s = arch.summary(tw_.probe, x[:1])
        assert s.total_params == 4 * 10 + 6 * 37 + K_HEAD, fw  # conv1, conv2, head by hand
        assert s.output_shape == (1, tw.K), fw
        rows[fw] = {r.name: r for r in s.rows}
    shared = set.intersection(*(set(r) for r in rows.values()))
    assert {"conv1", "conv2", "head"} <= shared
    for fw in OTHERS:
        for name in ("conv1", "conv2", "head"):
            a, b = rows[fw][name], rows["nnx"][name]
            assert (a.output_shape, a.params) == (b.output_shape, b.params), (fw, name)


K_HEAD = 54 * tw.K + tw.K
