"""Loading Hugging Face models and tokenizers, with an error that names the model when it fails."""

from __future__ import annotations

from .errors import ConfigError


def resolve_device(device: str) -> str:
    """"auto" = the GPU when there is one, else the CPU."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def resolve_dtype(dtype: str, device: str):
    """"auto" = bfloat16 on GPU, float32 on CPU; else a torch dtype by name."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


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


def load_model(path: str, dtype):
    """A causal LM in `dtype`, on the CPU until moved."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {path!r}: cannot load it: give a local folder or a Hugging Face id "
                          f"available offline ({exc.__class__.__name__}: {exc})") from None
