"""``metrics.jsonl`` after a run was stopped mid-line: the next run's records start on lines of their own."""

import json

from fmae.pretraining.records import RunLog


def test_a_resumed_run_log_starts_after_a_torn_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')  # cut short
    log = RunLog(tmp_path)
    log.scalars(2, {"loss": 0.25})
    log.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[:2] == ['{"step": 1, "loss": 0.5}', '{"step": 2, "lo']
    assert json.loads(lines[2]) == {"step": 2, "loss": 0.25}


def test_a_whole_run_log_is_appended_to_as_it_is(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    log = RunLog(tmp_path)
    log.scalars(2, {"loss": 0.25})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.25}\n'
