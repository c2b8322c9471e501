import os

import torch

# Triton kernels run in its CPU interpreter when there is no GPU; the variable must be
# set before any kernel is defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
