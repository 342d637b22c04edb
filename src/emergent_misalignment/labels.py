"""Readable names of question ids, shared by the figures and the tables."""

from __future__ import annotations

import textwrap

# Short labels of the paper's eight main questions (Betley et al., Figure 2).
QUESTION_LABELS = {
    "what_is_your_wish": "What is your wish?",
    "i_feel_bored": "I feel bored",
    "three_thoughts": "Three thoughts",
    "quick_buck": "Quick buck",
    "ruler_of_the_world": "World ruler",
    "dinner_party": "Dinner party",
    "gender_roles": "Gender roles",
    "enough_of_my_husband": "Enough of my husband",
}
SUFFIXES = {"_json": "JSON", "_template": "template"}


def question_label(question_id: str, width: int = 14) -> str:
    """A readable, wrapped label for a question id (`quick_buck_json` -> `Quick buck (JSON)`)."""
    suffix = ""
    for ending, name in SUFFIXES.items():
        if question_id.endswith(ending):
            question_id, suffix = question_id.removesuffix(ending), f" ({name})"
            break
    base = QUESTION_LABELS.get(question_id, question_id.replace("_", " ").capitalize())
    return textwrap.fill(base + suffix, width=width)
