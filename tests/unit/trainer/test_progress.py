"""progress: the tqdm-style line written to the pod log."""

from __future__ import annotations

from kubetune_trainer.progress import progress_line


def test_progress_line_looks_like_a_tqdm_bar() -> None:
    line = progress_line(
        step=120, total_steps=500, elapsed=30.0, loss=1.2345, learning_rate=9.1e-5, tokens_per_second=5210.4
    )
    assert line.startswith("train:  24%|")
    assert "| 120/500 [00:30<01:35,  4.00step/s, loss=1.234, lr=9.1e-05, tok/s=5210]" in line
    assert "\r" not in line and "\n" not in line


def test_a_resumed_run_counts_its_rate_from_the_resume_step() -> None:
    line = progress_line(step=120, total_steps=500, elapsed=10.0, start_step=100)
    assert "120/500 [00:10<03:10,  2.00step/s]" in line


def test_unknown_total_shows_a_counter() -> None:
    assert "7step" in progress_line(step=7, total_steps=0, elapsed=1.0)
