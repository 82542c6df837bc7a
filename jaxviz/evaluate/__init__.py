"""Which map to believe: metrics that score attribution maps (faithfulness, robustness,
randomisation, complexity, axiomatic, localisation), each a pure, batched, jitted function,
registered in `registry.METRICS`."""
from jaxviz.evaluate.registry import (  # noqa: F401
    FAMILIES, METRICS, Metric, MetricResult, get, register, unregister)
from jaxviz.evaluate import localisation  # noqa: F401,E402  (registers the localisation metrics)
# Each family module registers its own metrics on import.
from jaxviz.evaluate import (  # noqa: F401,E402
    axiomatic, complexity, faithfulness, faithfulness_random, randomisation, robustness,
    sensitivity_n)
from jaxviz.evaluate.table import Cell, Table, bootstrap, evaluate  # noqa: F401,E402
from jaxviz.evaluate.dataset import evaluate_batches  # noqa: F401,E402
