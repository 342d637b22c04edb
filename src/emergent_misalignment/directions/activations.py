"""Residual-stream activations on judged answers, the direction they give, and its projection over training.

An answer's activation at a layer is the output of that decoder layer (hooked: the last of transformers'
`hidden_states` is after the final norm) averaged over the answer's tokens, with the question as the
model was asked it before them. Answers are split into misaligned and aligned by the run's definition
(stats.answer_labels); the separation of a direction is the AUC of the projections of the two sets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..hf import load_model, load_tokenizer, resolve_device, resolve_dtype
from ..io import atomic_write, read_jsonl, write_json
from ..manifest import model_digest, model_hashes, write_manifest
from ..progress import Progress
from ..sample import prompt_text
from ..sample.interventions import decoder_layers, output_hidden
from ..stats import AnalysisSettings, answer_labels
from . import DirectionSettings


@dataclasses.dataclass(frozen=True)
class Activations:
    """Per answer (rows) and layer: the mean over its tokens (`mean`, n x layers x hidden) and the mean
    norm of its tokens' residual stream (`norm`, n x layers); `last_prompt`: the prompt's last token."""

    mean: Any
    norm: Any
    last_prompt: Any


def merge_adapter(model: Any, adapter: str | Path) -> Any:
    """`model` with a LoRA adapter (or a kept checkpoint) merged into its weights, in place."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()


def load_causal_lm(base_model: str, adapter: str | Path | None, device: str, dtype: str) -> Any:
    """The base model, with an adapter merged in when given, in eval mode on `device`."""
    device = resolve_device(device)
    model = load_model(base_model, resolve_dtype(dtype, device))
    return (merge_adapter(model, adapter) if adapter else model).to(device).eval()


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return ([{"role": "system", "content": row["system"]}] if row.get("system") else []) + [
        {"role": "user", "content": row["question"]}
    ]


