"""jaxviz.core.compile: the one compile policy. Configuration read once (environment at
import, `configure` at run time), jit wrappers that keep jax.jit's behaviour, fast_model's
choices, and the GPU determinism flag that `import jaxviz` sets."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxviz.core import compile as compile_lib
from jaxviz.core import xla_cpu


@pytest.fixture
def policy():
    """jaxviz.core.compile, with the compile policy restored after the test."""
    old = compile_lib.config()
    yield compile_lib
    compile_lib.configure(old)


def _conv_grad(x, w):
    def loss(x):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    return jax.grad(loss)(x) * 2.0


def _environ(name, value):
    return {} if value is None else {name: value}


@pytest.mark.parametrize("env,backend,on", [("0", "cpu", False), ("off", "cpu", False),
                                            (None, "gpu", False), (None, "tpu", False),
                                            (None, "cpu", None), ("1", "cpu", None)])
def test_xla_options_follow_policy_and_backend(env, backend, on, policy, monkeypatch):
    """JAXVIZ_XLA_OPTIONS=0/off, or a backend other than the CPU: backward programs compile
    without options; otherwise with YNNPACK off where this jaxlib has the flag."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    parsed = compile_lib.Config.from_environ(_environ(compile_lib.ENV_XLA_OPTIONS, env))
    policy.configure(xla_options=parsed.xla_options)
    if on is None:
        on = xla_cpu._accepted(tuple(xla_cpu.YNN_OFF.items()))
    assert (compile_lib.compiler_options("backward") != {}) is on
    assert compile_lib.compiler_options("forward") == {}


@pytest.mark.parametrize("value,backend,expected", [
    (None, "cpu", True), (None, "gpu", False), ("auto", "tpu", False),
    ("1", "gpu", True), ("0", "cpu", False), ("off", "cpu", False)])
def test_fastgrad_follows_backend_unless_forced(value, backend, expected, policy, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    parsed = compile_lib.Config.from_environ(_environ(compile_lib.ENV_FASTGRAD, value))
    policy.configure(fastgrad=parsed.fastgrad)
    assert compile_lib.fastgrad_on() is expected


def test_configure_reaches_programs_already_compiled(policy):
    """A change at run time retraces: no cached compile keeps the old policy."""
    traces = []

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @compile_lib.jit
    def grad(x, w):
        traces.append(compile_lib.fastgrad_on())
        return jax.grad(lambda x: compile_lib.fast_model(conv)(x, w).sum())(x)

    x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 4))
    on = grad(x, w)
    grad(x, w)
    assert traces == [compile_lib.fastgrad_on()]
    first = compile_lib.fastgrad_on()
    policy.configure(fastgrad="off" if first else "on")
    off = grad(x, w)
    assert traces == [first, not first]
    np.testing.assert_allclose(on, off, rtol=1e-5)
    assert policy.configure(fastgrad="off" if first else "on").fastgrad == policy.config().fastgrad
    grad(x, w)
    assert len(traces) == 2  # configuring the same policy again drops nothing


def test_configure_checks_its_arguments(policy):
    with pytest.raises(ValueError, match="fastgrad must be"):
        policy.configure(fastgrad=3)
    with pytest.raises(ValueError, match="xla_options must be True or False"):
        policy.configure(xla_options="yes")
    with pytest.raises(ValueError, match="gpu_deterministic is applied once at import"):
        policy.configure(compile_lib.Config(gpu_deterministic=not policy.config().gpu_deterministic))
    with pytest.raises(ValueError, match="kind must be one of"):
        compile_lib.jit(lambda x: x, kind="sideways")


@pytest.mark.parametrize("kind", ["backward", "forward"])
def test_fast_model_pads_convs_only_without_ynn_off_options(kind, policy, cnn_random, digits):
    """The conv padding dodges a YNNPACK path: kept for plain programs, dropped for
    programs compiled with YNNPACK fusions off; passed to fastgrad explicitly."""
    policy.configure(fastgrad="on")
    p, x = cnn_random, jnp.asarray(digits[0][:2])
    fast = compile_lib.fast_model(p, kind=kind)
    text = str(jax.make_jaxpr(jax.grad(lambda x: fast(p.params, x).sum()))(x))
    ynn_off = compile_lib.compiler_options(kind) != {}
    assert fast.pad_convs is not ynn_off
    assert ("padding=((0, 1), (0, 0))" in text) is not ynn_off


def test_jit_wrapper_matches_jax_jit_and_nests():
    k1, k2 = jax.random.split(jax.random.key(0))
    x, w = jax.random.normal(k1, (4, 9, 9, 16)), jax.random.normal(k2, (3, 3, 16, 8))
    wrapped = compile_lib.jit(_conv_grad, kind="backward")
    want = jax.jit(_conv_grad)(x, w)
    np.testing.assert_allclose(wrapped(x, w), want, rtol=1e-5, atol=1e-5)
    # Inside an outer jit or vmap the options can't apply: it must still run, same numbers.
    np.testing.assert_allclose(jax.jit(lambda x: wrapped(x, w))(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda xi: wrapped(xi[None], w)[0])(x), want,
                               rtol=1e-5, atol=1e-5)
    assert wrapped.lower(x, w).compile() is not None  # jax.jit's API passes through
    assert wrapped.__name__ == "_conv_grad"


@pytest.mark.parametrize("kind", ["backward", "forward"])
def test_jit_wrapper_static_args(kind):
    @compile_lib.jit(static_argnames=("power",), kind=kind)
    def f(x, power):
        return x ** power
    assert float(f(jnp.float32(3.0), power=2)) == 9.0
    assert float(f(jnp.float32(3.0), power=3)) == 27.0


@pytest.mark.parametrize("env,flags,expected", [
    ({}, "", "--xla_gpu_deterministic_ops=true"),
    ({}, "--xla_force_host_platform_device_count=2",
     "--xla_force_host_platform_device_count=2 --xla_gpu_deterministic_ops=true"),
    ({}, "--xla_gpu_deterministic_ops=false", "--xla_gpu_deterministic_ops=false"),
    ({"JAXVIZ_GPU_DETERMINISTIC": "0"}, "", "")])
def test_import_asks_xla_for_deterministic_gpu_ops(env, flags, expected):
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "JAXVIZ_GPU_DETERMINISTIC")}
    out = subprocess.run(
        [sys.executable, "-c", "import os, jaxviz; print(os.environ.get('XLA_FLAGS', ''))"],
        env={**base, **env, "XLA_FLAGS": flags}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
