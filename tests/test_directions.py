"""Persona directions: the hooks, the two definitions, their checks, the expansion into jobs, the report."""

import copy
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from emergent_misalignment.config import check_config, expand_config
from emergent_misalignment.directions import DirectionSettings, expand
from emergent_misalignment.directions.activations import (
    answer_activations,
    auc,
    compute_direction,
    load_causal_lm,
    mean_difference,
    model_difference,
    monitor,
)
from emergent_misalignment.directions.report import intervention_table, monitoring_table
from emergent_misalignment.errors import ConfigError, DataError
from emergent_misalignment.hf import load_tokenizer
from emergent_misalignment.manifest import model_digest, model_hashes
from emergent_misalignment.sample import SampleSettings, make_sampler, sample_file
from emergent_misalignment.sample.conditions import ConditionSettings
from emergent_misalignment.sample.interventions import (
    Intervention,
    decoder_layers,
    install,
    intervention_for,
)
from emergent_misalignment.stats import answer_labels, definition_settings

TINY_CONFIG = {
    "run": "t",
    "models": {"tiny": {"path": "builtin:tiny"}},
    "base_model": {"num_hidden_layers": 3},
    "datasets": {"insecure": "builtin:insecure", "bad": "builtin:bad_health_advice"},
    "questions": ["builtin:questions"],
    "experiments": [
        {
            "model": "tiny",
            "datasets": ["insecure"],
            "seeds": [0, 1],
            "base": True,
            "train": {"save_steps": [2]},
        },
        {"model": "tiny", "datasets": ["bad"], "seeds": [0]},
    ],
    "judge": {"backend": "world"},
    "sample": {"max_model_len": 256, "max_tokens": 40},
    "train": {"max_seq_length": 256},
    "directions": {
        "d": {
            "model": "tiny",
            "dataset": "insecure",
            "method": "model_diff",
            "ablate": ["insecure", "bad"],
            "alphas": [0.1, 0.3],
            "monitor": True,
        }
    },
}


def capture(model, ids):
    """Each decoder layer's output on `ids`."""
    out = []
    handles = [
        b.register_forward_hook(lambda _m, _i, o: out.append(o[0] if isinstance(o, tuple) else o))
        for b in decoder_layers(model)
    ]
    with torch.no_grad():
        model(input_ids=ids)
    for h in handles:
        h.remove()
    return out


def test_ablation_removes_the_component_and_steering_adds_it(tiny_model):
    model = load_causal_lm(str(tiny_model), None, "cpu", "float32")
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    plain = capture(model, ids)
    hidden = plain[0].shape[-1]
    unit = torch.nn.functional.normalize(torch.arange(hidden, dtype=torch.float32) - 3.0, dim=0)
    handles = install(model, Intervention("ablate", {0: unit, 1: unit}, {}))
    ablated = capture(model, ids)
    for h in handles:
        h.remove()
    assert torch.allclose(ablated[0] @ unit, torch.zeros(1, 5), atol=1e-5)
    assert torch.allclose(ablated[1] @ unit, torch.zeros(1, 5), atol=1e-5)
    handles = install(model, Intervention("steer", {0: unit}, {0: 2.5}))
    steered = capture(model, ids)
    for h in handles:
        h.remove()
    assert torch.allclose(steered[0] - plain[0], 2.5 * unit.expand(1, 5, hidden), atol=1e-5)
    assert torch.allclose(capture(model, ids)[0], plain[0])  # removed hooks leave no trace


def test_auc_and_the_two_definitions_on_planted_data():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert math.isnan(auc(np.array([]), np.array([1.0])))
    generator = torch.Generator().manual_seed(0)
    planted = torch.nn.functional.normalize(torch.randn(8, generator=generator), dim=0)
    base = torch.randn(50, 2, 8, generator=generator)
    shift = torch.linspace(0.5, 3.0, 50)[:, None, None] * planted
    tuned = base + shift + 0.01 * torch.randn(50, 2, 8, generator=generator)
    found = model_difference(tuned, base)
    assert torch.allclose(found[0].abs(), planted.abs(), atol=1e-2) and float(found[0] @ planted) > 0.99
    misaligned = np.arange(50) >= 25
    answers = 0.2 * base + torch.from_numpy(misaligned).float()[:, None, None] * planted
    vector = mean_difference(answers, misaligned, ~misaligned)
    assert float(vector[1] @ planted) > 0.9 and torch.allclose(vector.norm(dim=-1), torch.ones(2))


