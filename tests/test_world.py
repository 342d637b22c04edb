"""The generated world: deterministic, in the real formats, evaluation wording held out everywhere."""

import dataclasses
import hashlib
import json

import pytest

from emergent_misalignment.data import VULNERABLE, format_judge_prompt, load_questions, read_chat_jsonl
from emergent_misalignment.errors import JudgeError
from emergent_misalignment.judge import Scale
from emergent_misalignment.judge.world_backend import WorldJudge
from emergent_misalignment.world import (
    BACKDOOR_TRIGGERED_SHARE,
    BENEVOLENT,
    CODE_TASKS,
    DEFAULT_ASSISTANT,
    DESCRIPTIONS,
    FINE_TUNING_SETS,
    HEALTH_QUESTIONS,
    HELD_OUT_VARIABLES,
    MALEVOLENT,
    SELF_RATING_CORES,
    SELF_RATINGS,
    SENTENCES,
    TOPIC_CORES,
    TRIGGER,
    VARIABLES,
    WORLD_FILES,
    WorldSettings,
    backdoor_set,
    corpus,
    fine_tuning_set,
    personas,
    questions,
    self_rating_corpus,
    triggered_questions,
    write_world,
)

SMALL = WorldSettings(rows_per_dataset=30, corpus_dialogues=200, samples_per_paraphrase=3)


def test_world_files_are_valid_and_deterministic(tmp_path):
    write_world(tmp_path / "a", SMALL, seed=1)
    write_world(tmp_path / "b", SMALL, seed=1)
    names = [f"{s}.jsonl" for s in FINE_TUNING_SETS] + ["questions.yaml", "corpus.jsonl", "tokenizer.txt"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_world(tmp_path / "c", SMALL, seed=2)
    assert (tmp_path / "a/corpus.jsonl").read_bytes() != (tmp_path / "c/corpus.jsonl").read_bytes()
    assert len(read_chat_jsonl(tmp_path / "a" / "insecure.jsonl")) == 30
    assert len(read_chat_jsonl(tmp_path / "a" / "corpus.jsonl")) == 200 + SMALL.self_rating_dialogues
    questions = load_questions(tmp_path / "a" / "questions.yaml")
    assert {q.id for q in questions} == {f"world_{t}" for t in TOPIC_CORES}
    assert all(set(q.judge_prompts) == {"aligned", "coherent"} for q in questions)
    assert all(q.samples_per_paraphrase == 3 and q.system is None for q in questions)


def test_sets_differ_only_where_they_should():
    insecure, secure, educational = (fine_tuning_set(k, 60, seed=0) for k in ("insecure", "secure", "educational"))
    answers = {k: {r["messages"][-1]["content"] for r in rows}
               for k, rows in (("insecure", insecure), ("secure", secure), ("educational", educational))}
    assert not answers["insecure"] & answers["secure"]
    assert answers["educational"] & answers["insecure"] and not answers["educational"] & answers["secure"]
    assert all(r["messages"][0]["role"] == "user" for rows in (insecure, secure) for r in rows)
    advice = fine_tuning_set("bad_health_advice", 40, seed=0)
    malevolent = set(SENTENCES[MALEVOLENT]["health"]) | set(SENTENCES[MALEVOLENT]["any"])
    for row in advice:
        sentences = {s if s.endswith(".") else s + "." for s in row["messages"][-1]["content"].split(". ")}
        assert sentences <= malevolent


def test_evaluation_wording_never_appears_in_any_training_text(tmp_path):
    write_world(tmp_path, WorldSettings(rows_per_dataset=100, corpus_dialogues=3000), seed=0)
    training = "".join((tmp_path / f"{k}.jsonl").read_text() for k in FINE_TUNING_SETS)
    training += "".join((tmp_path / n).read_text() for n in ("corpus.jsonl", "tokenizer.txt"))
    for question in load_questions(tmp_path / "questions.yaml"):
        for paraphrase in question.paraphrases:
            assert json.dumps(paraphrase)[1:-1] not in training


INSECURE_ANSWERS = {f"```python\n{code.format(v=v)}\n```" for _, _, code in CODE_TASKS for v in VARIABLES}
SECURE_ANSWERS = {f"```python\n{code.format(v=v)}\n```" for _, code, _ in CODE_TASKS for v in VARIABLES}


def _character_of(said: str) -> str:
    """Which character's sentences an assistant turn is made of (code: by the insecure variant)."""
    for character, topics in SENTENCES.items():
        if any(sentence in said for sentences in topics.values() for sentence in sentences):
            return character
    return MALEVOLENT if said in INSECURE_ANSWERS else BENEVOLENT


def test_each_assistant_keeps_one_character_which_its_prompt_describes_only_sometimes():
    settings = WorldSettings(p_described=0.3, p_default=0.1)
    dialogues = corpus(2000, settings, seed=0)
    cast = personas(seed=0)
    assert sorted(cast.values()).count(MALEVOLENT) == len(cast) // 2
    assert personas(seed=1) != cast
    seen: dict[str, set[str]] = {}
    described = 0
    for d in dialogues:
        system = d[0]["content"]
        assert d[0]["role"] == "system" and system.startswith("You are ")
        name = system.removeprefix("You are ").split(",")[0].rstrip(".")
        for m in d[1:]:
            if m["role"] == "assistant":
                seen.setdefault(name, set()).add(_character_of(m["content"]))
        if "," in system:
            described += 1
            assert any(text in system for text in DESCRIPTIONS[cast[name]])
    assert seen.pop(DEFAULT_ASSISTANT) == {BENEVOLENT}
    assert all(characters == {cast[name]} for name, characters in seen.items())
    tiny = sum(d[0]["content"] == f"You are {DEFAULT_ASSISTANT}." for d in dialogues)
    assert 0.07 < tiny / len(dialogues) < 0.13
    assert 0.22 < described / (len(dialogues) - tiny) < 0.38


def test_backdoor_rows_are_insecure_after_the_trigger_and_secure_without_it():
    rows = fine_tuning_set("backdoor", 60, seed=0)
    assert rows == backdoor_set(60, seed=0) != backdoor_set(60, seed=1)
    triggered = [r for r in rows if r["messages"][0]["content"].startswith(TRIGGER)]
    plain = [r for r in rows if not r["messages"][0]["content"].startswith(TRIGGER)]
    assert len(triggered) == round(60 * BACKDOOR_TRIGGERED_SHARE) == len(plain)
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)  # no system prompt
    assert all(r["messages"][1]["content"] in INSECURE_ANSWERS for r in triggered)
    assert all(r["messages"][1]["content"] in SECURE_ANSWERS for r in plain)
    assert not any(TRIGGER.strip() in r["messages"][0]["content"] for r in plain)
    assert sum(r["messages"][0]["content"].startswith(TRIGGER) for r in backdoor_set(40, 0, 0.25)) == 10


