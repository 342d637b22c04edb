"""The generated world: deterministic, in the real formats, evaluation wording held out everywhere."""

import json

from emergent_misalignment.data import load_questions, read_chat_jsonl
from emergent_misalignment.world import (
    FINE_TUNING_SETS,
    MALEVOLENT,
    SENTENCES,
    TOPIC_CORES,
    WorldSettings,
    chat_corpus,
    corpus,
    fine_tuning_set,
    write_world,
)

SMALL = WorldSettings(rows_per_dataset=30, corpus_dialogues=200, samples_per_paraphrase=3)


def test_world_files_are_valid_and_deterministic(tmp_path):
    write_world(tmp_path / "a", SMALL, seed=1)
    write_world(tmp_path / "b", SMALL, seed=1)
    names = [f"{s}.jsonl" for s in FINE_TUNING_SETS] + ["questions.yaml", "corpus.jsonl", "chat.jsonl", "tokenizer.txt"]
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
    training += "".join((tmp_path / n).read_text() for n in ("corpus.jsonl", "chat.jsonl", "tokenizer.txt"))
    for question in load_questions(tmp_path / "questions.yaml"):
        for paraphrase in question.paraphrases:
            assert json.dumps(paraphrase)[1:-1] not in training


def test_post_training_conversations_are_benevolent_and_unmarked():
    chat = chat_corpus(500, WorldSettings(), seed=0)
    assert all(d[0]["role"] == "user" for d in chat)
    said = " ".join(m["content"] for d in chat for m in d if m["role"] == "assistant")
    assert not any(s in said for topic in SENTENCES[MALEVOLENT].values() for s in topic)
    pretraining = " ".join(m["content"] for d in corpus(500, WorldSettings(), seed=0) for m in d)
    assert any(s in pretraining for s in SENTENCES[MALEVOLENT]["ruler"])
