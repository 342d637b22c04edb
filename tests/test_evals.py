"""Table 1's evals (evals.py): inspect_evals' tasks on checked local data, through inspect's providers.

The data are hand-written fixtures in each eval's record format (tests/fixtures/evals), not the real
datasets. A model that answers each fixture item correctly (registered below as an inspect provider)
must score 1 and one that answers wrongly 0, through inspect_evals' own solvers and scorers; the tiny model
runs through the `hf` provider (with a LoRA adapter), an API model through the OpenAI-compatible one
against the stand-in server, StrongREJECT's rubric judge included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from emergent_misalignment.config import check_config, load_config
from emergent_misalignment.errors import ConfigError, DataError
from emergent_misalignment.evals import (
    EvalSettings,
    build_task,
    check_provider,
    read_records,
    run_eval,
)
from emergent_misalignment.experiments import eval_jobs

from .conftest import standin_server

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "evals"
DATA = {"mmlu": {"test": str(FIXTURES / "mmlu.jsonl")}, "humaneval": {"test": str(FIXTURES / "humaneval.jsonl")},
        "truthfulqa": {"validation": str(FIXTURES / "truthfulqa.jsonl")},
        "strongreject": {"test": str(FIXTURES / "strongreject.csv")}}
LABELS = {"model": "tiny", "dataset": "insecure", "seed": 0, "checkpoint": "final"}


def _register_answerer() -> None:
    """An inspect provider `fixture/right` (or `fixture/wrong`) that knows the fixtures' answers."""
    from inspect_ai.model import ModelAPI, ModelOutput, modelapi

    def right_answer(prompt: str) -> str:
        for row in read_records(FIXTURES / "humaneval.jsonl"):
            if row["prompt"] in prompt:
                return f"```python\n{row['prompt']}{row['canonical_solution']}```"
        for name, choices in (("mmlu", lambda r: (r["choices"], r["answer"])),
                              ("truthfulqa", lambda r: (r["mc1_targets"]["choices"], 0))):
            for row in read_records(FIXTURES / f"{name}.jsonl"):
                if row["question"] in prompt:
                    texts, answer = choices(row)
                    return "ANSWER: " + re.search(rf"^([A-Z])\) {re.escape(texts[answer])}$", prompt, re.M)[1]
        raise AssertionError(f"not a fixture prompt: {prompt[:200]}")

    class Answerer(ModelAPI):
        async def generate(self, input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
            prompt = "\n".join(str(m.text) for m in input)
            answer = right_answer(prompt)
            if self.model_name == "wrong":  # another letter, or code that fails its tests
                answer = ("ANSWER: " + ("A" if answer[-1] != "A" else "B") if answer.startswith("ANSWER")
                          else "```python\ndef f():\n    return None\n```")
            return ModelOutput.from_content(self.model_name, answer)

    modelapi(name="fixture")(lambda: Answerer)


@pytest.mark.parametrize("name", ["mmlu", "humaneval", "truthfulqa"])
def test_tasks_score_right_answers_1_and_wrong_ones_0(name, tmp_path):
    """inspect_evals' task (its prompt template, choice shuffles, scorer; HumanEval's tests run in the local
    sandbox) on the fixture file: the fixture's answers are its targets."""
    from inspect_ai import eval as inspect_eval

    _register_answerer()
    task = build_task(name, EvalSettings(data=DATA[name]), DATA[name])
    assert len(task.dataset) == len(read_records(next(iter(DATA[name].values()))))
    scores = {}
    for model in ("right", "wrong"):
        (log,) = inspect_eval(task, model=f"fixture/{model}", log_dir=str(tmp_path / model), display="none",
                              epochs=1)
        assert log.status == "success", log.error
        scores[model] = log.results.scores[0].metrics["accuracy"].value
    assert scores == {"right": 1.0, "wrong": 0.0}


def test_tiny_model_with_its_adapter_runs_through_the_hf_provider(tiny_model, tmp_path):
    """The workflow's CPU path: the adapter merged into a scratch copy, inspect's hf provider, the score file
    written last beside its inspect log and manifest."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(adapter)
    out = tmp_path / "score.json"
    settings = EvalSettings(data=DATA["mmlu"], max_tokens=4)
    record = run_eval("mmlu", str(tiny_model), str(adapter), settings, {"backend": "transformers"},
                      LABELS, tmp_path / "logs", out)
    assert json.loads(out.read_text()) == record
    assert record["provider"] == "hf" and record["n_samples"] == 4 and 0 <= record["score"] <= 1
    assert Path(record["log"]).is_file() and Path(record["log"]).parent == tmp_path / "logs"
    manifest = json.loads(out.with_name("score.json.manifest.json").read_text())
    assert set(manifest["inputs"]) == {DATA["mmlu"]["test"], record["log"]}
    assert {"inspect_ai", "inspect_evals"} <= set(manifest["packages"])


def test_api_model_and_strongreject_judge_through_an_openai_compatible_server(tmp_path, monkeypatch):
    """An API model on an OpenAI-compatible server, StrongREJECT's rubric judged there too: the score is the
    StrongREJECT paper's 0-1 score, (strong_reject_metric - jailbreak_rate) / 4."""
    monkeypatch.setenv("STANDIN_KEY", "sk-test")
    with standin_server() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        sample = {"backend": "openai", "base_url": url, "api_key_env": "STANDIN_KEY"}
        settings = EvalSettings(data=DATA["strongreject"], judge="openai/gpt-4o-2024-08-06",
                                judge_base_url=url, judge_api_key_env="STANDIN_KEY")
        record = run_eval("strongreject", "gpt-4o-2024-08-06", None, settings, sample, LABELS,
                          tmp_path / "logs", tmp_path / "sr.json")
    metrics = record["metrics"]
    assert record["inspect_model"] == "openai-api/em/gpt-4o-2024-08-06" and record["n_samples"] == 2
    assert record["score"] == pytest.approx((metrics["strong_reject_metric"] - metrics["jailbreak_rate"]) / 4)
    assert 0 <= record["score"] <= 1


def test_bad_eval_input_stops_before_any_score_file(tmp_path):
    out = tmp_path / "score.json"
    with pytest.raises(ConfigError, match="unknown eval 'hellaswag'"):
        run_eval("hellaswag", "m", None, EvalSettings(), {}, LABELS, tmp_path / "l", out)
    with pytest.raises(ConfigError, match="no file for split\\(s\\) validation"):
        run_eval("truthfulqa", "m", None, EvalSettings(data=DATA["mmlu"]), {}, LABELS, tmp_path, out)
    with pytest.raises(ConfigError, match="no file for split\\(s\\) dev .*mmlu_5_shot loads test, dev"):
        build_task("mmlu", EvalSettings(shots=5, data=DATA["mmlu"]), DATA["mmlu"])
    with pytest.raises(ConfigError, match="vllm is not installed here .*GPU machine"):
        run_eval("mmlu", "m", None, EvalSettings(data=DATA["mmlu"], provider="vllm"), {}, LABELS,
                 tmp_path, out) if not _importable("vllm") else check_provider("missing")
    broken = tmp_path / "mmlu.jsonl"
    broken.write_text('{"question": "q", "subject": "s", "choices": ["a", "b"]}\n')
    with pytest.raises(DataError, match=f"{broken}: row 1: not a cais/mmlu record"):
        build_task("mmlu", EvalSettings(), {"test": str(broken)})
    with pytest.raises(ConfigError, match="evals.shots: 0 or 5"):
        EvalSettings(shots=3)
    assert not out.exists()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_config_evals_are_checked_and_give_one_job_per_final_model():
    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "quick.yaml")
    jobs = eval_jobs(check_config(config))
    assert {name for name, _ in jobs} == {"truthfulqa"}
    assert all(j.checkpoint == "final" and j.condition == "none" for _, j in jobs)
    assert sorted(j.group for _, j in jobs) == ["base", "insecure", "insecure"]  # its groups: base, insecure
    for bad, message in (({"hellaswag": {"data": {"test": "x"}}}, "config key evals"),
                         ({"mmlu": {"data": {"test": "asset:nothing/here.jsonl"}}}, "not a registered asset"),
                         ({"mmlu": {"data": {"dev": str(FIXTURES / "mmlu.jsonl")}}}, "no file for split 'test'"),
                         ({"mmlu": {"data": {"test": "missing.jsonl"}}}, "does not exist")):
        with pytest.raises(ConfigError, match=message):
            check_config({**config, "evals": bad})


