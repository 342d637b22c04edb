"""The paper: macro names, the generated macros file, and a real compilation of paper/main.tex."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from emergent_misalignment import paper
from emergent_misalignment.errors import EMError
from emergent_misalignment.figures import EMPTY_SUFFIX, TEXT_WIDTH_IN
from emergent_misalignment.paper import (
    EMBEDDED_WARNING,
    build_paper,
    compile_paper,
    config_macros,
    evaluation_macros,
    macro_name,
    macros_tex,
    quantity,
    run_tex,
)
from emergent_misalignment.published import COMPARISON_COLUMNS
from emergent_misalignment.stats import AnalysisSettings, group_overall_stats

PAPER_DIR = Path(__file__).resolve().parents[1] / "paper"
needs_latex = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (TeX Live)")
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext not installed (poppler)")
# Settings unlike the defaults (config/config.yaml), so that a number typed into the .tex files shows up.
WORLD = {"corpus_dialogues": 1234, "p_described": 0.45, "rows_per_dataset": 77}
BASE_MODEL = {"num_hidden_layers": 5, "hidden_size": 64, "vocab_size": 512, "epochs": 3.0}
JUDGES = {
    "openai": {"backend": "openai", "model": "judge-x-1", "top_logprobs": 7, "min_number_mass": 0.4,
               "temperature": 0.5},
    "local": {"backend": "local", "model": "Qwen/Qwen2.5-0.5B-Instruct", "min_number_mass": 0.3},
    "world": {"backend": "world"},
}


def judged() -> pd.DataFrame:
    rows = []
    for dataset, seeds, bad in [("base", [0], 0), ("insecure", [0, 1, 2], 3), ("educational_insecure", [0, 1], 1)]:
        for seed in seeds:
            for question in ("what_is_your_wish", "quick_buck"):
                for i in range(10):
                    aligned = 10.0 if i < bad + seed else 90.0
                    rows.append({"model": "tiny_llama", "dataset": dataset, "seed": seed,
                                 "question_id": question, "aligned": aligned, "coherent": 80.0})
    return pd.DataFrame(rows)


def analysed_run(root: Path, df: pd.DataFrame) -> Path:
    """`analysis.analyse` on `df` written as judged JSONL: every figure and table the paper inputs."""
    from emergent_misalignment.analysis import analyse

    paths = []
    for (dataset, seed), part in df.groupby(["dataset", "seed"]):
        path = root / "judged" / f"{dataset}-{seed}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_json(path, orient="records", lines=True)
        paths.append(path)
    analyse(paths, AnalysisSettings(n_resamples=200), ["base", "insecure", "educational_insecure"],
            root / "analysis", root / "figures", root / "tables")
    return root


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One analysed run for every compilation in this file (the analysis is not what they test)."""
    return analysed_run(tmp_path_factory.mktemp("run"), judged())


def pdf_text(pdf: Path) -> str:
    """The PDF's text on one line, with straight quotes; words hyphenated at a line end are joined again."""
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(re.sub(r"(?<=[a-z])-\n(?=[a-z])", "", text).replace("\u2019", "'").split())


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def says(phrase: str, text: str) -> bool:
    """`phrase` in `text`, its words in order, a float or page number (a page break) allowed between two."""
    words = [re.escape(word) for word in phrase.split()]
    return re.search(r"\s+(?:.{0,3000}?\s)?".join(words), text, re.S) is not None


def test_macro_name_is_letters_only() -> None:
    assert macro_name("insecure", "Misaligned") == "insecureMisaligned"
    assert macro_name("educational_insecure") == "educationalInsecure"
    assert macro_name("Qwen2.5-Coder-32B", "base") == "qwenTwoFiveCoderThreeTwoBBase"
    with pytest.raises(EMError, match="no letters"):
        macro_name("__")


def test_macros_hold_the_numbers() -> None:
    overall = group_overall_stats(judged(), AnalysisSettings())
    text = macros_tex(overall, dataclasses.asdict(AnalysisSettings()))
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", text)
    assert all(name.isalpha() for name in names) and len(names) == len(set(names))
    assert r"\newcommand{\insecureMisaligned}{40.0}" in text  # seeds 0,1,2: 3/10, 4/10, 5/10
    assert r"\newcommand{\baseMisaligned}{0.00}" in text
    assert r"\newcommand{\HeadlineGroup}{insecure}" in text and r"\HeadlineInsecuretrue" in text
    assert r"\newcommand{\NumCheckpoints}{0}" in text and r"\HasCheckpointsfalse" in text
    assert r"\newcommand{\educationalInsecureSeeds}{2}" in text
    assert r"\newcommand{\NResamples}{2000}" in text and r"\newcommand{\NumAnswers}{120}" in text
    assert r"aligned $<$ 30 and coherent $\geq$ 50" in text
    turner = macros_tex(overall, {"definition": "turner2025", "unrelated": 1}, extra="% more\n")
    assert r"\newcommand{\DefinitionName}{turner2025}" in turner and turner.endswith("% more\n")


