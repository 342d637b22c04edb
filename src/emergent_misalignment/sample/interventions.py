"""Interventions on the residual stream while a model answers: a direction projected out, or added.

Soligo, Turner et al. (arXiv 2506.11618) project a mean-difference direction out of every layer's
output to remove emergent misalignment, and add it to the chat model to induce it. Both act on the
output of the decoder layers (the residual stream after each block), through forward hooks, which is
why they need the transformers backend: vLLM's compiled graph cannot be hooked, an API model has no
activations. The direction file is written by the `direction` stage (directions/activations.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

DIRECTION_FILE_KEYS = ("directions", "base_norm", "hidden_size", "num_layers", "base_model_digest")


@dataclass(frozen=True)
class Intervention:
    """What a hook does at each layer: `ablate` removes the component along the layer's unit vector,
    `steer` adds `scale[layer]` times it (alpha times the layer's mean residual-stream norm)."""

    kind: str  # "ablate" or "steer"
    vectors: dict[int, Any]  # layer -> unit vector (torch tensor of the hidden size)
    scale: dict[int, float]  # steer only: layer -> the added vector's norm

    def layers(self) -> list[int]:
        return sorted(self.vectors)


def decoder_layers(model: Any) -> Any:
    """The decoder blocks of a causal LM (a LoRA adapter merged in): Llama, Qwen2, Mistral, Gemma all
    keep them at `model.model.layers`."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ConfigError(
            f"{type(model).__name__}: no decoder layers at model.model.layers, so no "
            "residual-stream intervention can be hooked into it"
        )
    return layers


def output_hidden(output: Any) -> Any:
    """A decoder layer's hidden states: transformers 5 returns a tensor, older versions a tuple."""
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output: Any, hidden: Any) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def install(model: Any, intervention: Intervention) -> list[Any]:
    """Register the intervention's forward hooks on `model`, already on its device and in its dtype (the
    vectors are moved there once, not at every forward pass); returns the handles (remove() to undo)."""
    blocks = decoder_layers(model)
    handles = []
    for layer in intervention.layers():
        weight = next(blocks[layer].parameters())
        vector = intervention.vectors[layer].to(device=weight.device, dtype=weight.dtype)
        scale = intervention.scale.get(layer, 0.0)

        def hook(_module: Any, _inputs: Any, output: Any, u: Any = vector, s: float = scale) -> Any:
            hidden = output_hidden(output)
            if intervention.kind == "ablate":
                changed = hidden - (hidden @ u).unsqueeze(-1) * u
            else:
                changed = hidden + s * u
            return _replace_hidden(output, changed)

        handles.append(blocks[layer].register_forward_hook(hook))
    return handles


def load_direction_file(path: str | Path) -> dict[str, Any]:
    """A direction file (torch.save of tensors and numbers), checked for the keys this module reads."""
    import pickle

    import torch

    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: not a direction file ({exc.__class__.__name__}: {exc})") from None
    missing = [k for k in DIRECTION_FILE_KEYS if k not in data]
    if missing:
        raise DataError(f"{path}: not a direction file: missing {', '.join(missing)}")
    return data


def random_unit_vectors(num_layers: int, hidden_size: int, seed: int) -> Any:
    """One random unit vector per layer (the control: a direction of the same norm with no meaning)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(num_layers, hidden_size, generator=generator)
    return vectors / vectors.norm(dim=-1, keepdim=True)


def intervention_for(
    condition: Any,
    direction_path: str | Path,
    model_digest: str,
    hidden_size: int,
    num_layers: int,
    where: str,
) -> Intervention:
    """The Intervention of an `ablate` or `steer` condition (sample/conditions.py) from its direction file,
    refused when the file was made from another base model or another shape."""
    data = load_direction_file(direction_path)
    if data["base_model_digest"] != model_digest:
        raise ConfigError(
            f"{where}: direction file {direction_path} was made from another base model "
            f"(digest {data['base_model_digest'][:12]}, this model's {model_digest[:12]})"
        )
    if (int(data["hidden_size"]), int(data["num_layers"])) != (hidden_size, num_layers):
        raise ConfigError(
            f"{where}: direction file {direction_path} has hidden size {int(data['hidden_size'])}"
            f" and {int(data['num_layers'])} layers; the model has {hidden_size} and {num_layers}"
        )
    vectors = (
        random_unit_vectors(num_layers, hidden_size, condition.seed)
        if condition.random
        else data["directions"]
    )
    if condition.kind == "ablate":
        layers = condition.layers if condition.layers is not None else list(range(num_layers))
        scale: dict[int, float] = {}
    else:
        layers = [condition.layer]
        scale = {
            condition.layer: condition.alpha
            * (float(data["base_norm"][condition.layer]) if condition.scale == "residual" else 1.0)
        }
    for layer in layers:
        if not 0 <= layer < num_layers:
            raise ConfigError(
                f"{where}: layer {layer} is out of range: the model has {num_layers} layers "
                f"(0..{num_layers - 1})"
            )
    return Intervention(condition.kind, {layer: vectors[layer].float() for layer in layers}, scale)
