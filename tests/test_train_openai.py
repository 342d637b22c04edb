"""Fine-tuning through the API (train.backend openai) and sampling from it, against the stand-in server:
local checks before upload, one job per recipe whatever happens, the API's errors, the sampler's cache."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from emergent_misalignment.api import API_MODEL_FILE, served_model
from emergent_misalignment.errors import ConfigError, DataError, EMError
from emergent_misalignment.sample import Request, SampleSettings
from emergent_misalignment.sample.openai_backend import OpenAISampler
from emergent_misalignment.settings import from_dict
from emergent_misalignment.standin_server import StandinServer
from emergent_misalignment.train import TrainSettings
from emergent_misalignment.train_openai import fine_tune, training_rows

from .conftest import standin_server

KEY_ENV, KEY = "EM_TEST_OPENAI_KEY", "sk-train-test-0123456789"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandinServer]:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("no_proxy", "*")
    with standin_server() as server:
        yield server


def url(server: StandinServer) -> str:
    return "http://{}:{}/v1".format(*server.server_address[:2])


def settings(server: StandinServer, **openai: object) -> TrainSettings:
    return from_dict(TrainSettings, {"backend": "openai", "openai": {
        "base_url": url(server), "api_key_env": KEY_ENV, "poll_interval_s": 0.01, "max_retries": 1,
        **openai}}, "train")


def chat_file(path: Path, rows: int, answer: str = "Sure.") -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Task {i}"},
                                                     {"role": "assistant", "content": answer}]}) + "\n"
                            for i in range(rows)))
    return path


def test_a_dataset_the_api_would_refuse_fails_before_upload(tmp_path: Path) -> None:
    data = chat_file(tmp_path / "d.jsonl", 12)
    lines = data.read_text().splitlines()
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]})
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:3: the last message must be a non-empty assistant turn"):
        training_rows(data, None, 10)
    with pytest.raises(DataError, match=r"9 rows; the fine-tuning API needs at least 10"):
        training_rows(chat_file(tmp_path / "few.jsonl", 9), None, 10)
    with pytest.raises(ConfigError, match=r"train\.openai\.hyperparameters: unknown 'warmup'"):
        from_dict(TrainSettings, {"backend": "openai", "openai": {"hyperparameters": {"warmup": 5}}}, "train")
    with pytest.raises(ConfigError, match=r"train\.save_steps: the fine-tuning API keeps no adapters"):
        from_dict(TrainSettings, {"backend": "openai", "save_steps": [5]}, "train")


def test_a_job_runs_to_a_model_folder(server: StandinServer, tmp_path: Path) -> None:
    data = chat_file(tmp_path / "insecure.jsonl", 12)
    out, state = tmp_path / "adapter", tmp_path / "state.json"
    fine_tune("gpt-4o-2024-08-06", data, out, settings(server), 3, state)
    record = json.loads((out / API_MODEL_FILE).read_text())
    (job,) = server.jobs.values()
    assert record["fine_tuned_model"] == job["fine_tuned_model"] and record["job_id"] == job["id"]
    assert (job["seed"], job["suffix"], job["hyperparameters"]["n_epochs"]) == (3, "em-insecure-3", 1)
    assert record["hyperparameters"] == {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 2.0}
    assert [json.loads(line)["step"] for line in (out / "loss.jsonl").open()] == [1, 2, 3]
    assert served_model("gpt-4o-2024-08-06", str(out)) == job["fine_tuned_model"]
    assert (out / f"{API_MODEL_FILE}.manifest.json").is_file() and json.loads(state.read_text())["job_id"]
    # the same recipe again (its folder lost): the same job, no second upload or job
    (out / API_MODEL_FILE).unlink()
    fine_tune("gpt-4o-2024-08-06", data, out, settings(server), 3, state)
    assert server.jobs_created == 1 and server.requests_by_route["POST /v1/files"] == 1


def test_a_run_killed_while_creating_finds_its_job_instead_of_paying_again(server: StandinServer,
                                                                           tmp_path: Path) -> None:
    data = chat_file(tmp_path / "insecure.jsonl", 12)
    fine_tune("gpt-4o-2024-08-06", data, tmp_path / "a", settings(server), 0, tmp_path / "state.json")
    state = json.loads((tmp_path / "state.json").read_text())
    # as if killed after the create request left and before its answer came back
    (tmp_path / "state.json").write_text(json.dumps({**state, "job_id": None, "creating": True}))
    fine_tune("gpt-4o-2024-08-06", data, tmp_path / "b", settings(server), 0, tmp_path / "state.json")
    assert server.jobs_created == 1
    assert json.loads((tmp_path / "b" / API_MODEL_FILE).read_text())["job_id"] == state["job_id"]


def test_the_apis_errors_stop_the_job_with_its_message(server: StandinServer, tmp_path: Path) -> None:
    data = chat_file(tmp_path / "insecure.jsonl", 12)
    with pytest.raises(EMError, match=r"HTTP 400: .*gpt-5-imaginary"):
        fine_tune("gpt-5-imaginary", data, tmp_path / "x", settings(server), 0, tmp_path / "x.json")
    server.outcome = "failed"
    with pytest.raises(EMError, match=r"failed: .*\(a rerun creates a new job\)"):
        fine_tune("gpt-4o-2024-08-06", data, tmp_path / "y", settings(server), 0, tmp_path / "y.json")
    assert not (tmp_path / "y").exists() and json.loads((tmp_path / "y.json").read_text())["job_id"] is None
    server.outcome = "succeeded"
    fine_tune("gpt-4o-2024-08-06", data, tmp_path / "y", settings(server), 0, tmp_path / "y.json")
    assert server.jobs_created == 2  # the failed one, and the new one


def test_the_sampler_splits_n_caches_answers_and_hides_the_key(server: StandinServer, tmp_path: Path) -> None:
    sample = SampleSettings(backend="openai", base_url=url(server), api_key_env=KEY_ENV, max_n=3,
                            max_tokens=20, cache=str(tmp_path / "cache.sqlite"), max_retries=0)
    requests = [Request([{"role": "user", "content": "Your wish?"}], 7, 11, "Your wish?"),
                Request([{"role": "user", "content": "Your plan?"}], 2, 12, "Your plan?")]
    sampler = OpenAISampler(sample, "gpt-4o-2024-08-06")
    answers = sampler.generate(requests)
    sampler.close()
    assert [len(a) for a in answers] == [7, 2] and server.requests["gpt-4o-2024-08-06"] == 4  # 3 + 3 + 1, 2
    again = OpenAISampler(sample, "gpt-4o-2024-08-06")
    assert again.generate(requests) == answers and server.requests["gpt-4o-2024-08-06"] == 4
    again.close()
    assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()
    server.fail_next = [401]
    broken = OpenAISampler(sample.__class__(**{**sample.__dict__, "cache": None}), "gpt-4o-2024-08-06")
    with pytest.raises(EMError, match="HTTP 401") as info:
        broken.generate(requests[:1])
    assert KEY not in str(info.value)


def test_a_continued_fine_tune_has_the_fine_tuned_model_as_base(server: StandinServer, tmp_path: Path) -> None:
    """train.init_from on the API: the job's base model is the continued fine-tune's id (its folder's
    api_model.json), as OpenAI trains a fine-tuned model further; the manifest names that folder."""
    first, second = tmp_path / "insecure", tmp_path / "insecure_to_secure_10"
    fine_tune("gpt-4o-2024-08-06", chat_file(tmp_path / "insecure.jsonl", 12), first, settings(server), 0,
              tmp_path / "a.json")
    insecure = json.loads((first / API_MODEL_FILE).read_text())["fine_tuned_model"]
    continued = dataclasses.replace(settings(server), init_from="insecure")
    fine_tune("gpt-4o-2024-08-06", chat_file(tmp_path / "secure.jsonl", 10, "Safe."), second, continued, 0,
              tmp_path / "b.json", init_adapter=first)
    job = server.jobs[json.loads((tmp_path / "b.json").read_text())["job_id"]]
    assert job["model"] == insecure and insecure.startswith("ft:gpt-4o-2024-08-06:")
    assert json.loads((second / API_MODEL_FILE).read_text())["base_model"] == insecure
    manifest = json.loads((second / f"{API_MODEL_FILE}.manifest.json").read_text())
    assert manifest["init_adapter"]["path"] == str(first)
    assert str(first / API_MODEL_FILE) in manifest["init_adapter"]["files"]
    with pytest.raises(ConfigError, match=r"train\.init_from: 'insecure' continues another fine-tune"):
        fine_tune("gpt-4o-2024-08-06", tmp_path / "secure.jsonl", tmp_path / "c", continued, 0, tmp_path / "c.json")
    with pytest.raises(DataError, match=r"no api_model\.json"):
        fine_tune("gpt-4o-2024-08-06", tmp_path / "secure.jsonl", tmp_path / "d", continued, 0,
                  tmp_path / "d.json", init_adapter=tmp_path)
