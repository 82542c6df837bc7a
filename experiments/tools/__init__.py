"""Maintenance tools: regenerate what jaxviz ships (not experiments, not examples)."""
