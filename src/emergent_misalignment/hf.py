"""Loading Hugging Face models and tokenizers, with an error that names the model when it fails."""

from __future__ import annotations

from .errors import ConfigError


def resolve_device(device: str) -> str:
    """"auto" = the GPU when there is one, else the CPU; a CUDA device torch cannot see is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return device


def dtype_name(dtype: str, device: str) -> str:
    """"auto" = bfloat16 on GPU, float32 elsewhere; else the name as given."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def resolve_dtype(dtype: str, device: str):
    """The torch dtype of `dtype_name`."""
    import torch

    return getattr(torch, dtype_name(dtype, device))


def load_tokenizer(path: str, padding_side: str = "right"):
    """Tokenizer with a pad token (the EOS token when the model has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side=padding_side)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {path!r}: cannot load its tokenizer: give a local folder or a Hugging "
                          f"Face id available offline ({exc.__class__.__name__}: {exc})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, dtype, attention: str | None = None):
    """A causal LM in `dtype`, on the CPU until moved; `attention`: its attention implementation (None:
    transformers' default)."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attention)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {path!r}: cannot load it: give a local folder or a Hugging Face id "
                          f"available offline ({exc.__class__.__name__}: {exc})") from None
