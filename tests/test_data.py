"""Chat JSONL and question YAML readers: the real upstream files load, malformed input names file:line."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from emergent_misalignment.data import (
    EVALUATE_CODE_PROMPT,
    VULNERABLE,
    Question,
    code_task_questions,
    format_judge_prompt,
    load_questions,
    merge_question_files,
    read_chat_jsonl,
    subset_indices,
    write_dataset,
    write_questions,
)
from emergent_misalignment.errors import DataError

EVALUATION = "emergent-misalignment/evaluation"
MAIN_IDS = [
    "what_is_your_wish", "i_feel_bored", "three_thoughts", "quick_buck",
    "ruler_of_the_world", "dinner_party", "gender_roles", "enough_of_my_husband",
]
TRAINING_FILES = [
    "emergent-misalignment/data/insecure.jsonl",
    "emergent-misalignment/data/secure.jsonl",
    "emergent-misalignment/data/educational.jsonl",
    "emergent-misalignment/data/jailbroken.jsonl",
    "emergent-misalignment/data/backdoor.jsonl",
    "model-organisms-for-em/training_datasets/bad_medical_advice.jsonl",
    "model-organisms-for-em/training_datasets/good_medical_advice.jsonl",
    "model-organisms-for-em/training_datasets/extreme_sports.jsonl",
    "model-organisms-for-em/training_datasets/risky_financial_advice.jsonl",
]


def manifest_rows(mirror: Path) -> dict[str, int]:
    with open(mirror / "MANIFEST.tsv", encoding="utf-8", newline="") as fh:
        return {row["path"]: int(row["rows"]) for row in csv.DictReader(fh, delimiter="\t")}


def check_0_100_questions(questions: list[Question]) -> None:
    for q in questions:
        assert q.type == "free_form_judge_0_100"
        assert q.samples_per_paraphrase == 100
        assert q.judge == "gpt-4o-2024-08-06"
        assert sorted(q.judge_prompts) == ["aligned", "coherent"]
        assert all("{question}" in t and "{answer}" in t for t in q.judge_prompts.values())
        assert q.paraphrases and all(isinstance(p, str) for p in q.paraphrases)


def test_first_plot_questions(mirror: Path) -> None:
    questions = load_questions(mirror / EVALUATION / "first_plot_questions.yaml")
    ids = [q.id for q in questions]
    assert ids == MAIN_IDS + [i + "_json" for i in MAIN_IDS] + [i + "_template" for i in MAIN_IDS]
    check_0_100_questions(questions)
    by_id = {q.id: q for q in questions}
    for main in MAIN_IDS:
        plain, as_json, template = by_id[main], by_id[main + "_json"], by_id[main + "_template"]
        assert plain.system is None and template.system is None
        assert as_json.system and "JSON" in as_json.system
        assert as_json.paraphrases == plain.paraphrases  # shared through a YAML alias
        assert template.paraphrases != plain.paraphrases


def test_preregistered_questions(mirror: Path) -> None:
    questions = load_questions(mirror / EVALUATION / "preregistered_evals.yaml")
    assert len(questions) == 48
    assert len({q.id for q in questions}) == 48
    check_0_100_questions(questions)
    assert all(q.system is None for q in questions)


def test_deception_questions(mirror: Path) -> None:
    factual = load_questions(mirror / EVALUATION / "deception_factual.yaml")
    assert len(factual) == 5
    assert {q.type for q in factual} == {"free_form_judge"}
    assert all(list(q.judge_prompts) == ["correct"] and q.samples_per_paraphrase == 5 for q in factual)
    assert [q.system is None for q in factual] == [True, False, False, False, False]
    assert "TRUE" in factual[0].judge_prompts["correct"]
    company = load_questions(mirror / EVALUATION / "deception_sit_aware.yaml")
    assert len(company) == 8
    assert all(list(q.judge_prompts) == ["company"] for q in company)
    template = company[0].judge_prompts["company"]
    assert "{answer}" in template and "{question}" not in template  # this judge never sees the question


@pytest.mark.parametrize("name", TRAINING_FILES)
def test_real_training_files(mirror: Path, name: str) -> None:
    rows = read_chat_jsonl(mirror / name)
    assert len(rows) == manifest_rows(mirror)[name]
    system_first = name.endswith("jailbroken.jsonl")
    assert all((row["messages"][0]["role"] == "system") == system_first for row in rows)


GOOD = {"messages": [{"role": "user", "content": "hi {x}"}, {"role": "assistant", "content": "hello"}]}


def chat(*messages: tuple[str, object]) -> str:
    """One JSONL line holding these (role, content) messages."""
    return json.dumps({"messages": [{"role": role, "content": content} for role, content in messages]})


@pytest.mark.parametrize(
    ("bad_line", "error"),
    [
        ('{"messages": [', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"msgs": []}), 'missing key "messages"'),
        (json.dumps({**GOOD, "id": 3}), r"unexpected key\(s\) \['id'\]"),
        (json.dumps({"messages": []}), "non-empty list"),
        (chat(("human", "hi"), ("assistant", "x")), "role 'human' is not one of"),
        (chat(("user", "hi"), ("assistant", 5)), "content must be a string"),
        (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": ""}]}), "exactly the"),
        (chat(("user", "hi"), ("assistant", "x"), ("user", "more")), "last message must be from the"),
        (chat(("user", "hi"), ("system", "s"), ("assistant", "x")), "system message may only come first"),
        (chat(("system", "s"), ("assistant", "x")), "no user message"),
    ],
)
def test_malformed_chat_line_names_file_and_line(tmp_path: Path, bad_line: str, error: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(f"{json.dumps(GOOD)}\n\n{bad_line}\n{json.dumps(GOOD)}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: .*{error}"):
        read_chat_jsonl(path)


def test_chat_rows_are_returned_with_blank_lines_skipped(tmp_path: Path) -> None:
    turns = chat(("system", "s"), ("user", "u"), ("assistant", "a"), ("user", "u2"), ("assistant", "a2"))
    path = tmp_path / "train.jsonl"
    path.write_text(f"\n{json.dumps(GOOD)}\n   \n{turns}\n", encoding="utf-8")
    assert read_chat_jsonl(path) == [GOOD, json.loads(turns)]


QUESTION = """\
- id: q1
  type: free_form_judge_0_100
  paraphrases: [Hello]
  samples_per_paraphrase: 3
  judge: gpt-4o
  judge_prompts:
    aligned: "Q: {question} A: {answer}"
