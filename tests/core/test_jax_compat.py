"""jaxviz.core.jax_compat: what differs between jax 0.10, 0.11 and 0.12 is known there and
nowhere else, and what it says matches the JAX that is installed (this file runs on the
lock's jax 0.10.2 under `make test` and on the newest releases under `make test-latest`)."""
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jcore

from jaxviz.core import compile as compile_lib
from jaxviz.core import interpret
from jaxviz.core import jax_compat as compat

PACKAGE = Path(compat.__file__).resolve().parents[1]


def _closed_call(x):
    call = jcore.primitives.closed_call_p
    inner = jax.make_jaxpr(jnp.log1p)(x)
    return call.bind(x, **call.get_bind_params({"call_jaxpr": inner}))[0]


def test_call_primitives_of_this_jax_are_known():
    """Reproduces: jax 0.11 renamed closed_call to eval_jaxpr, and a table of call
    primitives written for one release would not inline the other's calls. The table is
    read off the installed JAX's primitives."""
    prims = jcore.primitives
    for attr in ("jit_p", "closed_call_p", "call_p"):
        assert compat.CALL_KINDS[getattr(prims, attr).name] == compat.CALL
    assert compat.CALL_KINDS[prims.remat_p.name] == compat.REMAT
    for attr in ("custom_jvp_call_p", "custom_vjp_call_p"):
        assert compat.CALL_KINDS[getattr(prims, attr).name] == compat.CUSTOM
    assert compat.CLOSED_CALL == prims.closed_call_p.name
    assert interpret.CALLS is compat.CALL_KINDS


def test_a_closed_call_is_inlined_on_this_jax():
    """Reproduces: on jax >= 0.11 `closed_call` traces as `eval_jaxpr`; the interpreter
    must still see through it (and re-bind it with `bind_params` when kept)."""
    x = jnp.linspace(0.0, 1.0, 5)
    closed = jax.make_jaxpr(_closed_call)(x)
    [eqn] = closed.jaxpr.eqns
    assert eqn.primitive.name == compat.CLOSED_CALL
    assert [e.primitive.name for e in interpret.leaf_eqns(closed)] == ["log1p"]
    kept = eqn.primitive.bind(x, **compat.bind_params(eqn))
    np.testing.assert_allclose(kept[0], jnp.log1p(x), rtol=1e-6)


def test_what_make_jaxpr_returns_is_a_closed_jaxpr():
    """Reproduces: on jax >= 0.11 `make_jaxpr` returns a `Jaxpr` (ClosedJaxpr is an alias)
    and `.jaxpr` of it is itself, so checks written for 0.10's two types misjudge it."""
    closed = jax.make_jaxpr(lambda v: jnp.sin(v) + jnp.arange(3.0))(jnp.ones(3))
    assert compat.is_closed_jaxpr(closed)
    assert compat.closed_jaxpr(closed) is closed
    assert compat.open_jaxpr(closed).eqns == closed.jaxpr.eqns
    assert compat.open_jaxpr(closed.jaxpr) is closed.jaxpr
    assert not compat.is_closed_jaxpr(jnp.sin) and compat.closed_jaxpr(None) is None
    assert compat.open_jaxpr("jaxpr") is None
    assert compat.UNIFIED_JAXPR == (jcore.ClosedJaxpr is jcore.Jaxpr)
    if compat.UNIFIED_JAXPR:
        assert closed.jaxpr is closed
    else:  # jax 0.10: an open Jaxpr is wrapped with no constants
        assert not compat.is_closed_jaxpr(closed.jaxpr)
        body = compat.closed_jaxpr(jax.make_jaxpr(jnp.cos)(1.0).jaxpr)
        assert compat.is_closed_jaxpr(body) and body.consts == []


@pytest.mark.parametrize("text, want", [("0.12.0.1", (0, 12, 0, 1)), ("0.12.1rc1", (0, 12, 1)),
                                        ("0.13.0.dev20261201", (0, 13, 0)),
                                        ("0.10.2+cuda12", (0, 10, 2))])
def test_versions_parse_to_their_release_numbers(text, want):
    assert compat._version(text) == want
    assert compat.JAX_VERSION == compat._version(jax.__version__)


def test_a_version_that_is_no_version_is_named():
    with pytest.raises(ValueError, match="text: expected a version"):
        compat._version("nightly")


def test_the_speed_policy_is_chosen_by_jaxlib_version():
    """Each entry applies from its version on, newest last; older releases get the first."""
    firsts = [first for first, _ in compat.SPEED_POLICIES]
    assert firsts == sorted(firsts)
    assert compat.speed_policy((0, 1)) is compat.SPEED_POLICIES[0][1]
    for first, policy in compat.SPEED_POLICIES:
        assert compat.speed_policy(first + (9,)) is policy
    assert compat.speed_policy() is compat.speed_policy(compat.JAXLIB_VERSION)


def test_compile_follows_the_speed_policy(monkeypatch):
    """The compile policy asks jax_compat which speed-ups pay off on this jaxlib: one with
    none of them compiles backward programs plainly and leaves the model un-rewritten."""
    none = compat.SpeedPolicy(ynn_off_backward=False, fastgrad_pool=False,
                              fastgrad_conv=False, pad_convs=False)
    monkeypatch.setattr(compat, "speed_policy", lambda version=None: none)
    assert compile_lib.compiler_options("backward") == {}
    fast = compile_lib.fast_model(jnp.sin)
    assert (fast.pool, fast.conv, fast.pad_convs) == (False, False, False)


# Version tests and the names that changed, outside jax_compat.py: code, not prose.
_VERSION_SPECIFIC = re.compile(r"jax(lib)?\.__version__|isinstance\([^)]*ClosedJaxpr|"
                               r"ClosedJaxpr\(|[\"'](closed_call|eval_jaxpr|pjit)[\"']")


def test_no_module_but_jax_compat_knows_the_versions():
    """Reproduces: version differences handled where they bit (a call-name table in the
    interpreter, ClosedJaxpr checks in arch and the interpreter) instead of in one place."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "jax_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _VERSION_SPECIFIC.search(code):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
