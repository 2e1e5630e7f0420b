"""The frontend's one error type (importable without torch)."""


class FrontendError(ValueError):
    """A model or file the frontend cannot turn into IR.

    The message says what is wrong and, for an op, where it sits in the model (module path and
    class, e.g. ``features.3 (torch.nn.modules.activation.Sigmoid)``).
    """
