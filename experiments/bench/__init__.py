"""jaxviz's benchmarks: one harness (`harness`), one module per section, public API only.

    python -m experiments.bench [--quick] [--json PATH] [--only NAME,...] [--peers]

`run.SECTIONS` lists the sections; each module's `rows(quick)` returns `harness.row`s.
"""