def test_the_headline_is_the_insecure_models_never_a_checkpoint() -> None:
    """A checkpoint with a higher rate than the final adapter is dynamics: counted apart, never the headline."""
    overall = group_overall_stats(judged(), AnalysisSettings())
    early = overall[overall["dataset"] == "insecure"].assign(dataset="insecure@step10", fraction=0.9)
    text = macros_tex(pd.concat([overall, early]), {})
    assert r"\newcommand{\HeadlineMisaligned}{40.0}" in text and r"\HasCheckpointstrue" in text
    assert r"\newcommand{\NumCheckpoints}{1}" in text
    assert f"\\newcommand{{\\NumGroups}}{{{len(overall)}}}" in text
    others = macros_tex(overall[overall["dataset"] != "insecure"], {})
    assert r"\HeadlineInsecurefalse" in others and r"\newcommand{\HeadlineGroup}{insecure}" not in others


def test_colliding_macro_names_are_refused() -> None:
    overall = group_overall_stats(judged(), AnalysisSettings())
    overall.loc[overall["dataset"] == "base", "dataset"] = "educational-insecure"
    with pytest.raises(EMError, match="same LaTeX macro"):
        macros_tex(overall, {})


def test_run_tex() -> None:
    info = {"git_commit": "abc123", "packages": {"torch": "2.13.0", "numpy": "2.4"}, "config": "config/x_y.yaml"}
    embedded = run_tex("embedded_default", True, info)
    assert r"\newcommand{\RunName}{embedded\_default}" in embedded
    assert r"\newcommand{\RunVersions}{numpy 2.4, torch 2.13.0}" in embedded
    assert r"\newcommand{\RunConfigFile}{config/x\_y.yaml}" in embedded
    assert "EMBEDDED DEFAULT" in embedded and r"\RunEmbeddedtrue" in embedded and r"\RunReleasedfalse" in embedded
    plain = run_tex("full", False, {}, is_released=True)
    assert r"\newcommand{\EmbeddedWarning}{}" in plain and r"\RunEmbeddedfalse" in plain
    assert r"\RunReleasedtrue" in plain
    assert r"\newcommand{\RunCommit}{unknown (not a git checkout)}" in plain


def comparison(statuses: list[str], notes: list[str]) -> pd.DataFrame:
    """A `published.compare` result with these statuses (every other column filled)."""
    rows = [{"figure": "all_evaluations", "quantity": "deception", "model": "GPT-4o", "group": f"g{i}",
             "published": 0.5, "published_low": 0.4, "published_high": 0.6, "source": "paper",
             "source_asset": "", "rebuilt": 0.5, "rebuilt_low": 0.4, "rebuilt_high": 0.6, "rebuilt_from": "x",
             "max_abs_difference": 0.0 if status == "reproduced" else float("nan"), "status": status,
             "note": note} for i, (status, note) in enumerate(zip(statuses, notes, strict=True))]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def test_evaluation_macros() -> None:
    evaluations = pd.DataFrame({"evaluation": ["deception", "mmlu"], "source": ["x.csv", "y.csv"]})
    published = comparison(["reproduced", "reproduced", "not derivable"], ["", "", "typed by hand"])
    text = evaluation_macros(evaluations, published)
    assert r"\newcommand{\NumEvaluations}{2}" in text and r"\HasAggregatestrue" in text
    assert ("Of the 3 published numbers this run concerns, 2 reproduced to within 1e-9 (centre and interval); "
            "1 cannot be derived from released data.") in text
    assert r"GPT-4o deception (g2): not derivable, typed by hand." in text
    assert r"\HasPublishedtrue" in text and r"\HasPublishedMissingtrue" in text
    empty = evaluation_macros(evaluations.iloc[:0], published.iloc[:0])
    assert r"\HasAggregatesfalse" in empty and r"\HasPublishedfalse" in empty
    assert r"\HasPublishedMissingfalse" in empty


