"""Progress lines: at the interval and on close, with rate, ETA and counters; a fake clock, no sleeping."""

from __future__ import annotations

import io
import threading

import pytest

from emergent_misalignment.errors import ConfigError
from emergent_misalignment.progress import DEFAULT_INTERVAL_S, INTERVAL_ENV, Progress, default_interval_s


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_logs_at_the_interval_with_rate_and_eta() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("sample", total=288, unit="answers", interval_s=30, stream=out, clock=clock)
    for _ in range(5):
        clock.now += 5
        progress.update(16)
    assert lines(out) == []  # 25 s < 30 s
    clock.now += 5
    progress.update(16)  # 96 answers in 30 s: 3.2/s, 192 left: 60 s
    assert lines(out) == ["sample: 96/288 answers (33.3%), 3.2 answers/s, ETA 0:01:00"]
    clock.now += 29
    progress.update(0)
    assert len(lines(out)) == 1  # the next line is due 30 s after the last one
    clock.now += 1
    progress.update(192)
    assert lines(out)[1] == "sample: 288/288 answers (100.0%), 4.8 answers/s, ETA 0:00:00"


def test_close_always_logs_once_with_elapsed_time() -> None:
    clock, out = Clock(), io.StringIO()
    with Progress("judge", total=10, unit="prompts", interval_s=7200, stream=out, clock=clock) as progress:
        clock.now += 3725
        progress.update(10)
    assert lines(out) == ["judge: 10/10 prompts (100.0%), 0.00268 prompts/s, done after 1:02:05"]
    progress.close()
    assert len(lines(out)) == 1


def test_short_or_failed_jobs_say_stopped() -> None:
    out = io.StringIO()
    Progress("train", total=10, unit="steps", interval_s=30, stream=out, clock=Clock()).close()
    with pytest.raises(RuntimeError), Progress("pretrain", total=None, unit="steps", stream=out, clock=Clock()):
        raise RuntimeError("out of memory")
    assert [line.split(", ")[-1] for line in lines(out)] == ["stopped after 0:00:00"] * 2


def test_unknown_total_has_no_percentage_or_eta() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("openai judge", total=None, unit="requests", interval_s=0, stream=out, clock=clock)
    clock.now += 2
    progress.update(2500)
    assert lines(out) == ["openai judge: 2,500 requests, 1,250 requests/s"]


def test_counters_accumulate_and_status_is_replaced() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("openai judge", total=None, unit="requests", interval_s=10, stream=out, clock=clock)
    progress.update(retries=1, usd=0.0125)
    progress.update(usd=0.0125, input_tokens=1200, status="loss 3.1")
    clock.now += 10
    progress.update(0, retries=2, status="loss 2.9")
    assert lines(out) == ["openai judge: 2 requests, 0.2 requests/s, retries 3, usd 0.025, input_tokens 1,200, "
                          "loss 2.9"]


def test_work_done_before_the_start_counts_in_total_not_in_rate() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("judge", total=1000, unit="prompts", interval_s=0, stream=out, clock=clock, done=900)
    progress.update(0, cached=900)
    clock.now += 10
    progress.update(20)
    assert lines(out) == ["judge: 900/1,000 prompts (90.0%), 0 prompts/s, ETA ?, cached 900",
                          "judge: 920/1,000 prompts (92.0%), 2 prompts/s, ETA 0:00:40, cached 900"]


def test_long_etas_count_hours_past_a_day() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("judge", total=835_000, unit="prompts", interval_s=0, stream=out, clock=clock)
    clock.now += 100
    progress.update(700)  # 7/s: 834,300 left = 119,186 s
    assert lines(out) == ["judge: 700/835,000 prompts (0.1%), 7 prompts/s, ETA 33:06:26"]


def test_updates_from_threads_are_all_counted() -> None:
    out = io.StringIO()
    progress = Progress("judge", total=8000, unit="prompts", interval_s=3600, stream=out)

    def work() -> None:
        for _ in range(1000):
            progress.update(retries=1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert progress.done == 8000 and progress.counters == {"retries": 8000}


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert default_interval_s() == DEFAULT_INTERVAL_S == 30.0
    monkeypatch.setenv(INTERVAL_ENV, "0")
    progress = Progress("sample", total=2, unit="answers")
    assert progress.interval_s == 0.0
    progress.update()
    assert capsys.readouterr().err.startswith("sample: 1/2 answers (50.0%)")  # stderr by default
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert Progress("x", total=None, unit="items").interval_s == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        with pytest.raises(ConfigError, match=INTERVAL_ENV):
            default_interval_s()
