"""The objective algebra now lives in `jaxviz.core.objectives` (it is shared by activation
maximization and every attribution method's target); this module keeps the old import path."""
from jaxviz.core.objectives import *  # noqa: F401,F403
from jaxviz.core.objectives import as_objective, batch, evaluate  # noqa: F401
