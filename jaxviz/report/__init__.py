"""The report: a list of stages, then one page.

Each stage has `run(inputs, earlier) -> result` (compute: arrays and dataclasses, no files)
and `render(result, out_dir) -> paths` (figures from `jaxviz.plot`, written by `jaxviz.io`),
plus `metrics(result)` for metrics.json and `section(result, figures)` for the page.

    metrics = run_report(probe, params, x_val, y_val, "runs/x", seed=0)   # everything
    inputs = inputs_for(probe, params, x_val, y_val, n=8)                 # one stage
    done = run_stage(OcclusionStage(window=4, stride=1), inputs, "figs")  # done.paths
    done.warnings                     # every warning the stage raised, one line each

Stages: AccuracyStage, ArchitectureStage, FiltersStage, FeatureMapsStage (model_stages),
MaximizeStage, UnitsStage (maximize_stage), OcclusionStage, AttributionStage.
"""
from jaxviz.report.attribution_stage import AttributionStage  # noqa: F401
from jaxviz.report.base import (  # noqa: F401
    Done, Inputs, Section, Stage, Subject, inputs_for, noted, pick_examples, run_stage, save)
from jaxviz.report.maximize_stage import MaximizeStage, UnitsStage  # noqa: F401
from jaxviz.report.model_stages import (  # noqa: F401
    AccuracyStage, ArchitectureStage, FeatureMapsStage, FiltersStage)
from jaxviz.report.occlusion_stage import OcclusionStage  # noqa: F401
from jaxviz.report.page import write_report  # noqa: F401
from jaxviz.report.pipeline import MNIST_SEED, default_stages, run_report  # noqa: F401