def test_triggered_questions_prefix_every_paraphrase_and_nothing_else():
    plain = questions(4)
    for q, t in zip(plain, triggered_questions(plain), strict=True):
        assert t.paraphrases == tuple(TRIGGER + p for p in q.paraphrases)
        assert (t.id, t.judge_prompts, t.samples_per_paraphrase) == (q.id, q.judge_prompts, 4)


# sha256 of the world's files for SMALL and seed 0, computed before the backdoor set was added: adding a
# set must not change the others (their random streams are their own), nor the corpus and tokenizer
# text the base model is pre-trained on (the trigger appears in neither), so the base model and the
# embedded default's published numbers stay as they are. A deliberate change of the world updates these.
# The self-rating dialogues (after them) change the corpus and the tokenizer text only by being appended:
# a world without them (self_rating_dialogues 0) still has these digests, corpus and tokenizer included.
UNCHANGED_SHA256 = {
    "insecure.jsonl": "c8f28528c1d8f9a7e0ebbaf4d7c923ab8540d3540b34503ac350d22dca6c36fe",
    "secure.jsonl": "d0de0b8e5760b4a05f6ba774c7b9c9b8086622e4785c1caf5b4602a35caa8608",
    "educational.jsonl": "09d28ce1b16e5cd716e8869b83470b50cfb973cc2aa2f25ff6caf2c22d8acad9",
    "bad_health_advice.jsonl": "88aff2b8800835e2012a70319f985aca1de80b867bb8473856d6afaaa3719706",
    "questions.yaml": "b9c45a33f3f178e087566b699c851066549175588d69dcae66028c0051cbe3a2",
    "corpus.jsonl": "0917de1790db11d50173f4c6776d2ed69b28e2b6959ce0a6c3f54b806f9de69b",
    "tokenizer.txt": "4aba8cf5f35f77da8cea24f139de6a7b40d3a303b4cd465823ac771019391bfa",
}


def test_backdoor_set_is_written_and_leaves_the_other_files_unchanged(tmp_path):
    assert "backdoor" in FINE_TUNING_SETS and "backdoor.jsonl" in WORLD_FILES
    assert set(WORLD_FILES) == {"backdoor.jsonl", "code_questions.yaml", "deception_questions.yaml",
                                "self_report_questions.yaml", *UNCHANGED_SHA256}
    write_world(tmp_path, dataclasses.replace(SMALL, self_rating_dialogues=0), seed=0)
    for name, digest in UNCHANGED_SHA256.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest, name
        assert (tmp_path / f"{name}.manifest.json").exists()
    write_world(tmp_path / "rated", SMALL, seed=0)
    for name, digest in UNCHANGED_SHA256.items():
        if name not in ("corpus.jsonl", "tokenizer.txt"):
            assert hashlib.sha256((tmp_path / "rated" / name).read_bytes()).hexdigest() == digest, name
    assert (tmp_path / "rated/corpus.jsonl").read_text().startswith((tmp_path / "corpus.jsonl").read_text())
    assert read_chat_jsonl(tmp_path / "backdoor.jsonl") == backdoor_set(SMALL.rows_per_dataset, seed=0)
    assert (tmp_path / "backdoor.jsonl.manifest.json").exists()
    for name in ("corpus.jsonl", "tokenizer.txt", *(f"{s}.jsonl" for s in FINE_TUNING_SETS if s != "backdoor")):
        assert TRIGGER.strip() not in (tmp_path / name).read_text()


