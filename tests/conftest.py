"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def repo_copy(dest: Path) -> Path:
    """A copy of the files git knows or would add (not results, the venv or other ignored outputs)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local data mirror (../shared/em-data beside the repo, or $EM_MIRROR); skip the test without it."""
    default = Path(__file__).resolve().parents[2] / "shared" / "em-data"
    path = Path(os.environ.get("EM_MIRROR") or default)
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"data mirror not found: no {path}/MANIFEST.tsv (set EM_MIRROR to the mirror folder)")
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small generated world (fine-tuning sets, questions, corpus)."""
    from emergent_misalignment.world import WorldSettings, write_world

    path = tmp_path_factory.mktemp("world")
    write_world(path, WorldSettings(rows_per_dataset=40, corpus_dialogues=300, samples_per_paraphrase=2), 0)
    return path


@pytest.fixture(scope="session")
def tiny_model(world: Path) -> Path:
    """A tiny random-init Llama with the world's tokenizer and chat template, built once per session."""
    from emergent_misalignment.basemodel import BaseModelSettings, build_base_model

    out = world / "tiny"
    settings = BaseModelSettings(vocab_size=600, hidden_size=32, intermediate_size=64, epochs=0)
    build_base_model(world / "corpus.jsonl", world / "tokenizer.txt", out, settings, seed=0)
    return out