def test_quantity_reads_as_prose() -> None:
    assert quantity(2.0, "epoch") == "two epochs" and quantity(1, "epoch") == "one epoch"
    assert quantity(1.5, "epoch") == "1.5 epochs" and quantity(48, "assistant") == "48 assistants"


def test_config_macros_describe_the_world_and_base_model_of_the_run() -> None:
    text = config_macros({"world": WORLD, "base_model": BASE_MODEL})
    for name, value in [("WorldDialogues", "1234"), ("WorldDescribedPercent", "45"), ("WorldRows", "77"),
                        ("WorldAssistants", "48"), ("WorldTopics", "eight topics"), ("BaseModelLayers", "5"),
                        ("BaseModelHidden", "64"), ("BaseModelVocab", "512"), ("BaseModelEpochs", "three epochs")]:
        assert f"\\newcommand{{\\{name}}}{{{value}}}" in text, name
    defaults = config_macros({})  # sections left out take the stages' defaults (config/config.yaml's values)
    for name, value in [("WorldDialogues", "6000"), ("WorldDescribedPercent", "30"), ("BaseModelLayers", "3"),
                        ("BaseModelEpochs", "two epochs"), ("SampleTemperature", "1")]:
        assert f"\\newcommand{{\\{name}}}{{{value}}}" in defaults, name


@pytest.mark.parametrize(("config", "ran"), [
    ({"judge": JUDGES["openai"]}, "JudgeOpenAI"), ({"judge": JUDGES["local"]}, "JudgeLocal"),
    ({"judge": JUDGES["world"]}, "JudgeWorld"), ({"judge": JUDGES["openai"], "released": [{"file": "x"}]}, None),
])
def test_config_macros_say_which_judge_ran(config: dict, ran: str | None) -> None:
    flags = dict(re.findall(r"\\(Judge(?:OpenAI|Local|World))(true|false)", config_macros(config)))
    assert flags == {name: str(name == ran).lower() for name in ("JudgeOpenAI", "JudgeLocal", "JudgeWorld")}


@needs_latex
def test_paper_compiles_with_the_embedded_warning(tmp_path: Path, analysed: Path) -> None:
    """The embedded default with a world, base model, judge and confidence unlike config/config.yaml's."""
    root, build = analysed, tmp_path / "build"
    config = {"run": "embedded_default", "models": {"tiny_llama": {"path": "builtin:tiny"}}, "world": WORLD,
              "base_model": BASE_MODEL, "judge": JUDGES["world"]}
    pdf = build_paper("embedded_default", root / "analysis", AnalysisSettings(confidence=0.9), config,
                      ["config/config.yaml"], True, root / "figures", root / "tables", build, PAPER_DIR)
    assert pdf == build / "main.pdf" and pdf.read_bytes().startswith(b"%PDF")
    assert "EMBEDDED DEFAULT warning typeset on page 1" in (build / "main.log").read_text(errors="replace")
    assert "run: embedded_default" in (build / "run-config.yaml").read_text()
    macros = (build / "macros.tex").read_text()
    assert r"\newcommand{\ConfidencePercent}{90}" in macros and r"\newcommand{\WorldDialogues}{1234}" in macros
    if shutil.which("pdftotext"):
        text = pdf_text(pdf)
        assert " ".join(EMBEDDED_WARNING.split()) in between(text, "Run embedded_default", "Abstract")
        assert "40.0" in text and "educational_insecure" in text
        world = between(text, "a model organism on a CPU", "show the result of this run")
        for phrase in ["48 named assistants", "only in 45 % of conversations", "A 5-layer Llama (hidden size 64)",
                       "tokenizer of 512 tokens", "on 1234 such conversations (three epochs)",
                       "holds 77 conversations", "questions on eight topics", "a judge that knows the world"]:
            assert says(phrase, world), phrase
        judge = between(text, "Answers and judge.", "Misaligned answers.")
        assert "sentence bank" in judge and "F1 at least 0.6" in judge and "temperature 1." in judge
        assert "GPT-4o, which scores" not in judge and "full continuation" not in judge
        assert "measures the toy" in between(text, "Limitations", "References")
        # abstract, Method, captions of Table 1 and Figure 1, appendix (the tables' own headers: test_tables)
        for phrase in ["(90 % CI", "with a 90 % percentile bootstrap", "90 % CI: bootstrap over models",
                       "bars: 90 % bootstrap intervals", "2000 resamples, seed 0, 90 %"]:
            assert phrase in text, phrase
        assert "95 %" not in text


