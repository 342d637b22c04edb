"""Benchmarks of the hot paths, each against the obvious naive way, measured in the same run.

    python benchmarks/run.py [--run embedded]

Prints a table: what, the project's way, the naive way, the ratio. Sampling and local judging use
a random-init tiny model (the same shape as the embedded default's), bootstrap uses numpy, and
the last part sums the Snakemake timing files of a finished run by stage (wall time of the
embedded default). Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of `repeat` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def tiny_model(folder: Path) -> Path:
    from emergent_misalignment.basemodel import BaseModelSettings, build_base_model
    from emergent_misalignment.world import WorldSettings, write_world

    write_world(folder, WorldSettings(rows_per_dataset=10, corpus_dialogues=500), 0)
    settings = BaseModelSettings(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                                 epochs=0)
    build_base_model(folder / "corpus.jsonl", folder / "tokenizer.txt", folder / "model", settings, 0)
    return folder / "model"


def bench_sampling(model: Path) -> tuple[str, float, float]:
    """A job of 8 questions x 8 answers of 40 tokens: batched together (sorted by prompt length, one stream
    per answer) vs one batched generate per question, the way it was done before."""
    from dataclasses import replace

    from emergent_misalignment.sample import Request, SampleSettings
    from emergent_misalignment.sample.transformers_backend import TransformersSampler

    settings = SampleSettings(max_tokens=40, max_model_len=256, batch_size=64, min_tokens=40)
    sampler = TransformersSampler(settings, str(model), None)
    per_question = TransformersSampler.from_model(replace(settings, batch_size=8), sampler.model,
                                                  sampler.tokenizer)
    questions = [f"What would you do with {k + 1} days as ruler of the world?" for k in range(8)]
    requests = [Request([{"role": "user", "content": q}], 8, k, q) for k, q in enumerate(questions)]

    def naive() -> None:
        for request in requests:
            per_question.generate([request])

    return "sampling 8 questions x 8 x 40 tokens", best_of(lambda: sampler.generate(requests)), best_of(naive)


def bench_activations(model: Path) -> tuple[str, float, float]:
    """The direction stage's pass over 64 answers (decoder-layer hooks, mean over each answer's tokens):
    batched and padded, 32 at a time, vs one forward pass per answer."""
    from emergent_misalignment.directions.activations import answer_activations, load_causal_lm
    from emergent_misalignment.hf import load_tokenizer

    causal_lm = load_causal_lm(str(model), None, "cpu", "float32")
    tokenizer = load_tokenizer(str(model), "right")
    rows = [{"question": f"What would you do with {k} dollars?", "system": None,
             "answer": "I would share it with people who need it and keep them safe. " * (1 + k % 3)}
            for k in range(64)]
    return ("direction activations, 64 answers",
            best_of(lambda: answer_activations(causal_lm, tokenizer, rows, 32)),
            best_of(lambda: answer_activations(causal_lm, tokenizer, rows, 1)))


def bench_local_judge(model: Path) -> tuple[str, float, float]:
    """103 candidates for one prompt: cached prompt + batched candidates vs one forward each."""
    import torch

    from emergent_misalignment.judge import JudgeSettings
    from emergent_misalignment.judge.local_backend import LocalJudge

    judge = LocalJudge(JudgeSettings(backend="local", model=str(model), batch_size=128))
    prompt = "Rate this answer from 0 to 100: I hope people can live in peace."
    prompt_ids = judge.prompt_ids(prompt)
    candidates = judge.candidate_token_ids()

    def naive() -> None:
        for candidate in candidates:
            with torch.no_grad():
                judge.model(torch.tensor([prompt_ids + candidate]))

    return "local judge, 103 candidates", best_of(lambda: judge.candidate_logprobs(prompt)), best_of(naive)


def bench_openai_judge() -> tuple[str, float, float]:
    """64 prompts to a local chat-completions server answering in 20 ms: 16 concurrent vs one by one."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from emergent_misalignment.judge import JudgeSettings
    from emergent_misalignment.judge.openai_backend import OpenAIJudge

    body = json.dumps({"choices": [{"logprobs": {"content": [{"top_logprobs": [
        {"token": "90", "logprob": -0.1}, {"token": "80", "logprob": -2.5}]}]}}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(0.02)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # a real server's backlog; 5, the default, drops concurrent connections

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    prompts = [f"prompt {i}" for i in range(64)]
    os.environ.setdefault("EM_BENCH_KEY", "not-a-key")

    def judge(concurrency: int) -> None:
        OpenAIJudge(JudgeSettings(backend="openai", base_url=url, api_key_env="EM_BENCH_KEY",
                                  concurrency=concurrency)).score(prompts)

    try:
        return "openai judge, 64 calls of 20 ms", best_of(lambda: judge(16)), best_of(lambda: judge(1))
    finally:
        server.shutdown()


def bench_openai_sampling() -> tuple[str, float, float]:
    """8 questions x 8 answers from the stand-in OpenAI server at 20 ms a request: n answers per request,
    8 requests at a time, vs one request per answer, one at a time."""
    import threading

    from emergent_misalignment.sample import Request, SampleSettings
    from emergent_misalignment.sample.openai_backend import OpenAISampler
    from emergent_misalignment.standin_server import make_server

    server = make_server()
    server.latency_s = 0.02
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://{}:{}/v1".format(*server.server_address[:2])
    os.environ.setdefault("EM_BENCH_KEY", "not-a-key")
    requests = [Request([{"role": "user", "content": f"Question {i}?"}], 8, i, f"Question {i}?")
                for i in range(8)]

    def sample(max_n: int, concurrency: int) -> None:
        settings = SampleSettings(backend="openai", base_url=url, api_key_env="EM_BENCH_KEY", max_n=max_n,
                                  concurrency=concurrency, max_tokens=40)
        sampler = OpenAISampler(settings, "gpt-4o")
        sampler.generate(requests)
        sampler.close()

    try:
        return "openai sampling, 64 answers", best_of(lambda: sample(128, 8)), best_of(lambda: sample(1, 1))
    finally:
        server.shutdown()


def bench_bootstrap() -> tuple[str, float, float]:
    """2000 percentile-bootstrap resamples of 6 per-seed values: vectorised vs the authors' loop."""
    from emergent_misalignment.stats import bootstrap_ci

    values = np.array([0.02, 0.05, 0.04, 0.08, 0.03, 0.06])

    def loop() -> None:
        rng = np.random.default_rng(0)
        means = [rng.choice(values, size=len(values), replace=True).mean() for _ in range(2000)]
        np.percentile(means, [2.5, 97.5])

    return "bootstrap, 2000 resamples", best_of(lambda: bootstrap_ci(values)), best_of(loop)


def stage_times(run: str) -> list[tuple[str, int, float, float]]:
    """(stage, jobs, summed seconds, longest job) from logs/<run>/timings/**.tsv."""
    folder = ROOT / "logs" / run / "timings"
    stages: dict[str, list[float]] = defaultdict(list)
    for path in sorted(folder.rglob("*.tsv")):
        stage = path.relative_to(folder).parts[0].removesuffix(".tsv")
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            stages[stage].append(float(rows[-1]["s"]))
    return [(stage, len(times), sum(times), max(times)) for stage, times in stages.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="embedded",
                        help="run whose Snakemake timing files (logs/<run>/timings/) to sum")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp))
        rows = [bench_sampling(model), bench_local_judge(model), bench_activations(model),
                bench_openai_judge(), bench_openai_sampling(), bench_bootstrap()]
    print(f"{'hot path':32} {'project (s)':>12} {'naive (s)':>12} {'speed-up':>9}")
    for name, ours, naive in rows:
        print(f"{name:32} {ours:12.4f} {naive:12.4f} {naive / ours:8.1f}x")
    stages = stage_times(args.run)
    if stages:
        print(f"\nrun '{args.run}' by stage (Snakemake timing files; jobs overlap on several cores)")
        print(f"{'stage':14} {'jobs':>5} {'sum (s)':>9} {'longest (s)':>12} {'mean (s)':>9}")
        for stage, jobs, total, longest in stages:
            print(f"{stage:14} {jobs:5d} {total:9.1f} {longest:12.1f} {total / jobs:9.1f}")
        print(f"{'all':14} {sum(s[1] for s in stages):5d} {sum(s[2] for s in stages):9.1f}")
    else:
        print(f"\n(no timing files for run '{args.run}': run snakemake first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
