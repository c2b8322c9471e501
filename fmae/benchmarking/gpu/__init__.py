"""Every check that needs a GPU, in one command: ``python -m fmae.bench gpu --out DIR``.

Five checks, run in order, each in a Python process of its own (a crashed or hung
kernel takes only its own check down) and each with a time limit, all inside one total
budget (``--budget``, 480 s by default); one module each:

1. ``tests`` (:mod:`~fmae.benchmarking.gpu.tests`): ``pytest tests/ops`` and the CUDA-gated
   test files, in one pytest process; the whole log as ``gpu_tests.log``.
2. ``attention`` (:mod:`~fmae.benchmarking.gpu.attention`): the attention backends at ViT-B's
   shapes, in bf16 and fp16, forward and forward + backward: error and time per call.
3. ``step`` (:mod:`~fmae.benchmarking.gpu.step`): the ViT-B pre-training step, HF VideoMAE's
   against FMAE's, at decoder keep 1 and 0.5.
4. ``dali`` (:mod:`~fmae.benchmarking.gpu.dali`): DALI decoding on the GPU against the
   PyTorch loader.
5. ``memory`` (:mod:`~fmae.benchmarking.gpu.memory`): the largest batch whose pre-training
   step fits, ViT-B and ViT-L, without and with gradient checkpointing.

Budget (:mod:`~fmae.benchmarking.gpu.runner`): a check starts only if the budget has its
``estimate_s`` left, and runs for at most its ``limit_s``, less what the checks after it
need at least (:func:`allot`); one that does not fit is skipped with the reason. Checks also
watch their own deadline and leave the cases they cannot finish as skipped. A check's
process that outlives its limit is killed; what it had saved so far is kept.

Results (:mod:`~fmae.benchmarking.gpu.report`): ``gpu_check.json`` (every check's status —
``ok``, ``failed`` or ``skipped`` — reason, error, numbers; the GPU, driver, torch/CUDA/Triton
and package versions; the wall time) and ``gpu_check.md``, its summary, rewritten after each
check so that a run cut short still leaves what it did. Without CUDA (or with ``--dry-run``)
nothing is run: the command (:mod:`~fmae.benchmarking.gpu.command`) says why and lists what
it would run. What runs and its settings: :mod:`~fmae.benchmarking.gpu.config`.
"""

from fmae.benchmarking.gpu.command import dry_run_text, environment, run
from fmae.benchmarking.gpu.config import CHECK_NAMES, CHECKS, Check, GpuCheckConfig
from fmae.benchmarking.gpu.report import format_markdown, summarize, summary_text, write_report
from fmae.benchmarking.gpu.runner import Context, Skip, allot, run_checks, run_in_child, run_inline

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "Check",
    "Context",
    "GpuCheckConfig",
    "Skip",
    "allot",
    "dry_run_text",
    "environment",
    "format_markdown",
    "run",
    "run_checks",
    "run_in_child",
    "run_inline",
    "summarize",
    "summary_text",
    "write_report",
]
