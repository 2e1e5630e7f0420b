"""The frontend's one error type (importable without torch)."""


class FrontendError(ValueError):
    """A model or file the frontend cannot turn into IR.

    The message says what is wrong and, for an op, where it sits in the model (module path and
    class, e.g. ``features.3 (torch.nn.modules.activation.Sigmoid)``).
    """


class NeedsInputShape(FrontendError):
    """The file does not record its input shape: the caller must give it (or data that shows it)."""

    HOW = ("pass the input shape without the batch axis (--input-shape 1,28,28, or input_shape=(1, 28, 28) from "
           "Python), or calibration data (its x gives the shape)")


def check_input_shape(input_shape) -> tuple:
    """``input_shape`` as a tuple of positive ints without the batch axis, else a FrontendError."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise FrontendError(f"input_shape must be a tuple of positive ints without the batch axis, "
                            f"e.g. (1, 28, 28) or (784,), got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise FrontendError(f"input_shape must be a non-empty tuple of positive ints without the batch "
                            f"axis, got {input_shape!r}")
    return shape
