"""Screenshots of the real window, light and dark, at a small and a large size.

The window runs a scripted reply (markdown with a list, a wide code block and a
table, streamed as a model streams it) because no model weights can be downloaded
on the build machine; everything else is the real window.  Run it under a display
(Xvfb works) or offscreen:

    QT_QPA_PLATFORM=offscreen python scripts/take_screenshots.py OUT_DIR
    xvfb-run -s "-screen 0 1600x1000x24" python scripts/take_screenshots.py OUT_DIR

It writes ``window-{light,dark}-{900x600,1400x900}.png``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402
from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

from assistant.events import State  # noqa: E402
from assistant.settings import AppPaths, Settings  # noqa: E402
from assistant.store.history import open_history  # noqa: E402
from tests.conftest import scripted_factory  # noqa: E402
from ui import theme  # noqa: E402
from ui.app import create_app  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402

REPLY = """On your desk I can see three things:

1. a **red mug** with a white handle, left of the keyboard;
2. a mechanical keyboard;
3. a desk lamp, switched off.

To count them in Python:

```python
things = ["red mug", "mechanical keyboard", "desk lamp"]; print(f"{len(things)} things on the desk: {', '.join(things)}")
```

| Thing | Colour | Where |
|---|---|---|
| Mug | red | left of the keyboard |
| Keyboard | grey | centre |
| Lamp | black | right |
"""


def desk_image(path: Path) -> Path:
    image = Image.new("RGB", (640, 420), (214, 196, 170))
    draw = ImageDraw.Draw(image)
    draw.rectangle((180, 230, 470, 320), fill=(90, 92, 100))  # keyboard
    draw.rounded_rectangle((70, 200, 150, 300), 12, fill=(200, 30, 40))  # mug
    draw.ellipse((140, 225, 175, 270), outline=(240, 240, 240), width=8)
    draw.polygon([(520, 120), (600, 120), (560, 60)], fill=(30, 30, 34))  # lamp
    draw.rectangle((555, 120, 565, 300), fill=(30, 30, 34))
    image.save(path)
    return path


def wait(app, seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    app = create_app(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        paths = AppPaths.under(tmp)
        settings = Settings(model="HuggingFaceTB/SmolVLM-256M-Instruct", device="cpu", speak_replies=False,
                            show_reply_figures=True)
        store, _ = open_history(paths.data)  # the chats sidebar, as in the app
        window = MainWindow(settings, paths, backend_factory=scripted_factory(REPLY, chunk_delay=0.002),
                            persist_settings=False, store=store)
        window.show()
        window.bridge.load()
        deadline = time.monotonic() + 30
        while window.bridge.status.state is not State.READY and time.monotonic() < deadline:
            wait(app, 0.1)
        for mode in ("light", "dark"):
            theme.apply(mode)
            for width, height in ((1400, 900), (900, 600)):
                window.resize(width, height)
                if mode == "light" and (width, height) == (1400, 900):
                    window.grab().save(str(out / "window-welcome-1400x900.png"))
                    window.attach_files([str(desk_image(Path(tmp) / "desk.png"))])
                    window.prompt.setPlainText("What is on my desk? Count the things and show me the code.")
                    window.send()
                    deadline = time.monotonic() + 30
                    while window.bridge.busy and time.monotonic() < deadline:
                        wait(app, 0.1)
                wait(app, 0.5)
                window.grab().save(str(out / f"window-{mode}-{width}x{height}.png"))
                print(out / f"window-{mode}-{width}x{height}.png")
        window.close()
        wait(app, 0.5)
        store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots"))
