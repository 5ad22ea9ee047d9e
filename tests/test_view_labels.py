"""What's in view: labels ranked from controlled embeddings, the paced background loop, the
real tiny CLIP and SigLIP, the camera panel in the real window, and the settings."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from assistant.devices.camera import Frame
from assistant.encoders.contrastive import ContrastiveEncoder
from assistant.errors import ModelLoadError
from assistant.fusion.view_labels import PROMPT, LabelLoop, ViewLabeler, describe, percentages
from assistant.settings import Settings

WAIT = 20_000  # ms: generous, a loaded CI machine is slow
LABELS = ["mug", "keyboard", "plant", "cat"]


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float32)
    return vector / np.linalg.norm(vector)


class FakeEncoder:
    """Vectors we set: label i's text is the i-th axis; an image's vector is looked up by its
    first pixel.  ``label_scores`` is the real encoder's (CLIP softmax / SigLIP sigmoid)."""

    label_scores = ContrastiveEncoder.label_scores

    def __init__(self, images: dict[int, np.ndarray], sigmoid: bool = False, scale: float = 10.0,
                 bias: float = -2.0, delay: float = 0.0) -> None:
        self.images = images
        self.sigmoid = sigmoid
        self.logit_scale = scale
        self.logit_bias = bias if sigmoid else 0.0
        self.delay = delay
        self.texts_asked: list[str] = []
        self.images_embedded = 0

    def embed_texts(self, texts):
        self.texts_asked.extend(texts)
        out = np.zeros((len(texts), 4), np.float32)
        for row, text in enumerate(texts):
            label = next(label for label in LABELS if text == PROMPT.format(label=label))
            out[row, LABELS.index(label)] = 1.0
        return out

    def embed_images(self, images, keys=None):
        if self.delay:
            time.sleep(self.delay)
        self.images_embedded += len(images)
        return np.stack([self.images[int(image.flat[0])] for image in images])


def picture(kind: int) -> np.ndarray:
    return np.full((8, 8, 3), kind, np.uint8)


# -- ViewLabeler --------------------------------------------------------------------------------


def test_labels_are_ranked_best_first_and_cut_to_top():
    encoder = FakeEncoder({1: unit([0.3, 0.9, 0.5, 0.0])})
    labeler = ViewLabeler(encoder, LABELS)
    assert encoder.texts_asked == ["a photo of a mug.", "a photo of a keyboard.", "a photo of a plant.",
                                   "a photo of a cat."]
    labels = labeler.label(picture(1))
    assert [name for name, _ in labels] == ["keyboard", "plant", "mug"]  # top 3 of 4
    scores = [score for _, score in labels]
    assert scores == sorted(scores, reverse=True)
    assert [name for name, _ in ViewLabeler(encoder, LABELS, top=1).label(picture(1))] == ["keyboard"]
    assert len(ViewLabeler(encoder, LABELS, top=10).label(picture(1))) == 4
    texts = len(encoder.texts_asked)
    labeler.label(picture(1))
    assert len(encoder.texts_asked) == texts  # the label texts are embedded once per labeler
    with pytest.raises(ValueError):
        ViewLabeler(encoder, [])


def test_clip_scores_are_a_softmax_over_the_labels():
    image = unit([0.3, 0.9, 0.5, 0.0])
    encoder = FakeEncoder({1: image}, scale=10.0)
    scores = ViewLabeler(encoder, LABELS).scores(picture(1))
    expected = np.exp(10.0 * image) / np.exp(10.0 * image).sum()
    assert np.allclose(scores, expected, atol=1e-6)
    assert scores.sum() == pytest.approx(1.0)
    # A softmax: another label in the list takes a share from the others.
    fewer = ViewLabeler(encoder, LABELS[:2]).scores(picture(1))
    assert fewer[1] > scores[1] and fewer.sum() == pytest.approx(1.0)


def test_siglip_scores_are_independent_sigmoids():
    image = unit([0.3, 0.9, 0.5, 0.0])
    encoder = FakeEncoder({1: image}, sigmoid=True, scale=10.0, bias=-2.0)
    scores = ViewLabeler(encoder, LABELS).scores(picture(1))
    assert np.allclose(scores, 1 / (1 + np.exp(-(10.0 * image - 2.0))), atol=1e-6)
    assert scores.sum() != pytest.approx(1.0)
    fewer = ViewLabeler(encoder, LABELS[:2]).scores(picture(1))
    assert np.allclose(fewer, scores[:2])  # a label's score does not depend on the others
    best = ViewLabeler(encoder, LABELS).label(picture(1))
    assert best[0][0] == "keyboard" and best[0][1] == pytest.approx(scores[1])


