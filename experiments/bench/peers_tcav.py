"""TCAV side by side with Captum's `captum.concept.TCAV`, on the same weights and images.

    python -m experiments.bench --only peers_tcav      # (--peers runs it with the others)

Needs the peers extra (torch, captum, scikit-learn); without it `rows()` raises
ModuleNotFoundError(peers.MISSING), which the runner prints as a skip.
Time: about 1-3 minutes on a 2-core machine (Captum's run dominates).

The model is `peers.py`'s PyTorch twin of the NNX MnistCNN (seed 0, logits checked to
1e-4), the layer `conv2` (its output before the ReLU, (24, 24, 64) = 36,864 features), the
target class 3 and its first 64 bundled validation digits. Three concepts (50 training
digits each of classes 0, 1 and 7) and 21 random sets of 50 training digits of any class.
Captum's experimental sets are the paper's: [concept, random_i] for i = 1..20 per concept
and [random_0, random_i] for the random reference, 80 CAVs with its DefaultClassifier (an
SGD linear SVM, sklearn, alpha 0.01, 33% test split), its activations and CAVs written to
a fresh temporary directory per call (else a second call reads the first one's CAVs back).
jaxviz: `concepts.tcav` with the same 3 concepts, the 21 random sets as the pool,
n_runs = n_random_runs = 20, 50 counterexamples drawn from the pool per run (logistic
regression, 300 steps). Rows: one [captum] and one [jaxviz] row sharing `ratio` = Captum
s / jaxviz s; agreement: per concept both sides' mean score and std over the 20 runs,
`z` = |mean_captum - mean_jaxviz| / sqrt(se_c² + se_j²) (within sampling error: |z| < 2),
and `same_verdict`: whether both call it significant (the paper's t-test, Bonferroni).
"""
from __future__ import annotations

import tempfile
import warnings

import numpy as np

from experiments.bench import harness, peers

LAYER = "conv2"
TARGET = 3
CONCEPT_DIGITS = (0, 1, 7)
PER_SET = 50
N_RUNS = 20


def _data():
    from jaxviz.data import load_bundled  # noqa: PLC0415
    ds = load_bundled()
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    rng = np.random.default_rng(0)
    sets = {f"digit{d}": x[rng.permutation(np.flatnonzero(y == d))[:PER_SET]]
            for d in CONCEPT_DIGITS}
    randoms = [x[i] for i in rng.permutation(len(x))[:PER_SET * (N_RUNS + 1)].reshape(
        N_RUNS + 1, PER_SET)]
    cls = np.asarray(ds.x_val)[np.asarray(ds.y_val) == TARGET][:64]
    return sets, randoms, cls


def _captum_run(torch, net, sets, randoms, cls):
    """Captum TCAV on the paper's experimental sets -> ({concept: (20,) scores}, random (20,))."""
    from captum.concept import TCAV, Concept  # noqa: PLC0415
    from captum.concept._utils.common import concepts_to_str  # noqa: PLC0415

    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    cs = [Concept(i, n, [nchw(v)]) for i, (n, v) in enumerate(sets.items())]
    rs = [Concept(len(cs) + i, f"random{i}", [nchw(v)]) for i, v in enumerate(randoms)]
    exp = [[c, r] for c in cs for r in rs[1:]] + [[rs[0], r] for r in rs[1:]]
    with tempfile.TemporaryDirectory() as tmp:
        tc = TCAV(net, layers=[LAYER], save_path=tmp)
        out = tc.interpret(nchw(cls), exp, target=TARGET)
    score = {concepts_to_str(e): float(out[concepts_to_str(e)][LAYER]["sign_count"][0])
             for e in exp}
    per = {c.name: np.array([score[concepts_to_str([c, r])] for r in rs[1:]]) for c in cs}
    return per, np.array([score[concepts_to_str([rs[0], r])] for r in rs[1:]])


def rows(quick: bool = False) -> list[dict]:
    """Captum vs jaxviz TCAV rows (module docstring). Raises ModuleNotFoundError without torch."""
    import jax  # noqa: PLC0415

    from jaxviz import concepts  # noqa: PLC0415

    torch = peers._require_torch()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # Captum's classifier notice
        s = peers._setup(torch, quick)
        sets, randoms, cls = _data()
        c_t = harness.timed(lambda: _captum_run(torch, s.net, sets, randoms, cls),
                            1 if quick else 2, warm=False)
    pool = np.concatenate(randoms)

    def ours():
        return concepts.tcav(s.probe, s.probe.params, cls, TARGET, sets, pool, layer=LAYER,
                             key=jax.random.key(0), n_runs=N_RUNS, n_negative=PER_SET)
    j_t = harness.timed(ours, 1 if quick else 3)
    per, rand = c_t.result
    r = j_t.result
    _, _, c_sig = concepts.significance(np.stack(list(per.values())), rand)
    agree = {}
    for i, name in enumerate(r.concepts):
        a, b = per[name], r.scores[i]
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        agree[name] = {"captum": [round(float(a.mean()), 3), round(float(a.std(ddof=1)), 3)],
                       "jaxviz": [round(float(b.mean()), 3), round(float(b.std(ddof=1)), 3)],
                       "z": float(abs(a.mean() - b.mean()) / se) if se > 0 else 0.0,
                       "same_verdict": bool(c_sig[i] == r.significant[i])}
    extra = dict(peer="captum", ratio=c_t.seconds / j_t.seconds, agreement=agree,
                 random_captum=[float(rand.mean()), float(rand.std(ddof=1))],
                 random_jaxviz=[float(r.random_scores.mean()),
                                float(r.random_scores.std(ddof=1))],
                 threads=torch.get_num_threads(), logit_max_diff=s.logit_diff)
    n = len(cls)
    return [harness.row("tcav 1 class, 3 concepts, 20 runs [captum]", c_t.seconds,
                        settings="TCAV(DefaultClassifier: SGD linear SVM), 80 experimental sets",
                        impl="captum", images_per_s=n / c_t.seconds, **extra),
            harness.row("tcav 1 class, 3 concepts, 20 runs [jaxviz]", j_t.seconds,
                        settings="concepts.tcav, logistic regression 300 steps, vmapped",
                        compile_s=j_t.compile_s, impl="jaxviz", images_per_s=n / j_t.seconds,
                        **extra)]
