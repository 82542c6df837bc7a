"""jaxviz.core.xla_cpu: compile options chosen safely, and jit wrappers that keep jax.jit's behaviour;
and the GPU determinism flag that `import jaxviz` sets."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxviz.core import xla_cpu


def _conv_grad(x, w):
    def loss(x):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    return jax.grad(loss)(x) * 2.0


def test_unknown_flag_is_refused_and_known_options_compile():
    assert not xla_cpu._accepted((("xla_cpu_no_such_flag_in_any_version", ""),))
    opts = xla_cpu.options()  # {} or options this jaxlib accepts
    x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))
    np.testing.assert_allclose(jax.jit(_conv_grad, compiler_options=opts or None)(x, w),
                               _conv_grad(x, w), rtol=1e-6)


@pytest.mark.parametrize("env,backend,on", [("0", "cpu", False), ("off", "cpu", False),
                                            (None, "gpu", False), (None, "tpu", False)])
def test_options_off(env, backend, on, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    if env is None:
        monkeypatch.delenv(xla_cpu.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(xla_cpu.ENV_VAR, env)
    assert (xla_cpu.options() != {}) is on


def test_jit_wrapper_matches_jax_jit_and_nests():
    k1, k2 = jax.random.split(jax.random.key(0))
    x, w = jax.random.normal(k1, (4, 9, 9, 16)), jax.random.normal(k2, (3, 3, 16, 8))
    wrapped = xla_cpu.jit(_conv_grad)
    want = jax.jit(_conv_grad)(x, w)
    np.testing.assert_allclose(wrapped(x, w), want, rtol=1e-5, atol=1e-5)
    # Inside an outer jit or vmap the options can't apply: it must still run, same numbers.
    np.testing.assert_allclose(jax.jit(lambda x: wrapped(x, w))(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda xi: wrapped(xi[None], w)[0])(x), want,
                               rtol=1e-5, atol=1e-5)
    assert wrapped.lower(x, w).compile() is not None  # jax.jit's API passes through
    assert wrapped.__name__ == "_conv_grad"


def test_jit_wrapper_static_args():
    @xla_cpu.jit(static_argnames=("power",))
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
