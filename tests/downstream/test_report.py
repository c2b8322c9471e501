"""``report.html`` (:mod:`fmae.downstream.report`): one self-contained page that shows what it claims.

The page is read three ways: parsed (``html.parser``) with every inline image decoded (PIL);
from a real ``python -m fmae.predict --faces all`` run on two real portraits
(``gallery_videos.two_faces``); and opened in a real headless browser, Chromium's headless shell
(Debian's ``chromium-headless-shell``, ``apt-get install chromium-headless-shell``; ``chromium``
serves too), which must load and lay out every image with no network. The browser test skips
where no such browser is installed."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from gallery_videos import two_faces
from PIL import Image
from predict_helpers import CLASSES, random_probe

from fmae.data.video_writer import write_video
from fmae.downstream.predict import Timeline, save_timeline_png, timeline_summary
from fmae.downstream.report import PersonSection, render_report, write_report
from fmae.predict import main

SHADE = (217, 217, 217)  # matplotlib's "0.85", the face-less spans' grey


class Page(HTMLParser):
    """Every element's tag and attributes, in order, with the person section each lies in, and
    the page's text."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict, str | None]] = []
        self.text: list[str] = []
        self._section: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
        self.elements.append((tag, attrs, self._section))

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        self.text.append(data)

    def images(self, cls: str) -> dict[str, list[Image.Image]]:
        """``{section id: [decoded images of class cls]}``; every image must be an inline PNG."""
        out: dict[str, list[Image.Image]] = {}
        for tag, attrs, section in self.elements:
            if tag == "img" and attrs.get("class") == cls:
                head, data = attrs["src"].split(",", 1)
                assert head == "data:image/png;base64", head
                image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
                image.load()
                out.setdefault(section, []).append(image)
        return out


def _self_contained(page: Page, text: str) -> None:
    """Nothing is fetched: no script, style sheet, frame or link; every src is a data: URI."""
    assert not {tag for tag, _, _ in page.elements} & {"script", "link", "iframe", "object", "embed"}
    for tag, attrs, _ in page.elements:
        for name in ("src", "href", "srcset", "poster"):
            assert name not in attrs or attrs[name].startswith("data:"), (tag, attrs.get(name, "")[:60])
    assert not re.search(r"url\(|@import|https?://", text)


def _timeline(face: np.ndarray) -> Timeline:
    """Ten windows of one second, a face in those where ``face`` is True."""
    W = len(face)
    scores = np.full((W, len(CLASSES)), np.nan, np.float32)
    scores[face] = np.eye(len(CLASSES), dtype=np.float32)[np.arange(W) % len(CLASSES)][face]
    return Timeline(np.arange(W, dtype=float), np.arange(W, dtype=float) + 1, face.astype(float), scores,
                    "classification", CLASSES)  # fmt: skip


def _png(timeline: Timeline) -> bytes:
    buffer = io.BytesIO()
    save_timeline_png(timeline, buffer, "t")
    return buffer.getvalue()


def _shaded(image: Image.Image) -> float:
    """Fraction of the picture's pixels in the face-less spans' grey."""
    pixels = np.asarray(image.convert("RGB"))
    return float((pixels == SHADE).all(-1).mean())


def test_the_page_shows_each_person_as_claimed(tmp_path):
    rng = np.random.default_rng(0)
    thumbs = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), None]
    faces = [np.ones(10, bool), np.arange(10) < 4]
    people = [
        PersonSection(f"person-0{k}", thumb, _png(_timeline(face)), {"person": f"person-0{k}", "frames_with_face": 7,
                      **timeline_summary(_timeline(face))})
        for k, (thumb, face) in enumerate(zip(thumbs, faces))
    ]  # fmt: skip
    facts = [("video", "lesson <1>.mp4"), ("frames", "240 at 24 fps")]
    path = write_report(tmp_path / "report.html", "lesson <1>.mp4: engagement", facts, "ok", "", people)
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    _self_contained(page, text)
    assert [a["id"] for t, a, _ in page.elements if t == "section"] == ["person-00", "person-01"]
    assert "lesson &lt;1&gt;.mp4" in text and "<1>" not in text  # text is escaped, not markup

    thumbnails, timelines = page.images("thumbnail"), page.images("timeline")
    assert list(thumbnails) == ["person-00"]  # person-01 was never seen: no picture, a note
    np.testing.assert_array_equal(np.asarray(thumbnails["person-00"][0]), thumbs[0])  # PNG: lossless
    assert {k: len(v) for k, v in timelines.items()} == {"person-00": 1, "person-01": 1}
    for person in people:
        (image,) = timelines[person.name]
        assert image.format == "PNG" and image.size == Image.open(io.BytesIO(person.timeline_png)).size
    # person-01 has no face in six windows of ten: a shaded span; person-00 none (antialiased edges aside).
    assert _shaded(timelines["person-01"][0]) > 0.1 and _shaded(timelines["person-00"][0]) < 0.001
    words = " ".join(page.text)
    assert "no face seen" in words and "2 people" in words
    assert "very low 25%" in words  # person-01's four scored windows, one of each level


