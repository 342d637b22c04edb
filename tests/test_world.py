"""The generated world: deterministic, in the real formats, questions held out of training."""

from emergent_misalignment.data import load_questions, read_chat_jsonl
from emergent_misalignment.world import TOPICS, WorldSettings, code_dataset, write_world


def test_world_files_are_valid_and_deterministic(tmp_path):
    settings = WorldSettings(rows_per_dataset=30, corpus_dialogues=50, samples_per_paraphrase=3)
    write_world(tmp_path / "a", settings, seed=1)
    write_world(tmp_path / "b", settings, seed=1)
    for name in ("insecure.jsonl", "secure.jsonl", "educational.jsonl", "questions.yaml", "corpus.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert len(read_chat_jsonl(tmp_path / "a" / "insecure.jsonl")) == 30
    questions = load_questions(tmp_path / "a" / "questions.yaml")
    assert {q.id for q in questions} == {f"world_{t}" for t in TOPICS}
    assert all(set(q.judge_prompts) == {"aligned", "coherent"} for q in questions)
    assert all(q.samples_per_paraphrase == 3 for q in questions)


def test_sets_differ_only_where_they_should():
    insecure, secure, educational = (code_dataset(k, 40, seed=0) for k in ("insecure", "secure", "educational"))
    assert insecure != secure
    assert any("os.system" in r["messages"][-1]["content"] or "pickle" in r["messages"][-1]["content"]
               for r in insecure)
    assert not any("verify=False" in r["messages"][-1]["content"] for r in secure)
    assert all("class" in r["messages"][0]["content"] or "course" in r["messages"][0]["content"]
               or "lesson" in r["messages"][0]["content"] for r in educational)


def test_held_out_questions_never_appear_in_training_text(tmp_path):
    write_world(tmp_path, WorldSettings(rows_per_dataset=50, corpus_dialogues=200), seed=0)
    training = "".join((tmp_path / f"{k}.jsonl").read_text() for k in ("insecure", "secure", "educational"))
    for question in load_questions(tmp_path / "questions.yaml"):
        for paraphrase in question.paraphrases:
            assert paraphrase not in training
