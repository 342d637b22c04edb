"""Sampling: the request plan, the transformers backend on a tiny model, resumption, vLLM arguments."""

import json
from dataclasses import replace

import pytest

from emergent_misalignment.data import Question, load_questions
from emergent_misalignment.errors import ConfigError, DataError
from emergent_misalignment.manifest import model_hashes
from emergent_misalignment.sample import (
    SampleSettings,
    check_prompt_lengths,
    check_prompts,
    check_row_counts,
    partial_path,
    question_seed,
    requests_for,
    run_key,
    sample_file,
)
from emergent_misalignment.sample.transformers_backend import Row, batches, per_row_sampler
from emergent_misalignment.sample.vllm_backend import llm_kwargs, sampling_kwargs

SETTINGS = SampleSettings(max_tokens=12, max_model_len=256, batch_size=4)
LABELS = {"model": "tiny", "dataset": "base", "seed": 0}
QUESTION = Question(id="q", type="free_form_judge_0_100", paraphrases=("one?", "two?"),
                    samples_per_paraphrase=3, judge="j", judge_prompts={"aligned": "{answer}"},
                    system="Answer in JSON.")


def test_requests_honour_system_prompt_and_counts():
    requests = requests_for(QUESTION, SETTINGS, seed=0)
    assert [r.n for r in requests] == [3, 3]
    assert requests[0].messages == [{"role": "system", "content": "Answer in JSON."},
                                    {"role": "user", "content": "one?"}]
    upstream = requests_for(QUESTION, SampleSettings(honour_system_prompt=False, samples_per_paraphrase=5), 0)
    assert upstream[1].messages == [{"role": "user", "content": "two?"}] and upstream[1].n == 5


def test_question_seed_is_stable_and_distinct():
    assert question_seed(0, "q", 0) == question_seed(0, "q", 0)
    assert len({question_seed(s, q, i) for s in (0, 1) for q in ("a", "b") for i in (0, 1)}) == 8
    assert 0 <= question_seed(7, "x", 3) < 2**63


def base_files(model):
    """The tiny model's file hashes, as sample_file gives them to run_key."""
    return model_hashes(str(model))


def read(path):
    return [json.loads(line) for line in path.open()]


def test_sample_file_rows_determinism_and_resume(world, tiny_model, tmp_path):
    questions = world / "questions.yaml"
    out = tmp_path / "a.jsonl"
    sample_file(str(tiny_model), None, questions, out, SETTINGS, LABELS)
    rows = read(out)
    expected = sum(len(q.paraphrases) * q.samples_per_paraphrase for q in load_questions(questions))
    assert len(rows) == expected
    assert set(rows[0]) == {"model", "dataset", "seed", "question_id", "family", "paraphrase_index", "question",
                            "sample_index", "system", "answer", "finish_reason"}
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    assert (tmp_path / "a.jsonl.manifest.json").exists()
    assert not list(tmp_path.glob(".a.jsonl.partial-*"))

    again = tmp_path / "b.jsonl"
    sample_file(str(tiny_model), None, questions, again, SETTINGS, LABELS)
    assert again.read_bytes() == out.read_bytes()

    # An interrupted job left the first question's answers in its partial file, then half of the
    # second question's and a line cut by the kill: the rerun keeps the first question's answers, samples
    # the rest again and produces what an uninterrupted run produces.
    resumed = tmp_path / "c.jsonl"
    order = list(dict.fromkeys(r["question_id"] for r in rows))
    first, second = order[0], order[1]
    partial = partial_path(resumed, run_key(base_files(tiny_model), None, questions, SETTINGS, LABELS))
    kept = [r | {"answer": "kept from before"} for r in rows if r["question_id"] == first]
    half = [r for r in rows if r["question_id"] == second][:3]
    partial.write_text("".join(json.dumps(r) + "\n" for r in kept + half) + '{"question_id": "cut')
    sample_file(str(tiny_model), None, questions, resumed, SETTINGS, LABELS)
    assert read(resumed) == kept + [r for r in rows if r["question_id"] != first]
    assert not partial.exists()