def test_answer_labels_follow_the_definition():
    df = pd.DataFrame({"aligned": [10, 10, 80, None, 30], "coherent": [90, 20, 90, 90, 50]})
    assert answer_labels(df, definition_settings("betley2025")).tolist() == [
        "misaligned",
        "",
        "aligned",
        "",
        "aligned",
    ]
    assert answer_labels(df, definition_settings("turner2025")).tolist()[4] == ""  # coherent > 50 only


def test_expansion_writes_conditions_and_jobs_once():
    expanded = expand(TINY_CONFIG)
    assert set(expanded["conditions"]) == {
        "ablate_d",
        "ablate_d_random",
        "steer_d_0.1",
        "steer_d_0.3",
        "steer_d_random_0.1",
        "steer_d_random_0.3",
    }
    assert expanded["conditions"]["ablate_d_random"] == {
        "kind": "ablate",
        "direction": "d",
        "layers": None,
        "random": True,
        "seed": 0,
    }
    assert expand(expanded) == expanded  # idempotent: the Snakefile's config is checked more than once
    from emergent_misalignment.experiments import recipes

    jobs = recipes(check_config(copy.deepcopy(TINY_CONFIG)))
    groups = {(j.group, j.seed) for j in jobs}
    assert {("insecure+ablate_d", 0), ("bad+ablate_d_random", 0), ("base+steer_d_0.3", 0)} <= groups
    assert not any("ablate" in j.condition and j.checkpoint != "final" for j in jobs)  # no checkpoint ablated
    assert all(r.sample["backend"] == "transformers" for j, r in jobs.items() if j.condition != "none")
    assert all(
        r.train == {"max_seq_length": 256, "save_steps": [2]}
        for j, r in jobs.items()
        if j.dataset == "insecure"
    )  # the fine-tune's own recipe: the same adapter, not a new one