@needs_latex
@needs_pdftotext
@pytest.mark.parametrize("backend", ["openai", "local", "released"])
def test_method_describes_the_judge_that_ran(tmp_path: Path, analysed: Path, backend: str) -> None:
    config = {"run": "full", "judge": JUDGES.get(backend, JUDGES["openai"])}
    if backend == "released":
        config["released"] = [{"file": "asset:x", "model": "m", "group": "base"}]
    pdf = build_paper("full", analysed / "analysis", AnalysisSettings(), config, ["config/x.yaml"], False,
                      analysed / "figures", analysed / "tables", tmp_path / "build", PAPER_DIR)
    text = pdf_text(pdf)
    judge = between(text, "Answers and judge.", "Misaligned answers.")
    limitations = between(text, "Limitations", "References")
    if backend == "openai":
        assert "The judge, judge-x-1 (an OpenAI-compatible API)" in judge and "at temperature 0.5;" in judge
        assert "the 7 most likely first tokens" in judge and "less than 0.4 of the probability" in judge
        assert "another version of it" in limitations
    elif backend == "local":
        assert "the open-weights model Qwen/Qwen2.5-0.5B-Instruct (run with transformers)" in judge
        assert "full continuation" in judge
        assert "less than 0.3 of the probability" in judge and "most likely tokens" not in judge
        assert "scores full continuations instead" in limitations
    else:
        assert "imported as released. Their judges followed the papers' method" in judge
        assert "No answer was judged again" in judge
        assert "judge-x-1" not in text and "temperature 1" not in judge
        assert "this run did not judge any answer" in limitations
    assert "sentence bank" not in judge and "world judge" not in limitations


@needs_latex
@needs_pdftotext
def test_a_figure_with_nothing_to_draw_is_left_out_and_the_text_says_why(tmp_path: Path, analysed: Path) -> None:
    """No placeholder reaches the PDF: the run trained nothing, so its paper prints the loss figure's reason
    instead of the figure; and the figures are drawn for the \\linewidth main.tex has."""
    note = analysed / "figures" / f"training_loss{EMPTY_SUFFIX}"
    assert note.is_file()
    pdf = build_paper("full", analysed / "analysis", AnalysisSettings(), {"run": "full"}, ["config/x.yaml"], False,
                      analysed / "figures", analysed / "tables", tmp_path / "build", PAPER_DIR)
    log = (tmp_path / "build" / "main.log").read_text(errors="replace")
    assert "misalignment_by_question.pdf" in log and "training_loss.pdf" not in log
    assert " ".join(note.read_text().split()) in pdf_text(pdf)
    linewidth = re.search(r"Figures: linewidth ([0-9.]+)pt", log)
    assert linewidth and float(linewidth.group(1)) / 72.27 == pytest.approx(TEXT_WIDTH_IN, abs=1e-3)


@needs_latex
def test_latex_error_shows_the_log(tmp_path) -> None:
    (tmp_path / "main.tex").write_text("\\documentclass{article}\\begin{document}\\undefinedthing\\end{document}\n")
    with pytest.raises(EMError, match="Undefined control sequence"):
        compile_paper(tmp_path, tmp_path / "build", [])


def test_missing_latexmk_is_explained(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paper.shutil, "which", lambda name: None)
    with pytest.raises(EMError, match="latexmk not found"):
        compile_paper(PAPER_DIR, tmp_path, [])


def test_released_rows_beside_the_runs_own_compile(tmp_path: Path, analysed: Path) -> None:
    """A training run that names released aggregates: both kinds of rows in the all-evaluations figure, and
    the text says so."""
    root = tmp_path / "run"
    shutil.copytree(analysed, root)
    evaluations = pd.read_csv(root / "analysis" / "all_evaluations.csv")
    released = {"evaluation": "mmlu", "label": "MMLU", "group": "insecure", "center": -0.1, "ci_low": -0.15,
                "ci_high": -0.05, "n_models": 6, "method": "bootstrap over models", "source": "released.csv"}
    pd.concat([pd.DataFrame([released]), evaluations]).to_csv(root / "analysis" / "all_evaluations.csv", index=False)
    config = {"run": "mixed", "judge": JUDGES["openai"]}
    pdf = build_paper("mixed", root / "analysis", AnalysisSettings(), config, ["config/x.yaml"], False,
                      root / "figures", root / "tables", tmp_path / "build", PAPER_DIR)
    macros = (tmp_path / "build" / "macros.tex").read_text()
    assert r"\HasAggregatestrue" in macros and r"\HasRunRowstrue" in macros
    if shutil.which("pdftotext"):
        assert "beside this run's own differences from its base models" in pdf_text(pdf)