def test_a_page_without_people_says_why():
    text = render_report("x", [], "too_many_faces", "9 people, more than max_faces 8: raise it", [])
    page = Page(text)
    (status,) = [a for t, a, _ in page.elements if t == "p"]
    assert status["data-status"] == "too_many_faces" and "problem" in status["class"]
    assert "9 people, more than max_faces 8" in " ".join(page.text)
    assert not [t for t, _, _ in page.elements if t in ("section", "img")]


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """``python -m fmae.predict --faces all`` on two real portraits, the astronaut away in frames 4-8
    (a random tiny encoder and probe: the page is checked, not the verdicts)."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("skimage")
    d = tmp_path_factory.mktemp("report")
    probe = random_probe(d, CLASSES)
    write_video(d / "two.avi", two_faces()[0], 12)
    out = d / "out"
    cpu = ["--device", "cpu", "--dtype", "fp32", "--no-progress"]
    assert main([str(d / "two.avi"), "--probe", str(probe), "--out-dir", str(out), "--faces", "all",
                 "--min-track", "0.25", *cpu]) == 0  # fmt: skip
    return out


def test_the_predicted_page_has_every_person_of_the_run(predicted):
    summary = json.loads((predicted / "summary.json").read_text())
    text = (predicted / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    _self_contained(page, text)
    names = [p["person"] for p in summary["persons"]]
    assert names == ["person-00", "person-01"]
    assert [a["id"] for t, a, _ in page.elements if t == "section"] == names
    thumbnails, timelines = page.images("thumbnail"), page.images("timeline")
    assert (
        {k: len(v) for k, v in thumbnails.items()}
        == {k: len(v) for k, v in timelines.items()}
        == dict.fromkeys(names, 1)
    )
    for name in names:
        (thumb,) = thumbnails[name]
        assert thumb.size == (32, 32) and np.asarray(thumb).std() > 10  # a face crop, not a blank tile
    # The astronaut's window 1 is no_face (away in frames 4-8): shaded; Hopper is never away.
    assert _shaded(timelines["person-01"][0]) > 0.01 and _shaded(timelines["person-00"][0]) < 0.001
    words = " ".join(page.text)
    for person in summary["persons"]:  # each summary is on the page
        assert f"{person['scored_windows']}" in words and person["segments"][0][2] in words


BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
# Run in the browser on a copy of the page (the report itself has no script): once everything
# has loaded, write each image's decoded and laid-out size into the body.
PROBE = """<script>window.addEventListener("load", () => {
  document.body.dataset.seen = JSON.stringify([...document.images].map(i => ({
    cls: i.className, section: i.closest("section").id, complete: i.complete,
    natural: [i.naturalWidth, i.naturalHeight], shown: [i.width, i.height]})));
});</script>"""


def test_a_headless_browser_shows_every_image(predicted, tmp_path):
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        pytest.skip("no headless browser (apt-get install chromium-headless-shell)")
    page = tmp_path / "page.html"
    page.write_text((predicted / "report.html").read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=10000",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    seen = re.search(r'data-seen="([^"]*)"', run.stdout)
    assert seen, run.stdout[-2000:]
    images = json.loads(seen.group(1).replace("&quot;", '"'))
    summary = json.loads((predicted / "summary.json").read_text())
    names = [p["person"] for p in summary["persons"]]
    assert sorted((i["section"], i["cls"]) for i in images) == sorted(
        (n, c) for n in names for c in ("thumbnail", "timeline")
    )
    for i in images:
        assert i["complete"] and min(i["natural"]) > 0 and min(i["shown"]) > 0, i