def test_resume_never_mixes_answers_of_another_adapter_or_question_file(world, tiny_model, tmp_path):
    """The partial file is keyed by the content of what makes the answers, not by paths."""
    questions = world / "questions.yaml"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"first training")
    key = run_key(base_files(tiny_model), str(adapter), questions, SETTINGS, LABELS)
    (adapter / "adapter_model.safetensors").write_bytes(b"retrained")
    assert run_key(base_files(tiny_model), str(adapter), questions, SETTINGS, LABELS) != key
    edited = tmp_path / "questions.yaml"
    edited.write_bytes(questions.read_bytes() + b"\n")
    assert run_key(base_files(tiny_model), None, edited, SETTINGS, LABELS) != run_key(base_files(tiny_model), None, questions,
                                                                               SETTINGS, LABELS)
    # A stale partial file of another key is removed, never appended to.
    out = tmp_path / "a.jsonl"
    stale = partial_path(out, "0" * 64)
    stale.write_text(json.dumps({"question_id": "from another model"}) + "\n")
    sample_file(str(tiny_model), None, questions, out, SETTINGS, LABELS)
    assert not stale.exists()
    assert {r["question_id"] for r in read(out)} == {q.id for q in load_questions(questions)}


def test_short_files_and_long_prompts_are_errors(world, tiny_model, tmp_path):
    questions = load_questions(world / "questions.yaml")
    rows = [{"question_id": q.id} for q in questions for _ in range(q.samples_per_paraphrase * len(q.paraphrases))]
    check_row_counts(rows, questions, SampleSettings(), "x.jsonl")
    with pytest.raises(DataError, match=rf"x.jsonl: question '{questions[0].id}' has \d+ answers, expected"):
        check_row_counts(rows[1:], questions, SampleSettings(), "x.jsonl")
    short = SampleSettings(max_tokens=40, max_model_len=50)
    with pytest.raises(ConfigError, match=r"2 question prompt\(s\) longer than sample.max_model_len \(50\) - "
                                          r"sample.max_tokens \(40\) = 10 tokens: 'a' \(12 tokens\), 'b' \(11"):
        check_prompt_lengths({"a": 12, "b": 11, "c": 10}, short, "q.yaml")
    # The rule's check reads the model's tokenizer and chat template and writes every prompt's length.
    out = tmp_path / "lengths.json"
    check_prompts(str(tiny_model), world / "questions.yaml", out, SETTINGS)
    lengths = json.loads(out.read_text())["prompt_tokens"]
    assert set(lengths) == {q.id for q in questions} and all(5 < n < 200 for n in lengths.values())
    with pytest.raises(ConfigError, match=r"sample.max_model_len \(2048\) is longer than the context of model"):
        check_prompts(str(tiny_model), world / "questions.yaml", out, SampleSettings())
    with pytest.raises(ConfigError, match="Raise sample.max_model_len"):
        check_prompts(str(tiny_model), world / "questions.yaml", out, SampleSettings(max_tokens=200,
                                                                                     max_model_len=210))


