"""A user's model, defined outside jaxviz: the CLI loads it with --model user_models:residual32."""
from jaxviz.models import ResidualCNN


def residual32(seed: int):
    """The Linen residual net on 32x32x3 inputs (digits are padded and repeated to fit)."""
    return ResidualCNN(width=8), (32, 32, 3)