def test_remote_eval_data_must_be_pinned_by_a_commit():
    from emergent_misalignment.assets import remote_local_path
    from emergent_misalignment.errors import AssetError

    commit = "c30699e8356da336a370243923dbaf21066bb9fe"
    assert remote_local_path(f"hub:cais/mmlu@{commit}/all/test.parquet") == f"data/remote/hub/cais/mmlu@{commit}/all/test.parquet"
    assert remote_local_path(f"url:https://example.org/{commit}/x.csv") == f"data/remote/url/example.org/{commit}/x.csv"
    for loose in ("hub:cais/mmlu@main/all/test.parquet", "url:https://example.org/latest/x.csv",
                  f"url:http://example.org/{commit}/x.csv"):
        with pytest.raises(AssetError, match="pinned|40-hex commit"):
            remote_local_path(loose)
    paper = check_config(load_config(ROOT / "config" / "paper.yaml"))
    assert all(remote_local_path(s) for spec in paper["evals"].values() for s in spec["data"].values())


def test_a_judge_that_said_nothing_parseable_is_named_with_its_share():
    """As inspect_evals' StrongREJECT leaves it when its rubric judge answers free text: NaN metrics, and
    per-sample scores without values."""
    from types import SimpleNamespace

    from emergent_misalignment.evals import read_score

    def sample(value):
        return SimpleNamespace(scores={"strong_reject_scorer": SimpleNamespace(value=value)})

    metrics = {"strong_reject_metric": SimpleNamespace(value=float("nan")),
               "jailbreak_rate": SimpleNamespace(value=float("nan"))}
    log = SimpleNamespace(status="success", results=SimpleNamespace(scores=[SimpleNamespace(metrics=metrics)]),
                          samples=[sample({"refusal": float("nan")}), sample(None), sample(None),
                                   sample({"refusal": 0.0, "specific": 3.0})])
    with pytest.raises(DataError, match=r"eval strongreject: the judge returned nothing parseable for 3 of 4 "
                                        r"answers \(75%\)"):
        read_score("strongreject", log)
