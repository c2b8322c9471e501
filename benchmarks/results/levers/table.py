"""The levers' table: per cell, the masked-cube error on the Validation split of the model, the
mean face and the best of the three baselines, overall and per region (python table.py OUT)."""

import json
import sys
from pathlib import Path

KEYS = ["all", "left_eye", "right_eye", "nose", "mouth", "hair", "skin", "background"]


def _probe(cell: Path) -> str:
    """The probe's Test accuracy and the random-init encoder's, as ``0.350 (0.575)``."""
    path = cell / "probe" / "metrics.json"
    if not path.is_file():
        return "—"
    m = json.loads(path.read_text())
    return f"{m['accuracy']:.3f} ({m['random_init']['accuracy']:.3f})"


def main(out: Path) -> None:
    print(
        "| cell | flags | train s | probe (random init) | row | " + " | ".join(k.replace("_", " ") for k in KEYS) + " |"
    )
    print("|---|---|---|---|---|" + "---:|" * len(KEYS))
    for cell in sorted(p for p in out.iterdir() if (p / "eval" / "reconstruction.json").is_file()):
        r = json.loads((cell / "eval" / "reconstruction.json").read_text())
        best = {k: min(b[k] for b in r["baselines"].values() if b[k] is not None) for k in KEYS if r["model"][k]}
        rows = {"model": r["model"], "mean face": r["mean_face"], "best baseline": best}
        head = [cell.name, f"`{(cell / 'flags').read_text().strip()}`", (cell / "train_seconds").read_text().strip()]
        head.append(_probe(cell))
        for label, row in rows.items():
            cells = [f"{row[k]:.3f}" if row.get(k) is not None else "—" for k in KEYS]
            if label == "model":  # bold where the model beats both the mean face and every baseline
                cells = [
                    f"**{c}**" if row.get(k) is not None and row[k] < min(r["mean_face"][k], best[k]) else c
                    for c, k in zip(cells, KEYS)
                ]
            print(f"| {' | '.join(head)} | {label} | " + " | ".join(cells) + " |")
            head = ["", "", "", ""]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