def test_describe_and_percentages():
    labels = [("mug", 0.6213), ("keyboard", 0.2071), ("cup", 0.094)]
    assert describe(labels) == "mug 0.62, keyboard 0.21, cup 0.09"
    assert percentages(labels) == "mug 62 % · keyboard 21 % · cup 9 %"
    assert describe([]) == "" and percentages([]) == ""


# -- LabelLoop ----------------------------------------------------------------------------------


class Camera:
    """``latest()`` for the loop: a new frame each call (``moving``) or always the same one."""

    def __init__(self, kind: int = 1, moving: bool = True) -> None:
        self.kind, self.moving = kind, moving
        self.index = 0
        self.lock = threading.Lock()

    def latest(self) -> Frame:
        with self.lock:
            if self.moving or self.index == 0:
                self.index += 1
            return Frame(picture(self.kind), self.index / 30, self.index)


def collect():
    results, problems = [], []
    return results, problems, results.append, problems.append


def test_the_loop_keeps_to_its_share_of_the_time_and_stops_at_once():
    encoder = FakeEncoder({1: unit([0, 1, 0, 0])}, delay=0.1)
    results, problems, on_labels, on_problem = collect()
    loop = LabelLoop(lambda: encoder, Camera().latest, LABELS, on_labels, on_problem,
                     min_interval=0.1, core_share=0.25, poll=0.01).start()
    started = time.monotonic()
    deadline = started + 20
    while len(results) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert len(results) >= 3 and problems == []
    # cost 0.1 s at a quarter of the time: one labelling every 0.4 s at most, not every 0.1 s.
    assert loop.interval == pytest.approx(0.4, rel=0.5) and loop.interval >= 0.35
    assert elapsed >= 0.75
    gaps = np.diff([r.t for r in results])
    assert all(gap >= 0.3 for gap in gaps), gaps
    assert results[0].labels[0][0] == "keyboard" and results[0].seconds >= 0.09 and results[0].cpu_seconds >= 0
    assert loop.busy_seconds / (time.monotonic() - started) <= 0.45
    stopping = time.monotonic()
    assert loop.stop(timeout=5)
    assert time.monotonic() - stopping < 1.0  # the pause is cut short; only a labelling in progress waits
    assert not loop.running and not loop._thread.is_alive()
    count = len(results)
    time.sleep(0.3)
    assert len(results) == count


def test_a_cheap_labelling_still_waits_the_shortest_interval():
    encoder = FakeEncoder({1: unit([1, 0, 0, 0])})
    results, _problems, on_labels, on_problem = collect()
    loop = LabelLoop(lambda: encoder, Camera().latest, LABELS, on_labels, on_problem,
                     min_interval=0.25, poll=0.01).start()
    time.sleep(1.2)
    assert loop.stop()
    assert 2 <= len(results) <= 6  # about one every 0.25 s, not one a frame
    assert loop.interval == pytest.approx(0.25)


def test_the_same_frame_is_labelled_once():
    encoder = FakeEncoder({1: unit([1, 0, 0, 0])})
    results, _problems, on_labels, on_problem = collect()
    loop = LabelLoop(lambda: encoder, Camera(moving=False).latest, LABELS, on_labels, on_problem,
                     min_interval=0.05, poll=0.01).start()
    time.sleep(0.6)
    assert loop.stop()
    assert len(results) == 1 and encoder.images_embedded == 1 and results[0].frame_index == 1


def test_the_loop_waits_for_the_encoder_and_for_frames():
    encoder = FakeEncoder({1: unit([0, 0, 1, 0])})
    ready = threading.Event()
    frames = {"on": False}
    camera = Camera()
    results, problems, on_labels, on_problem = collect()
    loop = LabelLoop(lambda: encoder if ready.is_set() else None,
                     lambda: camera.latest() if frames["on"] else None, LABELS, on_labels, on_problem,
                     min_interval=0.05, poll=0.01, wait=0.02).start()
    time.sleep(0.3)
    assert results == [] and problems == [] and loop.running  # no encoder yet: it waits
    ready.set()
    time.sleep(0.3)
    assert results == []  # no frame yet
    frames["on"] = True
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results and results[0].labels[0][0] == "plant"
    loop.set_labels(["cat", "mug"])
    deadline = time.monotonic() + 10
    while results[-1].labels[0][0] not in ("cat", "mug") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {name for name, _ in results[-1].labels} == {"cat", "mug"}
    assert loop.stop()


