"""``report.html``: the page a person looks at after ``python -m fmae.predict`` (issue #22).

One self-contained HTML file: no script, no style sheet or font from elsewhere, every
image inline as a ``data:image/png;base64`` URI, so it opens the same from a mail
attachment, a shared drive or a machine with no network. It holds the recording's facts
and status (``ok``, or why nothing was scored: ``no_face``, ``too_many_faces``) and one
section per person (one section for the face of a one-face run), each with

- a **thumbnail**: one of the person's face crops (:func:`fmae.downstream.windows.thumbnail`);
- the **timeline**: the person's engagement over time, face-less windows shaded
  (:func:`fmae.downstream.predict.save_timeline_png`);
- the **summary**: the person's counts, level shares or mean score, and segments
  (:func:`fmae.downstream.predict.timeline_summary`).

Elements carry stable ``id``/``class`` names (``section.person#person-00``, ``img.thumbnail``,
``img.timeline``, ``table.summary``, ``p.status``) so that tests and scripts can read the page.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from fmae.runtime.files import write_atomically

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 75em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin: 0 0 .4em 0; }
table { border-collapse: collapse; } td, th { padding: .15em .6em; text-align: left; vertical-align: top; }
table.facts th, table.summary th { font-weight: normal; color: #555; }
section.person { display: grid; grid-template-columns: 10em 1fr; gap: 1em; border-top: 1px solid #ccc;
  padding: 1em 0; }
img.thumbnail { width: 9em; height: 9em; image-rendering: pixelated; border: 1px solid #999; }
div.no-thumbnail { width: 9em; height: 9em; background: #ddd; display: flex; align-items: center;
  justify-content: center; color: #666; }
img.timeline { max-width: 100%; }
p.status { padding: .5em; background: #eef; } p.status.problem { background: #fdd; }
"""


@dataclass
class PersonSection:
    """What the report shows of one person."""

    name: str
    """``person-NN`` as in ``timeline.csv`` and ``tracks.csv``, or ``face`` in a one-face run."""
    thumbnail: np.ndarray | None
    """``uint8 [H, W, 3]`` RGB face crop, ``None`` when the person's face was never seen."""
    timeline_png: bytes
    """The PNG file of the person's timeline plot."""
    summary: dict[str, Any]
    """The person's part of ``summary.json`` (:func:`fmae.downstream.predict.timeline_summary` and counts)."""


def png_data_uri(image: np.ndarray | bytes) -> str:
    """``data:image/png;base64,…`` of a PNG file's bytes, or of ``uint8 [H, W, 3]`` RGB pixels."""
    if not isinstance(image, bytes):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
        image = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)


def _summary_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The person's summary as (label, text) rows, in reading order."""
    rows: list[tuple[str, Any]] = []
    if "frames_with_face" in summary:
        rows.append(("frames with the face", summary["frames_with_face"]))
    rows += [
        ("windows", summary["windows"]),
        ("scored", summary["scored_windows"]),
        ("no face", summary["no_face_windows"]),
    ]
    if "level_share" in summary:
        rows.append(("share of scored windows", ", ".join(f"{c} {s:.0%}" for c, s in summary["level_share"].items())))
    elif "mean_score" in summary:
        mean = summary["mean_score"]
        rows.append(("mean score", "none (nothing scored)" if mean is None else f"{mean:.3f}"))
    segments = summary.get("segments", [])
    rows.append(("segments", "; ".join(f"{a:.2f}–{b:.2f} s {level}" for a, b, level in segments) or "none"))
    return rows


def _section(person: PersonSection) -> str:
    name = html.escape(person.name)
    if person.thumbnail is not None:
        picture = f'<img class="thumbnail" alt="face of {name}" src="{png_data_uri(person.thumbnail)}">'
    else:
        picture = '<div class="no-thumbnail">no face seen</div>'
    timeline = f'<img class="timeline" alt="engagement of {name} over time" src="{png_data_uri(person.timeline_png)}">'
    return (
        f'<section class="person" id="{name}">\n<div>{picture}</div>\n<div>\n<h2>{name}</h2>\n{timeline}\n'
        f'<table class="summary">{_rows(_summary_rows(person.summary))}</table>\n</div>\n</section>\n'
    )


def render_report(
    title: str, facts: Sequence[tuple[str, Any]], status: str, message: str, people: Sequence[PersonSection]
) -> str:
    """The page as text: ``title``, the recording's ``facts`` (label, value), its ``status`` and
    ``message`` (shown as a problem unless ``ok``), and one section per person in order."""
    problem = status != "ok"
    if problem:
        said = f"{status}: {message}" if message else status
    else:
        said = f"{len(people)} {'person' if len(people) == 1 else 'people'}" + (f"; {message}" if message else "")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f'<table class="facts">{_rows(facts)}</table>\n'
        f'<p class="status{" problem" if problem else ""}" data-status="{html.escape(status)}">'
        f"{html.escape(said)}</p>\n" + "".join(_section(p) for p in people) + "</body>\n</html>\n"
    )


def write_report(
    path: str | Path,
    title: str,
    facts: Sequence[tuple[str, Any]],
    status: str,
    message: str,
    people: Sequence[PersonSection],
) -> Path:
    """Write :func:`render_report`'s page to ``path`` atomically (a reader never sees half a page)."""
    page = render_report(title, facts, status, message, people)
    return write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
