"""jaxviz: see inside convolutional networks with pure, jittable JAX functions."""
import os

__version__ = "0.1.0"

# Same seed, same data, same machine -> same numbers, on GPUs too: XLA's GPU backend otherwise
# picks atomics-based reductions and scatters (e.g. a max-pool's backward), which vary from
# run to run (seen on an H200: saliency differed between two identical calls). The flag only
# takes effect if jaxviz is imported before JAX starts its backends; it does nothing on CPU.
# JAXVIZ_GPU_DETERMINISTIC=0 leaves XLA_FLAGS alone.
_FLAG = "--xla_gpu_deterministic_ops=true"
if (os.environ.get("JAXVIZ_GPU_DETERMINISTIC", "1") != "0"
        and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
