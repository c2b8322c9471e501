"""``python -m fmae.bench gpu``, the command (:mod:`fmae.benchmarking.gpu.command`): the dry run,
the settings, and the whole command with its processes where there is no GPU."""

import json

import pytest
import torch

from fmae.bench import main
from fmae.benchmarking.gpu import command

# ---------------------------------------------------------------- the command


def test_dry_run_lists_every_check_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["gpu", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    head = "No CUDA here:" if not torch.cuda.is_available() else "Dry run: nothing was run."
    assert text.startswith(head)
    assert f"python -m fmae.bench gpu --out {out}" in text and "480 s budget" in text
    for name in ("1. tests", "2. attention", "3. step", "4. dali", "5. memory"):
        assert name in text
    assert "ViT-B without checkpointing" in text and "ViT-L with checkpointing" in text and "at ratio 0.9" in text
    assert "python -m pytest -q" in text and "tests/ops" in text and "tests/masking/test_strategies.py" in text
    assert "reference, sdpa, triton, xformers" in text and "decoder [8,6,1568,64]" in text
    assert "encoder r0.9 [2,12,157,64]" in text and "bf16 and fp16" in text
    assert "VideoMAEForPreTraining" in text and "fmae_random_mae keep 0.5" in text
    assert "make_loader(backend='dali', device='cuda')" in text
    assert "gpu_check.json" in text and "gpu_check.md" in text
    assert not out.exists()


def test_dry_run_follows_the_settings(tmp_path, capsys):
    assert (
        main(
            [
                "gpu",
                "--out",
                str(tmp_path),
                "--dry-run",
                "--checks",
                "step,attention",
                "--budget",
                "300",
                "--attention-batch-sizes",
                "4",
                "--step-batch-size",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "1. attention" in text and "2. step" in text and "tests/ops" not in text and "dali" not in text
    assert "300 s budget" in text and "--budget 300.0" in text and "[4,12,157,64]" in text and "B=2," in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_it_says_so_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(command, "run_checks", lambda *a, **k: pytest.fail("nothing may run without CUDA"))
    assert main(["gpu", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("No CUDA here: torch ") and "4. dali" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--checks", "tests,nope"], "checks must be"),
        (["--checks", ","], "checks must be"),
        (["--budget", "0"], "budget must be"),
        (["--attention-batch-sizes", "2,x"], "attention_batch_sizes"),
        (["--step-ratio", "1"], "step_ratio"),
    ],
)
def test_bad_settings_are_clear_errors(capsys, flags, message):
    assert main(["gpu", "--dry-run", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gpu", "--help"])
    assert exit_info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the real checks on the GPU")
def test_the_whole_command_with_its_processes(tmp_path, capsys, monkeypatch):
    """The command as on a GPU machine (CUDA faked in this process only): each check runs in
    its own process, where the real check finds no CUDA and says so; the report is written."""
    monkeypatch.setattr(command, "cuda_status", lambda: (True, "faked"))
    out = tmp_path / "out"
    assert main(["gpu", "--out", str(out), "--checks", "attention,step,dali", "--budget", "200"]) == 0
    captured = capsys.readouterr()
    assert "[1/3] attention" in captured.err and f"wrote {out / 'gpu_check.json'}" in captured.out
    report = json.loads((out / "gpu_check.json").read_text())
    assert [c["name"] for c in report["checks"]] == ["attention", "step", "dali"]
    for c in report["checks"]:
        assert c["status"] == "skipped" and c["reason"].startswith("no CUDA: torch"), c
    assert report["summary"] == {"ok": 0, "failed": 0, "skipped": 3} and report["wall_s"] > 0
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["gpu"] is None and env["cpp_extension_built"] in (True, False)
    assert report["command"] == f"python -m fmae.bench gpu --out {out} --budget 200.0 --checks attention,step,dali"
    md = (out / "gpu_check.md").read_text()
    assert "0 ok, 0 failed, 3 skipped" in md and "no CUDA: torch" in md
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]
