import pytest
import torch

from fmae.runtime.device import cpu_has_fast_bf16, resolve_device, resolve_dtype


def test_dtype_resolution():
    cpu = torch.device("cpu")
    assert resolve_dtype("fp32", cpu) is torch.float32
    assert resolve_dtype("bf16", cpu) is torch.bfloat16
    assert resolve_dtype("auto", cpu) is (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("fp8", cpu)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda:0")
