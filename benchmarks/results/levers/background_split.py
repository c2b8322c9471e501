"""Where a model's held-out error sits on one region: the masked cubes whose spatial position is
visible at some other time (a temporal interpolation exists) against those hidden at every time.

python background_split.py RUN [REGION]   (REGION: a name of fmae.evaluation.REGIONS, default background)

Runs ``python -m fmae.evaluate RUN --split Validation --mean-face`` on the built-in set (into a
temporary folder) and prints, per kind of cube, the count and the mean squared error of the model,
the temporal_interp baseline (the nearest visible cube where there is no interpolation) and the
mean face; for a model with ``--decoder-hint interp_nearest``, also the mean of its gate on the
nearest visible cube (the share of that cube its prediction keeps) over the cubes hidden at every time.
"""

import sys
import tempfile

import torch

from fmae.evaluation import REGIONS, error
from fmae.evaluation.evaluate import EvaluateConfig, run_evaluate
from fmae.model import temporal_interp
from fmae.ops import visible_index

PREDICTORS = ("model", "visible_mean", "nearest_visible", "temporal_interp", "mean_face")


def main(run: str, region: str) -> None:
    wanted = REGIONS.index(region)
    sums: dict[tuple[str, bool], list[float]] = {}
    measure = error._batch_errors

    def split(model, batch, masking, first, device, dtype, mean_face=None):
        gates = []
        hook = None
        if hasattr(model, "hint_gate"):
            hook = model.hint_gate.register_forward_hook(lambda m, i, o: gates.append(torch.sigmoid(o.float())[..., 0]))
        errors, labels = measure(model, batch, masking, first, device, dtype, mean_face)
        if hook is not None:
            hook.remove()
        mask = masking.masks(model, batch["region_map"].to(device), first, device)
        _, masked = visible_index(mask, masking.n_masked)
        _, found = temporal_interp(torch.zeros(*mask.shape, 1), ~mask, model.config.grid)
        in_time = found.gather(1, masked)
        for name, e in zip(PREDICTORS, errors):
            for kind in (True, False):
                chosen = (labels == wanted) & (in_time == kind)
                total = sums.setdefault((name, kind), [0.0, 0])
                total[0] += float(e[chosen].sum())
                total[1] += int(chosen.sum())
        if gates:
            chosen = (labels == wanted) & ~in_time
            total = sums.setdefault(("gate", False), [0.0, 0])
            total[0] += float(torch.cat(gates, 1)[chosen.to(gates[0].device)].sum())
            total[1] += int(chosen.sum())
        return errors, labels

    error._batch_errors = split
    with tempfile.TemporaryDirectory() as out:
        run_evaluate(EvaluateConfig(checkpoint=run, split="Validation", mean_face=True, out_dir=out), progress=False)
    print(f"| {region} cubes | count | model | temporal_interp | mean face |")
    print("|---|---:|---:|---:|---:|")
    for kind, label in ((True, "seen at another time"), (False, "hidden at every time")):
        n = sums[("model", kind)][1]
        row = [f"{sums[(p, kind)][0] / n:.3f}" if n else "—" for p in ("model", "temporal_interp", "mean_face")]
        print(f"| {label} | {n} | " + " | ".join(row) + " |")
    if ("gate", False) in sums:
        total, n = sums[("gate", False)]
        print(f"\nmean gate on the nearest visible cube, {region} cubes hidden at every time: {total / max(n, 1):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "background")
