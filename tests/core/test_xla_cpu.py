"""jaxviz.core.xla_cpu: compile options chosen safely (what this jaxlib and backend accept)."""
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


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_no_options_off_the_cpu(backend, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert xla_cpu.options() == {}