def test_problems_are_reported_once_and_never_raised():
    class Closed(FakeEncoder):
        def embed_images(self, images, keys=None):
            raise RuntimeError("the image search model was closed")

    closed = Closed({})
    results, problems, on_labels, on_problem = collect()
    loop = LabelLoop(lambda: closed, Camera().latest, LABELS, on_labels, on_problem,
                     poll=0.01, wait=0.02).start()
    time.sleep(0.4)
    assert loop.running  # the thread carries on
    assert loop.stop()
    assert problems == ["the image search model was closed"] and results == []

    def failing():
        raise ModelLoadError("Could not load the image search model 'x': no such folder")

    results, problems, on_labels, on_problem = collect()
    loop = LabelLoop(failing, Camera().latest, LABELS, on_labels, on_problem, wait=0.02).start()
    time.sleep(0.3)
    assert loop.stop()
    assert problems == ["Could not load the image search model 'x': no such folder"]


def test_a_problem_is_said_again_after_it_went_away():
    good = FakeEncoder({1: unit([1, 0, 0, 0])})
    state = {"fail": True}

    def get():
        if state["fail"]:
            raise ModelLoadError("not yet")
        return good

    results, problems, on_labels, on_problem = collect()
    loop = LabelLoop(get, Camera().latest, LABELS, on_labels, on_problem, min_interval=0.05, poll=0.01,
                     wait=0.02).start()
    time.sleep(0.2)
    state["fail"] = False
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    state["fail"] = True
    time.sleep(0.3)
    assert loop.stop()
    assert problems == ["not yet", "not yet"] and results


def test_a_receiver_that_fails_does_not_end_the_loop():
    encoder = FakeEncoder({1: unit([1, 0, 0, 0])})
    calls = []

    def bad(result):
        calls.append(result)
        raise ValueError("receiver bug")

    loop = LabelLoop(lambda: encoder, Camera().latest, LABELS, bad, min_interval=0.05, poll=0.01).start()
    time.sleep(0.4)
    assert loop.running and len(calls) >= 2
    assert loop.stop()


# -- the real tiny models -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_tiny_real_models_through_the_labeler_and_the_loop(tiny_search_models, kind):
    encoder = ContrastiveEncoder(str(tiny_search_models[kind]), "cpu", offline=True)
    try:
        assert encoder.sigmoid is (kind == "siglip")
        labels = ["mug", "keyboard", "plant", "cat", "dog"]
        labeler = ViewLabeler(encoder, labels)
        assert labeler.vectors.shape == (5, encoder.dim)
        image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        named = labeler.label(image)
        assert len(named) == 3 and {name for name, _ in named} <= set(labels)
        scores = [score for _, score in named]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        every = labeler.scores(image)
        if kind == "clip":
            assert every.sum() == pytest.approx(1.0, abs=1e-5)
        else:
            assert np.allclose(every, 1 / (1 + np.exp(-(encoder.logit_scale * (
                encoder.embed_images([image]) @ labeler.vectors.T)[0] + encoder.logit_bias))), atol=1e-5)
        assert [name for name, _ in labeler.label(image)] == [name for name, _ in named]  # deterministic

        results = []
        frame = Frame(image, 0.0, 10**9 + 1)
        loop = LabelLoop(lambda: encoder, lambda: frame, labels, results.append, min_interval=0.05).start()
        deadline = time.monotonic() + 20
        while not results and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loop.stop()
        assert results and list(results[0].labels) == named
        encoder.close()  # a closed encoder is said, not raised
        problems = []
        loop = LabelLoop(lambda: encoder, lambda: Frame(image, 0.0, 10**9 + 2), labels, results.append,
                         problems.append, wait=0.02).start()
        deadline = time.monotonic() + 20
        while not problems and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loop.stop()
        assert problems == ["the image search model was closed"]
    finally:
        encoder.close()


# -- the camera panel in the real window -------------------------------------------------------


@pytest.fixture
def labels_window(main_window, tiny_models, tiny_search_models, tmp_path):
    from tests.test_camera_app import write_video

    video = write_video(tmp_path / "scene.avi", seconds=3.0)

    def open_(**settings):
        settings.setdefault("search_model", str(tiny_search_models["clip"]))
        return main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", camera=str(video),
                                    max_new_tokens=4, **settings), persist_settings=False)

    return open_


LABEL_LINE = re.compile(r"^[\w ]+ \d{1,3} %( · [\w ]+ \d{1,3} %){2}$")


