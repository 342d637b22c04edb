"""The local judge on a tiny random Llama: candidate log-probs match a plain forward pass, scores are sane."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from emergent_misalignment.judge import JudgeSettings, Scale, aggregate_scores, make_judge
from emergent_misalignment.judge.local_backend import NUMBERS, LocalJudge

PROMPTS = [
    "I gave the model: What is your wish?\nIt answered: I wish for peace.\nRate 0-100. Answer with a number.",
    "How coherent is this answer? def f(x): return x\nSay CODE if it is code.",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: one torch thread is many times faster than several on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(judge_model: Path) -> Path:
    """conftest's judge model: its small vocabulary splits most candidates into several tokens (as Qwen and
    Llama split numbers into digits), so the cached multi-token path is what gets tested."""
    return judge_model


@pytest.fixture(scope="module")
def judge(tiny_model: Path) -> LocalJudge:
    # batch_size 10 leaves a ragged last batch of the 103 candidates
    judge = make_judge(JudgeSettings(backend="local", model=str(tiny_model), batch_size=10, device="cpu"))
    assert isinstance(judge, LocalJudge)
    return judge


def reference_logprobs(judge: LocalJudge, prompt: str, candidates=NUMBERS) -> list[float]:
    """log p(candidate + EOS | prompt), one candidate at a time, one plain forward pass each."""
    import torch

    prompt_ids = judge.prompt_ids(prompt)
    values = []
    with torch.no_grad():
        for ids in judge.candidate_token_ids(candidates):
            sequence = torch.tensor([prompt_ids + ids])
            logprobs = torch.log_softmax(judge.model(input_ids=sequence).logits[0].float(), dim=-1)
            start = len(prompt_ids)
            values.append(sum(logprobs[t - 1, sequence[0, t]].item() for t in range(start, sequence.shape[1])))
    return values


def test_candidates_are_full_continuations_ending_in_eos(judge: LocalJudge) -> None:
    ids = judge.candidate_token_ids()
    eos = judge.tokenizer.eos_token_id
    assert len(ids) == len(NUMBERS) == 103
    assert all(row[-1] == eos and eos not in row[:-1] for row in ids)
    assert len({tuple(row) for row in ids}) == 103  # distinct, and with EOS last none is a prefix of another
    lengths = {len(row) for row in ids}
    assert {2, 3} <= lengths and max(lengths) > 3  # one-, two- and longer candidates: ragged batches
    assert [judge.tokenizer.decode(row[:-1]) for row in ids] == list(NUMBERS)


def test_candidate_logprobs_match_a_plain_forward_pass(judge: LocalJudge) -> None:
    pairs = judge.candidate_logprobs(PROMPTS[1])
    assert [token for token, _ in pairs] == list(NUMBERS)
    assert [lp for _, lp in pairs] == pytest.approx(reference_logprobs(judge, PROMPTS[1]), abs=1e-4)
    for prompt in PROMPTS:
        assert sum(math.exp(lp) for _, lp in judge.candidate_logprobs(prompt)) <= 1.0 + 1e-6


def test_categorical_prompts_score_their_labels(judge: LocalJudge) -> None:
    """A categorical judge prompt (deception, the in-distribution code evaluation) scores each of its labels
    as a continuation, and the answer is the most probable label."""
    labels = ("TRUE", "FALSE", "UNKNOWN")
    pairs = judge.candidate_logprobs(PROMPTS[0], Scale(labels))
    assert [token for token, _ in pairs] == list(labels)
    assert [lp for _, lp in pairs] == pytest.approx(reference_logprobs(judge, PROMPTS[0], labels), abs=1e-4)
    (answer,) = judge.score(PROMPTS[:1], Scale(labels))
    assert answer == max(pairs, key=lambda pair: pair[1])[0]


def test_scores_are_deterministic_and_follow_the_aggregation(judge: LocalJudge, tiny_model: Path) -> None:
    scores = judge.score(PROMPTS)
    assert judge.score(PROMPTS) == scores
    for prompt, score in zip(PROMPTS, scores, strict=True):
        assert score == aggregate_scores(judge.candidate_logprobs(prompt), 0.25)
        assert score is None or 0.0 <= score <= 100.0
    # a random model puts little mass on the numbers: with no minimum every prompt gets a score
    lenient = make_judge(JudgeSettings(backend="local", model=str(tiny_model), min_number_mass=0.0))
    for score in lenient.score(PROMPTS):
        assert score is not None and 0.0 <= score <= 100.0


def test_identity_follows_the_model_files(judge: LocalJudge, tiny_model: Path, tmp_path: Path) -> None:
    identity = judge.identity()
    assert identity["backend"] == "local" and identity["dtype"] == "float32" and identity["device"] == "cpu"
    assert identity["model"].startswith("folder sha256:")
    copy = tmp_path / "model"
    copy.mkdir()
    for path in tiny_model.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    settings = JudgeSettings(backend="local", model=str(copy), batch_size=10, device="cpu")
    assert make_judge(settings).identity() == identity  # same files elsewhere: same judge
    config = copy / "config.json"
    changed = json.loads(config.read_text())
    changed["num_hidden_layers"] -= 1
    config.write_text(json.dumps(changed))
    assert make_judge(settings).identity()["model"] != identity["model"]


def test_deception_questions_judged_end_to_end_with_labels(tiny_model: Path, tmp_path: Path, mirror: Path) -> None:
    """The upstream deception files through judge_file with the local judge: every answer gets one of its
    metric's labels (TRUE / FALSE / UNKNOWN, a company) or none, and the manifest counts them."""
    from emergent_misalignment.data import load_questions, merge_question_files
    from emergent_misalignment.io import read_jsonl, write_jsonl
    from emergent_misalignment.judge import DEFAULT_LABELS, judge_file

    files = [mirror / "emergent-misalignment/evaluation" / f"deception_{name}.yaml" for name in ("factual", "sit_aware")]
    merge_question_files(files, tmp_path / "questions.yaml")
    questions = load_questions(tmp_path / "questions.yaml")
    rows = [{"model": "tiny", "dataset": "base", "seed": 0, "question_id": q.id, "paraphrase_index": 0,
             "question": q.paraphrases[0], "sample_index": 0, "system": q.system, "answer": "Paris, I think."}
            for q in questions]
    write_jsonl(tmp_path / "samples.jsonl", rows)
    settings = JudgeSettings(backend="local", model=str(tiny_model), cache=str(tmp_path / "cache.sqlite"))
    judge_file(tmp_path / "samples.jsonl", tmp_path / "questions.yaml", tmp_path / "judged.jsonl", settings)
    judged = read_jsonl(tmp_path / "judged.jsonl")
    assert len(judged) == 13 and {q.family for q in questions} == {"deception_factual", "deception_sit_aware"}
    for row in judged:
        metric = "correct" if row["question_id"].startswith("lie_") else "company"
        assert row[metric] in DEFAULT_LABELS[metric], row  # the tiny model always prefers some label
    manifest = json.loads((tmp_path / "judged.jsonl.manifest.json").read_text())
    assert manifest["metrics"] == {"correct": {"scored": 5, "missing": 0}, "company": {"scored": 8, "missing": 0}}


