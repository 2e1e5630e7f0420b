"""PyTorch frontend: nn.Module, TorchScript and torch.export files -> IR graph.

Every source is first brought to one form, a ``torch.export.ExportedProgram`` (an aten-level FX
graph whose nodes carry their module path), and that one form is lowered op by op in
:mod:`.lower` (one handler per aten op, :mod:`.handlers`). Archives are inspected before torch
loads them (:mod:`.archive_check`, :mod:`.pt2_check`, :mod:`.torchscript_check`). This package's
modules import torch; nothing imports them until a torch model or file is lowered.
"""
