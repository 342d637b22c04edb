"""hf's choices of device and dtype on this CPU machine, and what they would be with a GPU."""

from __future__ import annotations

import pytest
import torch

from emergent_misalignment.errors import ConfigError
from emergent_misalignment.hf import dtype_name, resolve_device, resolve_dtype


def test_auto_device_is_the_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    for asked in ("cuda", "cuda:1"):  # a GPU asked for where torch sees none: said so, not a CPU run
        with pytest.raises(ConfigError, match=f"device '{asked}' was asked for, but torch sees no CUDA device"):
            resolve_device(asked)


def test_auto_device_is_the_gpu_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"


def test_this_machine_resolves_as_torch_sees_it() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_dtype_is_bfloat16_on_gpu_float32_elsewhere() -> None:
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "cuda") is torch.bfloat16 and resolve_dtype("auto", "cuda:0") is torch.bfloat16
    assert (dtype_name("auto", "cpu"), dtype_name("auto", "cuda:1")) == ("float32", "bfloat16")
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        assert resolve_dtype(name, "cpu") is dtype and resolve_dtype(name, "cuda") is dtype  # as asked
    assert torch.zeros(1, dtype=resolve_dtype("auto", resolve_device("cpu"))).dtype == torch.float32