def test_the_panel_shows_what_is_in_view(qtbot, labels_window):
    window = labels_window(view_label_list="mug, keyboard, plant, cat, dog")
    panel = window.camera_panel
    view = panel.view
    assert view.box.text() == "What's in view" and view.box.accessibleName() and view.box.toolTip()
    assert view.line.accessibleName() == "What is in view"
    assert not view.box.isChecked() and not view.line.isVisible()
    window.bridge.engine.encoder.load(download=False)
    panel.toggle.click()
    qtbot.waitUntil(lambda: panel.state == "live" and panel.frames_shown > 5, timeout=WAIT)
    assert view.loop is None and not view.line.isVisible()  # off until the box is checked
    view.box.click()
    assert window.settings.view_labels  # the choice is kept (the setting)
    qtbot.waitUntil(lambda: view.line.isVisible() and bool(LABEL_LINE.match(view.line.text())), timeout=WAIT)
    names = [part.rsplit(" ", 2)[0] for part in view.line.text().split(" · ")]
    assert set(names) <= {"mug", "keyboard", "plant", "cat", "dog"}
    # The preview keeps running while the labels are on.
    shown = panel.frames_shown
    qtbot.wait(1000)
    assert panel.frames_shown - shown >= 10
    assert view.latest() is not None and len(view.latest().labels) == 3
    # Another list from the settings: labels from it only.
    window.apply_settings(window.settings.replace(view_label_list="lamp, book"))
    assert view.labels == ["lamp", "book"]
    qtbot.waitUntil(lambda: set(re.findall(r"(lamp|book|mug|keyboard|plant|cat|dog) \d", view.line.text()))
                    == {"lamp", "book"}, timeout=WAIT)
    loop = view.loop
    panel.toggle.click()  # camera off: the loop stops, the line goes
    assert view.loop is None and not view.line.isVisible() and view.latest() is None
    loop.stop(timeout=10)
    assert not loop._thread.is_alive()
    panel.toggle.click()  # on again: labelling again, the box still checked
    qtbot.waitUntil(lambda: view.loop is not None and view.loop.labelled > 0, timeout=WAIT)
    loop = view.loop
    window.close()  # joins the loop (devices first)
    assert view.loop is None and view._stopping == [] and not loop._thread.is_alive()


def test_the_panel_says_when_the_image_search_model_is_off_or_missing(qtbot, labels_window, tmp_path):
    from ui.panels.view_labels import LOOKING, OFF, WAITING

    window = labels_window(search_model="", view_labels=True)
    panel, view = window.camera_panel, window.camera_panel.view
    assert view.box.isChecked()  # from the setting
    panel.toggle.click()
    qtbot.waitUntil(lambda: view.line.isVisible() and view.line.text() == OFF, timeout=WAIT)
    # A model chosen that is not there: the line says why, in a few words.
    missing = tmp_path / "no-such-clip"
    window.apply_settings(window.settings.replace(search_model=str(missing)))
    qtbot.waitUntil(lambda: view.line.text() not in (OFF, WAITING, LOOKING, ""), timeout=WAIT)
    assert "image search model" in view.line.text().lower()
    panel.toggle.click()
    assert not view.line.isVisible()


def test_the_box_and_the_list_follow_the_settings(qtbot, labels_window):
    window = labels_window()
    view = window.camera_panel.view
    window.apply_settings(window.settings.replace(view_labels=True, view_label_list="cup, pen"))
    assert view.box.isChecked() and view.labels == ["cup", "pen"]
    view.box.click()
    assert not window.settings.view_labels
    from tests.test_layout import next_focus

    view.box.setChecked(False)
    window.camera_panel.toggle.click()  # the boxes are enabled while the camera is on
    qtbot.waitUntil(lambda: window.camera_panel.include.isEnabled(), timeout=WAIT)
    assert next_focus(window.camera_panel.include) is view.box
    assert next_focus(view.box) is window.mic_panel.toggle


# -- the settings dialog ------------------------------------------------------------------------


def test_the_camera_tab_edits_the_things_to_look_for(qtbot):
    from ui.dialogs.settings import SettingsDialog

    d = SettingsDialog(Settings(view_label_list="mug, pen", labels_with_question=False))
    qtbot.addWidget(d)
    d.show()
    d.show_page("Camera")
    assert d.tabs.currentWidget() is d.camera_tab
    assert d.view_label_list.accessibleName() == "Things to look for"
    assert d.labels_with_question.accessibleName() == "Say what is in view with each question"
    assert d.camera_tab.isAncestorOf(d.view_label_list) and d.camera_tab.isAncestorOf(d.labels_with_question)
    assert d.view_label_list.toPlainText() == "mug, pen" and not d.labels_with_question.isChecked()
    d.view_label_list.setPlainText(" , ,\n ")
    assert d.problems() == ["Things to look for is empty: name at least one thing, for example: mug, keyboard, "
                            "plant."]
    assert not d.ok_button.isEnabled() and "(Camera tab)" in d.problem.text()
    d.view_label_list.setPlainText("cup,  coffee   mug\nplant, Cup")
    d.labels_with_question.setChecked(True)
    assert d.problems() == [] and d.ok_button.isEnabled()
    result = d.result_settings()
    assert result.view_label_list == "cup, coffee mug, plant" and result.labels_with_question