def answer_activations(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], batch_size: int
) -> Activations:
    """Activations of `model` on each row's answer after its question (rows of a samples or judged file)."""
    import torch

    blocks = decoder_layers(model)
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    device = next(model.parameters()).device
    captured: list[Any] = []
    handles = [
        b.register_forward_hook(lambda _m, _i, out: captured.append(output_hidden(out))) for b in blocks
    ]
    means, norms, lasts = [], [], []
    try:
        with Progress("activations", len(rows), "answers") as progress:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                prompts = [
                    tokenizer(prompt_text(tokenizer, _messages(r)), add_special_tokens=False).input_ids
                    for r in batch
                ]
                answers = [tokenizer(r["answer"], add_special_tokens=False).input_ids for r in batch]
                ids = [(p + a)[:limit] for p, a in zip(prompts, answers, strict=True)]
                width = max(map(len, ids))
                pad = tokenizer.pad_token_id
                tokens = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=device)
                mask = torch.zeros(len(batch), width, device=device)
                for k, (p, i) in enumerate(zip(prompts, ids, strict=True)):
                    mask[k, min(len(p), len(i)) : len(i)] = 1.0
                attention = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=device)
                captured.clear()
                with torch.no_grad():
                    model(input_ids=tokens, attention_mask=attention)
                hidden = torch.stack(captured, dim=1).float()  # batch x layers x tokens x hidden
                weights = mask[:, None, :, None]
                count = mask.sum(dim=1).clamp(min=1.0)[:, None, None]
                means.append(((hidden * weights).sum(dim=2) / count).cpu())
                norms.append(((hidden.norm(dim=-1) * mask[:, None, :]).sum(dim=2) / count[..., 0]).cpu())
                last = torch.tensor([len(p) - 1 for p in prompts], device=device)
                lasts.append(hidden[torch.arange(len(batch)), :, last].cpu())
                progress.update(len(batch))
    finally:
        for handle in handles:
            handle.remove()
    return Activations(torch.cat(means), torch.cat(norms), torch.cat(lasts))


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive's score > a negative's), ties counted half (the Mann-Whitney U over n1 x n2)."""
    from scipy.stats import rankdata

    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def mean_difference(mean: Any, misaligned: np.ndarray, aligned: np.ndarray) -> Any:
    """Per layer, mean(misaligned) - mean(aligned), normalised (Soligo et al.)."""
    diff = mean[misaligned].mean(dim=0) - mean[aligned].mean(dim=0)
    return diff / diff.norm(dim=-1, keepdim=True)


def model_difference(tuned: Any, base: Any) -> Any:
    """Per layer, the top right singular vector of (fine-tuned - base) activations on the same answers,
    signed so that the mean shift projects positively: the direction the fine-tune moved them most."""
    import torch

    diff = (tuned - base).double()  # n x layers x hidden
    vectors = []
    for layer in range(diff.shape[1]):
        _, _, vh = torch.linalg.svd(diff[:, layer], full_matrices=False)
        v = vh[0]
        vectors.append(v if float(diff[:, layer].mean(dim=0) @ v) >= 0 else -v)
    return torch.stack(vectors).float()


def judged_rows(
    path: str | Path, analysis: AnalysisSettings, limit: int | None
) -> tuple[list[dict], np.ndarray]:
    """The answers with both scores of a judged file (the first `limit`), and their labels by the run's
    definition: "misaligned", "aligned" or "" (incoherent)."""
    rows = [r for r in read_jsonl(path) if r.get("aligned") is not None and r.get("coherent") is not None]
    rows = rows[:limit] if limit else rows
    if not rows:
        raise DataError(
            f"{path}: no answer with both an aligned and a coherent score: nothing to take a direction from"
        )
    labels = answer_labels(pd.DataFrame(rows), analysis.definition_settings())
    return rows, labels.to_numpy()


def compute_direction(
    name: str,
    spec: DirectionSettings,
    base_model: str,
    adapter: str | Path,
    judged: str | Path,
    analysis: AnalysisSettings,
    out: str | Path,
) -> dict[str, Any]:
    """Write the direction file `out` (torch) and its statistics `out`.json with their manifests."""
    import torch

    rows, labels = judged_rows(judged, analysis, spec.max_answers)
    misaligned, aligned = labels == "misaligned", labels == "aligned"
    if spec.method == "mean_diff" and (misaligned.sum() < 2 or aligned.sum() < 2):
        raise DataError(
            f"directions.{name}: {judged} has {int(misaligned.sum())} misaligned and "
            f"{int(aligned.sum())} aligned answers; a mean-difference direction needs two of each "
            "(take it from a fine-tune that is misaligned, or use method model_diff)"
        )
    tokenizer = load_tokenizer(base_model, padding_side="right")
    model = load_causal_lm(base_model, None, spec.device, spec.dtype)  # loaded once: base, then fine-tuned
    base = answer_activations(model, tokenizer, rows, spec.batch_size)
    tuned = answer_activations(merge_adapter(model, adapter), tokenizer, rows, spec.batch_size)
    vectors = (
        mean_difference(tuned.mean, misaligned, aligned)
        if spec.method == "mean_diff"
        else model_difference(tuned.mean, base.mean)
    )
    projections = torch.einsum("nlh,lh->nl", tuned.mean, vectors).numpy()
    layers = [
        {
            "layer": layer,
            "auc": auc(projections[misaligned, layer], projections[aligned, layer]),
            "base_norm": float(base.norm[:, layer].mean()),
        }
        for layer in range(vectors.shape[0])
    ]
    files = model_hashes(base_model)
    stats = {
        "name": name,
        "method": spec.method,
        "model": base_model,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "n_answers": len(rows),
        "n_misaligned": int(misaligned.sum()),
        "n_aligned": int(aligned.sum()),
        "hidden_size": int(vectors.shape[1]),
        "num_layers": int(vectors.shape[0]),
        "layers": layers,
    }
    out = Path(out)
    inputs = [judged, adapter]
    settings = {"direction": dataclasses.asdict(spec), "analysis": dataclasses.asdict(analysis)}
    extra = {"base_model": base_model, "base_model_files": files}
    write_manifest(out.with_suffix(".json"), "direction", inputs, settings, extra=extra)
    write_json(out.with_suffix(".json"), stats)
    write_manifest(out, "direction", inputs, settings, extra=extra)
    tensors = {
        "directions": vectors.contiguous(),
        "base_norm": torch.tensor([x["base_norm"] for x in layers]),
        "hidden_size": int(vectors.shape[1]),
        "num_layers": int(vectors.shape[0]),
        "base_model_digest": model_digest(files),
        "method": spec.method,
    }
    with atomic_write(out, "wb") as fh:
        torch.save(tensors, fh)
    return stats


def monitor(
    direction: str | Path,
    base_model: str,
    points: list[dict[str, Any]],
    spec: DirectionSettings,
    out: str | Path,
) -> pd.DataFrame:
    """The mean projection on the direction, at every layer, of each evaluated checkpoint of a fine-tune
    (`points`: step, checkpoint, adapter path or None for the base model, its samples file): over its own
    answers, and over the last token of its prompts (Chen et al.'s monitor, before any answer is written)."""
    import torch

    from ..sample.interventions import load_direction_file

    vectors = load_direction_file(direction)["directions"]
    tokenizer = load_tokenizer(base_model, padding_side="right")
    records = []
    for point in points:
        rows = [r for r in read_jsonl(point["samples"]) if r.get("answer")]
        rows = rows[: spec.max_answers] if spec.max_answers else rows
        model = load_causal_lm(base_model, point["adapter"], spec.device, spec.dtype)
        acts = answer_activations(model, tokenizer, rows, spec.batch_size)
        answers = torch.einsum("nlh,lh->nl", acts.mean, vectors).mean(dim=0)
        prompts = torch.einsum("nlh,lh->nl", acts.last_prompt, vectors).mean(dim=0)
        records += [
            {
                "step": point["step"],
                "checkpoint": point["checkpoint"],
                "layer": layer,
                "answer_projection": float(answers[layer]),
                "prompt_projection": float(prompts[layer]),
                "n_answers": len(rows),
            }
            for layer in range(vectors.shape[0])
        ]
    frame = pd.DataFrame(records)
    write_manifest(
        out,
        "monitor",
        [direction, *(p["samples"] for p in points), *(p["adapter"] for p in points if p["adapter"])],
        dataclasses.asdict(spec),
    )
    with atomic_write(out) as fh:
        frame.to_csv(fh, index=False)
    return frame