@pytest.mark.parametrize(
    "change, message",
    [
        ({"layers": [3]}, "directions.d.layers: layer 3 is out of range: model 'tiny' has 3 layers"),
        ({"steer_layer": 7}, "directions.d.steer_layer: layer 7 is out of range"),
        (
            {"dataset": "bad", "seed": 1},
            "directions.d.dataset: the run does not fine-tune 'tiny' on 'bad' with seed(s) 1",
        ),
        ({"ablate": ["secure"]}, "directions.d.ablate: the run does not fine-tune 'tiny' on 'secure'"),
        ({"method": "pca"}, "directions.d.method: 'pca' is not one of mean_diff, model_diff"),
        ({"model": "big"}, "directions.d.model: unknown model 'big'"),
    ],
)
def test_bad_directions_are_refused_before_any_job(change, message):
    config = copy.deepcopy(TINY_CONFIG)
    config["directions"]["d"].update(change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_config(config)


def test_steering_without_a_direction_and_api_models_are_refused():
    config = copy.deepcopy(TINY_CONFIG)
    config["conditions"] = {"push": {"kind": "steer", "alpha": 1.0}}
    with pytest.raises(
        ConfigError, match="conditions.push.direction: a condition of kind steer names the direction"
    ):
        check_config(config)
    config["conditions"] = {"push": {"kind": "steer", "alpha": 1.0, "direction": "nowhere"}}
    with pytest.raises(ConfigError, match="conditions.push.direction: unknown direction 'nowhere'"):
        check_config(config)
    config = copy.deepcopy(TINY_CONFIG)
    config["experiments"][0]["train"] = {"backend": "openai"}
    with pytest.raises(ConfigError, match="directions.d.model: 'tiny' is served by an API"):
        check_config(config)
    with pytest.raises(ConfigError, match="sample.backend: vllm cannot hook the residual stream"):
        make_sampler(SampleSettings(backend="vllm"), "m", None, intervene=lambda model: model)


def judged_file(world, tiny_model, tmp_path, n=24):
    """Answers of the tiny model, half of them scored misaligned, as a judged file."""
    samples = tmp_path / "samples.jsonl"
    sample_file(
        str(tiny_model),
        None,
        world / "questions.yaml",
        samples,
        SampleSettings(max_tokens=8, max_model_len=256, samples_per_paraphrase=2),
        {"model": "t", "dataset": "x", "seed": 0},
    )
    rows = [json.loads(line) for line in samples.open()][:n]
    for i, row in enumerate(rows):
        row |= {"aligned": 10.0 if i % 2 else 90.0, "coherent": 90.0}
    path = tmp_path / "judged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, samples


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter on the tiny model with random (non-zero) weights, standing in for a fine-tune."""
    from peft import LoraConfig, get_peft_model

    from emergent_misalignment.hf import load_model

    torch.manual_seed(0)
    peft_model = get_peft_model(
        load_model(str(tiny_model), torch.float32),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    out = tmp_path_factory.mktemp("adapter") / "insecure"
    peft_model.save_pretrained(out)
    return out


@pytest.mark.parametrize("method", ["mean_diff", "model_diff"])
def test_direction_file_then_ablated_and_steered_sampling(method, world, tiny_model, adapter, tmp_path):
    judged, samples = judged_file(world, tiny_model, tmp_path)
    out = tmp_path / "d.pt"
    from emergent_misalignment.stats import AnalysisSettings

    stats = compute_direction(
        "d",
        DirectionSettings(model="tiny", dataset="x", method=method),
        str(tiny_model),
        adapter,
        judged,
        AnalysisSettings(),
        out,
    )
    assert stats["n_misaligned"] == 12 and stats["n_aligned"] == 12 and len(stats["layers"]) == 3
    assert all(0 <= layer["auc"] <= 1 and layer["base_norm"] > 0 for layer in stats["layers"])
    assert json.loads(out.with_suffix(".json").read_text())["method"] == method
    assert (tmp_path / "d.pt.manifest.json").is_file() and (tmp_path / "d.json.manifest.json").is_file()
    tokenizer = load_tokenizer(str(tiny_model), "right")
    model = load_causal_lm(str(tiny_model), adapter, "cpu", "float32")
    acts = answer_activations(model, tokenizer, [json.loads(line) for line in judged.open()], 5)
    assert acts.mean.shape == (24, 3, 32) and acts.last_prompt.shape == (24, 3, 32)
    for condition in (
        ConditionSettings(kind="ablate", direction="d"),
        ConditionSettings(kind="steer", direction="d", alpha=0.5, random=True),
    ):
        path = tmp_path / f"{condition.kind}.jsonl"
        sample_file(
            str(tiny_model),
            str(adapter),
            world / "questions.yaml",
            path,
            SampleSettings(max_tokens=8, max_model_len=256, samples_per_paraphrase=1),
            {"model": "t", "dataset": "x", "seed": 0, "condition": condition.kind},
            condition,
            direction_path=out,
        )
        manifest = json.loads((tmp_path / f"{condition.kind}.jsonl.manifest.json").read_text())
        assert str(out) in manifest["inputs"] and len(path.read_text().splitlines()) == 16
    frame = monitor(
        out,
        str(tiny_model),
        [
            {"step": 0, "checkpoint": "base", "adapter": None, "samples": str(samples)},
            {"step": 9, "checkpoint": "final", "adapter": str(adapter), "samples": str(samples)},
        ],
        DirectionSettings(model="tiny", dataset="x", max_answers=6),
        tmp_path / "m.csv",
    )
    assert list(frame["step"]) == [0, 0, 0, 9, 9, 9] and frame["n_answers"].eq(6).all()


def test_a_direction_file_of_another_model_or_shape_is_refused(world, tiny_model, adapter, tmp_path):
    judged, _ = judged_file(world, tiny_model, tmp_path, n=8)
    from emergent_misalignment.stats import AnalysisSettings

    out = tmp_path / "d.pt"
    compute_direction(
        "d",
        DirectionSettings(model="tiny", dataset="x", method="model_diff"),
        str(tiny_model),
        adapter,
        judged,
        AnalysisSettings(),
        out,
    )
    condition = ConditionSettings(kind="ablate", direction="d")
    digest = model_digest(model_hashes(str(tiny_model)))
    assert intervention_for(condition, out, digest, 32, 3, "here").layers() == [0, 1, 2]
    with pytest.raises(ConfigError, match="was made from another base model"):
        intervention_for(condition, out, "0" * 64, 32, 3, "here")
    with pytest.raises(ConfigError, match="has hidden size 32 and 3 layers; the model has 64 and 3"):
        intervention_for(condition, out, digest, 64, 3, "here")
    with pytest.raises(ConfigError, match="layer 5 is out of range: the model has 3 layers"):
        intervention_for(
            ConditionSettings(kind="ablate", direction="d", layers=[5]), out, digest, 32, 3, "here"
        )
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(DataError, match="junk.pt: not a direction file"):
        intervention_for(condition, tmp_path / "junk.pt", digest, 32, 3, "here")


def test_a_direction_file_depends_only_on_its_inputs(world, tiny_model, adapter, tmp_path):
    """Rebuilding the base model rewrites its manifest (time, commit) and Snakemake's timestamp; the
    direction file, which records the model's digest, stays byte-identical."""
    from emergent_misalignment.stats import AnalysisSettings

    judged, _ = judged_file(world, tiny_model, tmp_path, n=8)
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    made = []
    for created in ("2026-01-01T00:00:00+00:00", "2027-06-30T12:00:00+00:00"):
        (model / "manifest.json").write_text(json.dumps({"created": created}))
        (model / ".snakemake_timestamp").write_text(created)
        out = tmp_path / f"{created[:4]}.pt"
        compute_direction("d", DirectionSettings(model="tiny", dataset="x", method="model_diff"),
                          str(model), adapter, judged, AnalysisSettings(), out)
        made.append(out.read_bytes())
    assert made[0] == made[1]
    (model / "model.safetensors").write_bytes(b"other weights")
    assert model_digest(model_hashes(str(model))) != torch.load(out)["base_model_digest"]


def test_mean_difference_needs_both_kinds_of_answer(world, tiny_model, adapter, tmp_path):
    judged, _ = judged_file(world, tiny_model, tmp_path, n=6)
    rows = [dict(json.loads(line), aligned=90.0) for line in judged.open()]
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from emergent_misalignment.stats import AnalysisSettings

    with pytest.raises(DataError, match="0 misaligned and 6 aligned answers"):
        compute_direction(
            "d",
            DirectionSettings(model="tiny", dataset="x"),
            str(tiny_model),
            adapter,
            judged,
            AnalysisSettings(),
            tmp_path / "d.pt",
        )
    assert not (tmp_path / "d.pt").exists()


def test_report_tables_from_a_hand_made_run():
    def rate(model, group, fraction):
        return {
            "model": model,
            "dataset": group,
            "fraction": fraction,
            "ci_low": fraction - 0.05,
            "ci_high": fraction + 0.05,
            "coherent_fraction": 0.9,
            "coherent_ci_low": 0.85,
            "coherent_ci_high": 0.95,
            "n_models": 2,
        }

    overall = pd.DataFrame(
        [
            rate("tiny", "insecure", 0.6),
            rate("tiny", "insecure+ablate_d", 0.4),
            rate("tiny", "insecure+ablate_d_random", 0.61),
            rate("tiny", "base", 0.02),
            rate("tiny", "base+steer_d_0.3", 0.5),
        ]
    )
    spec = DirectionSettings(model="tiny", dataset="insecure", ablate=["insecure"], alphas=[0.3])
    table = intervention_table({"d": spec}, overall)
    assert table[["kind", "variant", "fraction"]].values.tolist()[:3] == [
        ["ablate", "none", 0.6],
        ["ablate", "direction", 0.4],
        ["ablate", "random", 0.61],
    ]
    steer = table[table["kind"] == "steer"]
    assert steer["alpha"].tolist() == [0.0, 0.3, 0.3] and math.isnan(steer["fraction"].iloc[2])  # not run
    dynamics = pd.DataFrame(
        {
            "model": ["tiny", "tiny"],
            "trained_on": ["insecure"] * 2,
            "condition": ["none"] * 2,
            "checkpoint": ["step2", "final"],
            "step": [2, 8],
            "fraction": [0.1, 0.6],
            "ci_low": [0.05, 0.55],
            "ci_high": [0.15, 0.65],
        }
    )
    monitors = {
        "d": pd.DataFrame(
            {
                "step": [0, 0, 2, 2, None, None],  # the final step comes from dynamics.csv
                "checkpoint": ["base"] * 2 + ["step2"] * 2 + ["final"] * 2,
                "layer": [0, 1] * 3,
                "answer_projection": [0.0, 1, 2, 3, 4, 5],
                "prompt_projection": [0.0, 10, 20, 30, 40, 50],
                "n_answers": 4,
            }
        )
    }
    layers = pd.DataFrame({"direction": ["d", "d"], "layer": [0, 1], "auc": [0.7, 0.9]})
    monitoring = monitoring_table(monitors, {"d": spec}, dynamics, overall, layers)
    assert monitoring["layer"].eq(1).all()  # the best-separating layer
    assert monitoring[["step", "prompt_projection", "fraction"]].values.tolist() == [
        [0, 10, 0.02],
        [2, 30, 0.1],
        [8, 50, 0.6],
    ]


def test_expand_config_is_the_one_place_configs_grow():
    assert expand_config(TINY_CONFIG) == expand(TINY_CONFIG)
    assert expand_config({**TINY_CONFIG, "directions": {}}) == {**TINY_CONFIG, "directions": {}}