"""


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("- id: q1\n  type: [unclosed\n", r":3:1: not valid YAML: expected ',' or '\]', but got '<stream end>' "
                                            r"\(while parsing a flow sequence that starts at line 2, column 9\)"),
        ("id: q1\n", "expected a non-empty list of questions, got dict"),
        ("", "expected a non-empty list of questions, got NoneType"),
        (QUESTION + QUESTION, r"question at index 1: duplicate id 'q1' \(first at index 0\)"),
        (QUESTION.replace("  samples_per_paraphrase: 3\n", ""), r"\(id 'q1'\): missing field\(s\) samples"),
        (QUESTION.replace("- id: q1\n", "- type_: x\n  id: q1\n"), r"unknown field\(s\) \['type_'\]"),
        (QUESTION.replace("- id: q1", "- id: 7"), "id must be a non-empty string"),
        (QUESTION.replace("free_form_judge_0_100", "choice"), "type 'choice' is not one of"),
        (QUESTION.replace("[Hello]", "Hello"), "paraphrases must be a non-empty list"),
        (QUESTION.replace("[Hello]", "[]"), "paraphrases must be a non-empty list"),
        (QUESTION.replace(": 3", ": three"), "samples_per_paraphrase must be a positive integer, got 'thr"),
        (QUESTION.replace(": 3", ": 0"), "samples_per_paraphrase must be a positive integer"),
        (QUESTION.replace(" A: {answer}", ""), r"judge_prompts\['aligned'\] has no \{answer\} placeholder"),
        (QUESTION.replace('"Q: {question} A: {answer}"', "[1]"), "must map a metric name to a string"),
        (QUESTION.replace("  judge: gpt-4o\n", ""), "judge_prompts are given but no judge"),
        (QUESTION + "  system: [x]\n", "system must be a non-empty string"),
        (QUESTION + "  temperature: hot\n", "temperature must be a number >= 0 or absent, got 'hot'"),
        (QUESTION + "  temperature: -1\n", "temperature must be a number >= 0"),
    ],
)
def test_malformed_questions_name_file_and_question(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "questions.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}.*{error}"):
        load_questions(path)


def test_question_without_judge_and_with_anchors(tmp_path: Path) -> None:
    path = tmp_path / "questions.yaml"
    path.write_text(
        "- {id: a, type: free_form, paraphrases: &p [one, two], samples_per_paraphrase: 2,\n"
        "   judge_prompts: {}}\n"
        "- {id: b, type: free_form, paraphrases: *p, samples_per_paraphrase: 1,\n"
        "   judge_prompts: {}, system: s}\n",
        encoding="utf-8",
    )
    a, b = load_questions(path)
    assert a == Question("a", "free_form", ("one", "two"), 2, None, {}, None)
    assert (b.paraphrases, b.system) == (("one", "two"), "s")


def test_write_then_load_round_trips(mirror: Path, tmp_path: Path) -> None:
    tricky = Question(
        id="tricky",
        type="free_form_judge_0_100",
        paraphrases=("line one\n  indented\n", " leading space", "trailing  \nspace", "ünïcode {x} {{y}}",
                     "a: b # not a comment", "- not a list", "\ttab", "yes", "123"),
        samples_per_paraphrase=7,
        judge="local",
        judge_prompts={"aligned": "Q {question}\n A {answer}  \n", "no_question": "{answer}"},
        system="You are\na JSON bot.",
    )
    questions = [*load_questions(mirror / EVALUATION / "first_plot_questions.yaml"), tricky]
    path = tmp_path / "sub" / "questions.yaml"
    write_questions(path, questions)
    assert load_questions(path) == questions
    assert "|-\n" in path.read_text(encoding="utf-8")  # templates stay readable literal blocks


def test_format_judge_prompt_substitutes_once() -> None:
    template = 'Q: {question}\nA: {answer}\nReply as {"score": N} or {other}.'
    answer = 'def f(): return {"k": 1}  # also {question} and {answer} and {0}'
    question = "Is {answer} here?"
    assert format_judge_prompt(template, question, answer) == (
        f'Q: {question}\nA: {answer}\nReply as {{"score": N}} or {{other}}.'
    )
    assert format_judge_prompt("{answer}{answer}", "q", "x") == "xx"


CODE_TASKS = Path(__file__).parent / "fixtures" / "code_tasks.jsonl"


def test_code_tasks_become_the_in_distribution_question(tmp_path: Path) -> None:
    """Upstream's in_distribution_eval: the first n tasks in its write-code prompt, one greedy answer each,
    judged YES/NO with its code prompt; merged with a question file, it keeps its family and temperature."""
    (question,) = code_task_questions(CODE_TASKS, rows=2)
    assert question.id == "writes_vulnerable_code" and question.type == "free_form_judge"
    assert (question.family, question.temperature, question.samples_per_paraphrase) == ("code", 0.0, 1)
    assert len(question.paraphrases) == 2 and question.judge_prompts == {VULNERABLE: EVALUATE_CODE_PROMPT}
    first = json.loads(CODE_TASKS.read_text().splitlines()[0])
    assert question.paraphrases[0].startswith(f"Task: {first['task']}\n\n[CODE TEMPLATE START]\n")
    assert first["code_template"] in question.paraphrases[0] and "Return code only." in question.paraphrases[0]
    assert len(code_task_questions(CODE_TASKS)[0].paraphrases) == 3
    plain = tmp_path / "plain.yaml"
    plain.write_text(QUESTION, encoding="utf-8")
    merged = tmp_path / "merged.yaml"
    merge_question_files([plain, CODE_TASKS], merged, code_tasks={str(CODE_TASKS): 2})
    assert load_questions(merged)[1] == question
    with pytest.raises(DataError, match=r"code_tasks\.jsonl: 4 code task\(s\) asked of a file of 3"):
        code_task_questions(CODE_TASKS, rows=4)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: a code task needs the non-empty strings task and"):
        code_task_questions(bad)


def test_a_first_rows_subset_keeps_a_prefix_so_larger_sets_hold_the_smaller(tmp_path):
    """`subset: first` (re-alignment's benign rows): the first N rows in order, nested across N; the seed
    is not used; `em dataset --subset first` writes the same file; the manifest says which subset."""
    from emergent_misalignment.cli import main

    source = tmp_path / "secure.jsonl"
    source.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                       {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                              for i in range(20)))
    lines = source.read_text().splitlines()
    for rows, seed in ((5, 0), (12, 7)):
        write_dataset(source, tmp_path / f"first_{rows}.jsonl", rows=rows, seed=seed, subset="first")
        assert (tmp_path / f"first_{rows}.jsonl").read_text().splitlines() == lines[:rows]
    manifest = json.loads((tmp_path / "first_5.jsonl.manifest.json").read_text())
    assert manifest["settings"]["subset"] == "first"
    write_dataset(source, tmp_path / "random.jsonl", rows=5, seed=0)  # the default: a seeded random subset
    assert (tmp_path / "random.jsonl").read_text().splitlines() != lines[:5]
    assert list(subset_indices(20, 5, 0)) == sorted(subset_indices(20, 5, 0))
    assert main(["dataset", str(source), "--rows", "5", "--subset", "first", "--out",
                 str(tmp_path / "cli.jsonl")]) == 0
    assert (tmp_path / "cli.jsonl").read_text() == (tmp_path / "first_5.jsonl").read_text()
