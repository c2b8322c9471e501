import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fmae.ops import _backend

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def backend_params(supported=_backend.BACKENDS):
    """(device, backend) pairs for every fast path that exists for that device.

    Every implementation is listed, so one that should run here but cannot fails its
    test instead of being skipped: the C++ extension and Triton (interpreter) must run
    on any machine; CUDA only where a GPU is present.
    """
    pairs = []
    for device in DEVICES:
        for name in supported:
            if name == "reference" or (name == "cuda" and device == "cpu") or (name == "cpp" and device == "cuda"):
                continue
            pairs.append(pytest.param(device, name, id=f"{device}-{name}"))
    return pairs


# Ops that copy a tensor: none of them may run on an upstream gradient that a kernel can
# read through its strides.
COPIES = ("aten.clone", "aten.copy_", "aten._to_copy", "aten.contiguous")


class RecordOps(TorchDispatchMode):
    """Records the name of every op that runs under it (``with RecordOps() as r: ...``)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))
