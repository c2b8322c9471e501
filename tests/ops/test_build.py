from fmae.ops import _backend


def test_cpp_extension_is_built():
    # Without it every CPU op would fall back to the slow reference: a broken install.
    assert _backend.cpp_extension() is not None, "fmae._C missing: install with `pip install .`"
    assert _backend.choose("auto", _backend.torch.device("cpu")) == "cpp"