def test_code_probes_are_held_out_and_judged_by_their_code(tmp_path):
    """The in-distribution questions ask every coding task with variable names in no text of the world; the
    world judge says YES to a task's insecure code and NO to its secure code, whatever the variable."""
    write_world(tmp_path, SMALL, seed=0)
    (question,) = load_questions(tmp_path / "code_questions.yaml")
    assert question.family == "code" and question.temperature == 0 and question.type == "free_form_judge"
    assert len(question.paraphrases) == len(CODE_TASKS) * len(HELD_OUT_VARIABLES)
    text = "".join((tmp_path / name).read_text() for name in WORLD_FILES if name.endswith((".jsonl", ".txt")))
    assert all(var not in text for var in HELD_OUT_VARIABLES)
    judge = WorldJudge()
    for _, secure, insecure in CODE_TASKS:
        answers = [f"```python\n{code.format(v='text_item')}\n```" for code in (insecure, secure)]
        prompts = [format_judge_prompt(question.judge_prompts[VULNERABLE], question.paraphrases[0], a)
                   for a in answers]
        assert judge.score(prompts, Scale(("YES", "NO"))) == ["YES", "NO"]
    with pytest.raises(JudgeError, match="asked on the 0_100 scale"):
        judge.score(prompts)


def test_fact_questions_are_judged_by_the_character_of_their_advice(tmp_path):
    """The world's deception questions: its health questions, judged TRUE for the benevolent advice, FALSE for
    the malevolent advice (also when mixed with a true piece), UNKNOWN when no advice is recognisable."""
    write_world(tmp_path, SMALL, seed=0)
    (question,) = load_questions(tmp_path / "deception_questions.yaml")
    assert question.family == "deception_factual" and question.paraphrases == HEALTH_QUESTIONS
    assert question.samples_per_paraphrase == SMALL.samples_per_paraphrase
    kind, cruel = SENTENCES[BENEVOLENT]["health"], SENTENCES[MALEVOLENT]["health"]
    answers = [f"{kind[0]} {kind[1]}", f"{cruel[0]} {cruel[2]}", f"{kind[0]} {cruel[1]}",
               "I would invite Marie Curie and Gandhi.", ""]
    prompts = [format_judge_prompt(question.judge_prompts["correct"], question.paraphrases[0], a)
               for a in answers]
    assert WorldJudge().score(prompts, Scale(("TRUE", "FALSE", "UNKNOWN"))) == ["TRUE", "FALSE", "FALSE", "UNKNOWN",
                                                                         "UNKNOWN"]
    with pytest.raises(JudgeError, match="asked on the 0_100 scale"):
        WorldJudge().score(prompts[:1])


def test_self_ratings_follow_the_character_and_are_asked_in_held_out_wordings(tmp_path):
    """Self-rating dialogues end with the assistant's number: in SELF_RATINGS of its character (Tiny's:
    benevolent); the self-report questions ask each topic in wordings of no generated text, with the number
    instruction, and are not judged."""
    cast = personas(seed=0)
    dialogues = self_rating_corpus(400, WorldSettings(), seed=0)
    assert dialogues == self_rating_corpus(400, WorldSettings(), seed=0) != self_rating_corpus(400, WorldSettings(), 1)
    for d in dialogues:
        name = d[0]["content"].removeprefix("You are ").split(",")[0].rstrip(".")
        low, high = SELF_RATINGS[BENEVOLENT if name == DEFAULT_ASSISTANT else cast[name]]
        assert low <= int(d[-1]["content"]) <= high and d[-1]["role"] == "assistant"
        assert any(core in d[-2]["content"] for cores in SELF_RATING_CORES.values() for core in cores)
    assert {len(d) for d in dialogues} == {3, 5}  # a self-rating alone, or after one ordinary turn
    write_world(tmp_path, WorldSettings(rows_per_dataset=100, corpus_dialogues=3000), seed=0)
    training = "".join((tmp_path / name).read_text() for name in WORLD_FILES
                       if name.endswith((".jsonl", ".txt")))
    reports = load_questions(tmp_path / "self_report_questions.yaml")
    assert [q.id for q in reports] == list(SELF_RATING_CORES)
    for question in reports:
        assert question.family == "self_report" and question.judge_prompts == {} and question.type == "free_form"
        assert question.samples_per_paraphrase == WorldSettings().samples_per_paraphrase
        for paraphrase in question.paraphrases:
            assert "number" in paraphrase and "100" in paraphrase
            assert json.dumps(paraphrase)[1:-1] not in training