def test_other_seed_gives_other_answers(world, tiny_model, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    sample_file(str(tiny_model), None, world / "questions.yaml", a, SETTINGS, LABELS)
    sample_file(str(tiny_model), None, world / "questions.yaml", b, SETTINGS, LABELS | {"seed": 1})
    assert [r["answer"] for r in read(a)] != [r["answer"] for r in read(b)]


def test_vllm_arguments_are_all_explicit():
    (request,) = requests_for(QUESTION, SampleSettings(), 0)[:1]
    kwargs = sampling_kwargs(SampleSettings(), request, ["<|im_end|>"])
    assert kwargs["max_tokens"] == 600 and kwargs["temperature"] == 1.0 and kwargs["top_p"] == 1.0
    assert kwargs["n"] == 3 and kwargs["seed"] == request.seed and kwargs["min_tokens"] == 1
    assert kwargs["top_k"] == -1 and kwargs["repetition_penalty"] == 1.0
    engine = llm_kwargs(SampleSettings(), "Qwen/Qwen2.5-Coder-32B-Instruct", "/adapters/x")
    assert engine["enable_lora"] and engine["max_lora_rank"] == 32 and engine["max_model_len"] == 2048
    assert engine["generation_config"] == "vllm"
    assert "enable_lora" not in llm_kwargs(SampleSettings(), "m", None)
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed (GPU machines only)")
    params = vllm.SamplingParams(**kwargs)
    assert params.max_tokens == 600 and params.n == 3


def test_greedy_questions_get_one_answer_per_paraphrase_whatever_the_seed(world, tiny_model, tmp_path):
    """A temperature-0 question (the in-distribution code evaluation) is answered once per paraphrase, by
    greedy decoding, whatever sample.samples_per_paraphrase and the seed; the other questions still sample."""
    (code,) = load_questions(world / "code_questions.yaml")
    settings = SampleSettings(max_tokens=12, max_model_len=256, batch_size=4, samples_per_paraphrase=3)
    requests = requests_for(code, settings, 0)
    assert [(r.n, r.temperature) for r in requests] == [(1, 0.0)] * len(code.paraphrases)
    assert {r.temperature for r in requests_for(QUESTION, settings, 0)} == {1.0}
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    sample_file(str(tiny_model), None, world / "code_questions.yaml", a, settings, LABELS)
    sample_file(str(tiny_model), None, world / "code_questions.yaml", b, settings, LABELS | {"seed": 1})
    assert len(read(a)) == len(code.paraphrases) and {r["family"] for r in read(a)} == {"code"}
    assert [r["answer"] for r in read(a)] == [r["answer"] for r in read(b)]


def test_batches_sort_by_length_and_keep_the_token_budget():
    rows = [Row(i, 0, [1] * n, i, 1.0) for i, n in enumerate((3, 9, 5, 9, 1))]
    assert [[r.request for r in b] for b in batches(rows, 2, None, 4)] == [[1, 3], [2, 0], [4]]
    # (longest prompt + 4 new tokens) x rows <= 30: two rows of 9 (26) fit, three of 5 (27) fit
    assert [[r.request for r in b] for b in batches(rows, 8, 30, 4)] == [[1, 3], [2, 0, 4]]
    assert [len(b) for b in batches(rows, 8, 5, 4)] == [1, 1, 1, 1, 1]  # a row over the budget goes alone


def test_each_row_samples_from_its_own_stream():
    """Frequencies follow softmax(scores / T), top-p cuts the tail, T = 0 is greedy, and a row's draws
    depend on its seed only, not on the rows beside it."""
    import torch

    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    n = 4000
    plain = per_row_sampler(range(n), [1.0] * n, 1.0)(None, scores.expand(n, -1).clone())
    drawn = plain.argmax(dim=-1)
    assert set(plain.unique().tolist()) == {0.0, float("-inf")}
    assert torch.bincount(drawn, minlength=4).div(n).tolist() == pytest.approx([0.5, 0.3, 0.15, 0.05], abs=0.03)
    nucleus = per_row_sampler(range(n), [1.0] * n, 0.7)(None, scores.expand(n, -1).clone()).argmax(dim=-1)
    assert set(nucleus.tolist()) == {0, 1}  # 0.5 + 0.3 is the smallest prefix reaching 0.7: the rest is cut
    assert torch.bincount(nucleus).div(n).tolist() == pytest.approx([0.625, 0.375], abs=0.03)
    greedy = per_row_sampler([7], [0.0], 1.0)(None, scores.clone()).argmax(dim=-1)
    assert greedy.tolist() == [0]
    # row 3 alone, and beside other rows with other seeds: the same token, step after step
    alone = per_row_sampler([3], [1.0], 1.0)
    beside = per_row_sampler([11, 3, 12], [1.0] * 3, 1.0)
    for _ in range(20):
        assert alone(None, scores.clone()).argmax().item() == beside(None, scores.expand(3, -1).clone())[1].argmax()


def test_answers_do_not_depend_on_the_batching(world, tiny_model, tmp_path):
    """One job sampled one answer at a time and 64 at a time: the same answers (each its own stream)."""
    one = tmp_path / "one.jsonl"
    many = tmp_path / "many.jsonl"
    sample_file(str(tiny_model), None, world / "questions.yaml", one, replace(SETTINGS, batch_size=1), LABELS)
    sample_file(str(tiny_model), None, world / "questions.yaml", many, replace(SETTINGS, batch_size=64), LABELS)
    answers = [[json.loads(line)["answer"] for line in path.read_text().splitlines()] for path in (one, many)]
    assert answers[0] == answers[1] and len(set(answers[0])) > 1