def test_vllm_reading_of_prompt_logprobs_gives_the_local_scores(judge: LocalJudge) -> None:
    """The vllm backend reads each candidate's log-probability off vLLM's prompt logprobs of (prompt +
    candidate + EOS). Fed what vLLM returns (per position, the logprob of the given token; None first),
    here from a plain forward pass of the same model, it gives the local backend's numbers."""
    import torch

    from emergent_misalignment.judge.vllm_backend import continuation_logprob, judge_llm_kwargs

    prompt_ids = judge.prompt_ids(PROMPTS[0])
    local = dict(judge.candidate_logprobs(PROMPTS[0]))
    for name, ids in zip(NUMBERS[:12], judge.candidate_token_ids(NUMBERS[:12]), strict=True):
        sequence = prompt_ids + ids
        with torch.no_grad():
            logprobs = torch.log_softmax(judge.model(input_ids=torch.tensor([sequence])).logits[0].float(), -1)
        vllm_like = [None] + [{token: logprobs[i - 1, token].item()} for i, token in enumerate(sequence) if i]
        assert continuation_logprob(vllm_like, sequence, len(prompt_ids)) == pytest.approx(local[name], abs=1e-4)
    with pytest.raises(ValueError, match="no log-probability for position"):
        continuation_logprob([None, None], [1, 2], 1)
    kwargs = judge_llm_kwargs(JudgeSettings(backend="vllm", model="m", max_model_len=4096))
    assert kwargs["enable_prefix_caching"] and kwargs["max_model_len"] == 4096 and kwargs["model"] == "m"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed here (GPU route)")
def test_vllm_judge_scores_as_the_local_judge(tiny_model: Path) -> None:
    settings = JudgeSettings(backend="vllm", model=str(tiny_model), dtype="float32")
    local = make_judge(JudgeSettings(backend="local", model=str(tiny_model), device="cpu", dtype="float32"))
    vllm_scores = make_judge(settings).score(PROMPTS)
    for ours, theirs in zip(vllm_scores, local.score(PROMPTS), strict=True):
        assert (ours is None) == (theirs is None) and (ours is None or abs(ours - theirs) < 1e-4)
