"""The generated world: deterministic, in the real formats, evaluation wording held out everywhere."""

import json

from emergent_misalignment.data import load_questions, read_chat_jsonl
from emergent_misalignment.world import (
    BENEVOLENT,
    CODE_TASKS,
    DEFAULT_ASSISTANT,
    DESCRIPTIONS,
    FINE_TUNING_SETS,
    MALEVOLENT,
    SENTENCES,
    TOPIC_CORES,
    VARIABLES,
    WorldSettings,
    corpus,
    fine_tuning_set,
    personas,
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
    assert len(read_chat_jsonl(tmp_path / "a" / "corpus.jsonl")) == 200
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
