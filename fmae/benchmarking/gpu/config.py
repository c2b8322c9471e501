"""What ``python -m fmae.bench gpu`` runs: the checks (:data:`CHECKS`), the settings
(:class:`GpuCheckConfig`) and the names of the files it writes."""

from __future__ import annotations

from dataclasses import dataclass

from fmae.runtime.config import setting

JSON_NAME, MD_NAME, TESTS_LOG = "gpu_check.json", "gpu_check.md", "gpu_tests.log"
REPORT_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One check: ``target`` (``"module:function"``) is called with a :class:`~fmae.benchmarking.gpu.runner.Context`."""

    name: str
    title: str
    estimate_s: float
    """The least time worth starting it with."""
    limit_s: float
    """The most time it may take."""
    target: str
    own_process: bool = True
    """Run it in a fresh Python process; ``tests`` only starts pytest, so it runs in the runner's."""


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            "tests",
            "the GPU tests, with pytest",
            60.0,
            240.0,
            "fmae.benchmarking.gpu.tests:check",
            own_process=False,
        ),
        Check(
            "attention", "attention backends at ViT-B's shapes", 45.0, 150.0, "fmae.benchmarking.gpu.attention:check"
        ),
        Check(
            "step", "ViT-B pre-training step, FMAE against HF VideoMAE", 60.0, 150.0, "fmae.benchmarking.gpu.step:check"
        ),
        Check("dali", "DALI GPU decoding against the PyTorch loader", 40.0, 120.0, "fmae.benchmarking.gpu.dali:check"),
        Check(
            "memory",
            "largest ViT-B and ViT-L batch that fits, without and with gradient checkpointing",
            60.0,
            240.0,
            "fmae.benchmarking.gpu.memory:check",
        ),
    )
}
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS)


@dataclass
class GpuCheckConfig:
    """What ``python -m fmae.bench gpu`` runs and where it writes."""

    out: str = setting("runs/gpu_check", "folder for gpu_check.json, gpu_check.md and the tests' log")
    budget: float = setting(
        480.0, "total seconds for the checks; a check that no longer fits is skipped, with the reason"
    )
    checks: str = setting(",".join(CHECK_NAMES), f"comma-separated checks to run, of {','.join(CHECK_NAMES)}")
    dry_run: bool = setting(False, "only list what would run (what happens anyway without CUDA)")
    attention_batch_sizes: str = setting("2,8", "comma-separated batch sizes of the attention shapes")
    step_batch_size: int = setting(8, "clips per pre-training step, FMAE and HF alike")
    step_ratio: float = setting(0.9, "masking ratio of the pre-training steps (the step and memory checks')")
    step_steps: int = setting(10, "timed pre-training steps per case (after 3 untimed)")

    def __post_init__(self) -> None:
        names = self.selected()
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown or not names:
            raise ValueError(f"checks must be a comma-separated list of {CHECK_NAMES}, got {self.checks!r}")
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {self.budget}")
        self.batch_sizes()
        if not 0.0 < self.step_ratio < 1.0:
            raise ValueError(f"step_ratio must be in (0, 1), got {self.step_ratio}")
        if self.step_batch_size < 1 or self.step_steps < 1:
            raise ValueError(
                f"step_batch_size and step_steps must be >= 1, got {self.step_batch_size}, {self.step_steps}"
            )

    def selected(self) -> list[str]:
        """The checks to run, in :data:`CHECK_NAMES`' order, each once."""
        asked = [s.strip() for s in str(self.checks).split(",") if s.strip()]
        return [n for n in CHECK_NAMES if n in asked] + [n for n in asked if n not in CHECK_NAMES]

    def batch_sizes(self) -> list[int]:
        try:
            sizes = [int(s) for s in str(self.attention_batch_sizes).split(",") if s.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise ValueError(
                f"attention_batch_sizes must be positive integers like 2,8, got {self.attention_batch_sizes!r}"
            )
        return sizes
