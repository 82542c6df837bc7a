"""What a layer knows: concept activation vectors and TCAV, and concepts found by NMF.

    from jaxviz import concepts
    r = concepts.tcav(probe, params, x_class, target=k, concepts={"red": xr}, random=pool,
                      layer="conv2", key=jax.random.key(0))      # docs/tcav.md
    d = concepts.discover(probe, params, x, layer="conv2", n_concepts=5, key=key)
                                                                   # docs/concepts.md

Modules: cav (the linear classifier, vmapped over runs), scores (TCAV, significance, the
result table), sets (concept sets from arrays, folders, generators), factorize (non-negative
factorization in JAX), discovery (concepts of a layer, their heat maps, patches and
importance for a class).
"""
from jaxviz.concepts.cav import CAVs, Runs, concept_runs, fit_cavs, random_runs
from jaxviz.concepts.discovery import (Discovery, concept_heat, concept_importance, discover,
                                       direction_objectives, top_patches)
from jaxviz.concepts.factorize import NMF, nmf
from jaxviz.concepts.sets import load_concepts, random_pool
from jaxviz.concepts.scores import (TCAVResult, directional_derivatives, layer_activations,
                                  layer_gradients, prediction_test, significance, t_test,
                                  tcav)

__all__ = ["CAVs", "Discovery", "NMF", "Runs", "TCAVResult", "concept_heat", "concept_importance",
           "concept_runs", "direction_objectives", "directional_derivatives", "discover",
           "fit_cavs", "layer_activations", "layer_gradients", "load_concepts", "nmf",
           "prediction_test", "random_pool", "random_runs", "significance", "t_test", "tcav",
           "top_patches"]
