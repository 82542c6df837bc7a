"""Examples for users: a model file to copy (`--model experiments/examples/user_models_example.py:colour_cnn`)
and a custom analysis written against jaxviz's public API."""
