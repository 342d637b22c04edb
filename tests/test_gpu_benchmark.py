"""benchmarks/gpu.py, the GPU route's speed at the paper's shapes: its tiny CPU run, so that it keeps working."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    assert gpu.main(["--tiny", "--json", str(tmp_path / "gpu.json")]) == 0
    result = json.loads((tmp_path / "gpu.json").read_text())
    training = {row["setting"]: row for row in result["training"]}
    assert (training["auto"]["micro_batch"], training["auto"]["accumulation"]) == (16, 1)  # the whole batch
    upstream = training["upstream 2x8, padded, checkpointing"]
    assert (upstream["micro_batch"], upstream["accumulation"], upstream["checkpointing"]) == (2, 8, True)
    assert all(row["tokens_per_s"] > 0 and row["s_per_step"] > 0 for row in training.values())
    assert [row["setting"] for row in result["sampling"]] == ["per question", "job batched"]
    out = capsys.readouterr().out
    assert "GPU route benchmark: " in out and "| tiny | auto | 16 | 1 |" in out


def test_the_shapes_are_the_models_sizes():
    """Parameters of each shape, built on the meta device, within 1% of the model cards' 7.61B, 14.7B, 32.5B."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    for name, billions in (("7b", 7.61), ("14b", 14.7), ("32b", 32.5)):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(Qwen2Config(**gpu.SHAPES[name], tie_word_embeddings=False))
        assert abs(sum(p.numel() for p in model.parameters()) / 1e9 / billions - 1) < 0.01, name
