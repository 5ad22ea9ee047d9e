"""Command-line options, shared by every front end (the window, ``--ask``, ``--headless``, ``--export-chat``).

Flags override the saved settings for one run; they are never written back.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path

from assistant.settings import (
    APP_TITLE,
    BACKENDS,
    DEVICES,
    DTYPES,
    IMAGE_DETAILS,
    QUANTIZATIONS,
    WAKE_WORDS,
    AppPaths,
    Settings,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description=f"{APP_TITLE}: chat with a local vision-language model. Without --ask, opens the window.",
    )
    p.add_argument("--ask", metavar="TEXT", help="ask one question, stream the answer to stdout and exit ('-' reads stdin)")
    p.add_argument("--chat", action="store_true",
                   help="chat in the terminal: one question per line from stdin, replies streamed to stdout "
                        "('/image PATH' attaches an image to the next question, '/new' starts a new chat)")
    p.add_argument("--timings", action="store_true",
                   help="with --chat: one 'turn=N ttft=S tokens=N seconds=S' line per turn on stderr")
    p.add_argument("--image", metavar="PATH", action="append", default=[], help="attach an image to --ask (repeatable)")
    p.add_argument("--model", metavar="HUB_ID_OR_DIR", help="Hugging Face hub id or local model folder")
    p.add_argument("--device", choices=DEVICES, help="compute device (default: auto = CUDA, then MPS, then CPU)")
    p.add_argument("--dtype", choices=DTYPES, help="weight precision (default: auto for the device)")
    p.add_argument("--quantization", choices=QUANTIZATIONS,
                   help="load the weights in 8 or 4 bits (CUDA GPU with bitsandbytes only; default: none)")
    p.add_argument("--offline", action="store_true",
                   help="never contact the Hugging Face hub: use downloaded models and local folders only")
    p.add_argument("--backend", choices=BACKENDS,
                   help="where the model runs: local (in this process) or openai (an OpenAI-compatible server)")
    p.add_argument("--base-url", metavar="URL",
                   help="the server's API address for --backend openai, e.g. http://localhost:8000/v1 "
                        "(the API key comes from OPENAI_API_KEY, else the system keyring)")
    p.add_argument("--remote-model", metavar="NAME",
                   help="the model name on the server (default: the server's only model); "
                        "--base-url or --remote-model alone implies --backend openai")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="longest reply, in tokens")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling temperature; 0 = greedy")
    p.add_argument("--image-detail", choices=IMAGE_DETAILS,
                   help="how finely images are read: low = one tile, high = the model's full tiling, "
                        "auto = low without a CUDA GPU, high with one (default: auto)")
    p.add_argument("--system-prompt", metavar="TEXT", help="instructions given to the model before the chat")
    p.add_argument("--speaker", metavar="WAV_OR_DEVICE",
                   help="speak replies into this .wav file (with --ask too), or to this sound device (index or name)")
    p.add_argument("--voice", metavar="NAME", help="text-to-speech voice (id or name; see the window's settings)")
    p.add_argument("--rate", type=int, metavar="WPM", help="speaking rate in words per minute")
    p.add_argument("--camera", metavar="SOURCE",
                   help="camera: device index, video file or stream URL; with --ask, a file plays in full first")
    p.add_argument("--mic", metavar="WAV_OR_DEVICE",
                   help="microphone: device index or name, or an audio file (.wav, .flac, .ogg, .opus, .mp3) "
                        "played as the microphone")
    p.add_argument("--headless", action="store_true",
                   help="no window: listen hands-free (a --mic file until it ends), print 'you: …' and "
                        "'assistant: …' lines, speak replies to --speaker")
    p.add_argument("--realtime", action="store_true",
                   help="with --headless: play a --mic recording at wall-clock speed and never wait for answers, "
                        "like a person who keeps talking (it ends once the recording has ended and the last reply "
                        "has been spoken); a --speaker .wav then holds silence while nothing plays, so that second t "
                        "of it is second t of the --mic recording")
    p.add_argument("--asr-model", metavar="HUB_ID_OR_DIR",
                   help="Whisper speech model: hub id or folder, transformers or CTranslate2 (faster-whisper)")
    p.add_argument("--wake-word", metavar="NAME",
                   help="hands-free answers only what is said after this wake word: hey_jarvis (suggested), "
                        "okay_nabu, hey_mycroft or alexa; 'off' answers everything (default: the saved setting)")
    p.add_argument("--search", metavar="QUERY",
                   help="search the saved chats by what their pictures show, by meaning and by words: indexes what "
                        "is not indexed yet (progress on stderr), then prints the best matches, best first, one a "
                        "line: 'score=… chat=ID message=ID kind=image|text title=…'")
    p.add_argument("--search-model", metavar="HUB_ID_OR_DIR",
                   help="the image search model (CLIP or SigLIP: hub id or folder) for --search, and for frame "
                        "relevance and view labels in --ask, --chat and the window; 'off' turns it off")
    p.add_argument("--no-history", action="store_true", help="do not save this --ask turn in the chat history")
    p.add_argument("--export-chat", metavar="last|ID", help="print a saved conversation to stdout and exit")
    p.add_argument("--format", choices=("json", "md"), default="md", help="format for --export-chat (default: md)")
    p.add_argument("--data-dir", metavar="DIR", help="keep all of the app's files (settings, models) in DIR")
    p.add_argument("--verbose", action="store_true", help="log details to stderr")
    return p


def paths_from(args: argparse.Namespace) -> AppPaths:
    return AppPaths.under(args.data_dir) if args.data_dir else AppPaths.default()


def settings_from(args: argparse.Namespace, base: Settings) -> Settings:
    """The loaded settings with this run's command-line overrides (not saved)."""
    return base.replace(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        quantization=args.quantization,
        offline=True if args.offline else None,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        image_detail=args.image_detail,
        system_prompt=args.system_prompt,
        voice=args.voice,
        speech_rate=args.rate,
        camera=args.camera,
        mic=args.mic,
        asr_model=args.asr_model,
        search_model=None if args.search_model is None else "" if args.search_model == "off" else args.search_model,
        wake_word=None if args.wake_word is None else "" if args.wake_word == "off" else args.wake_word,
        # A server address or name alone means "use the server".
        backend=args.backend or ("openai" if args.base_url or args.remote_model else None),
        base_url=args.base_url,
        remote_model=args.remote_model,
    )


def quiet_libraries(verbose: bool) -> None:
    """Keep library chatter (warnings, progress bars) off the user's terminal."""
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def check_args(args: argparse.Namespace) -> str | None:
    """A usage problem with the flags, as one line, or None."""
    if args.data_dir and Path(args.data_dir).exists() and not Path(args.data_dir).is_dir():
        return f"--data-dir {args.data_dir} is not a folder."
    if args.export_chat is not None and args.export_chat != "last" and not args.export_chat.isdigit():
        return "--export-chat takes 'last' or a conversation number."
    if sum((args.headless, args.ask is not None, args.chat, args.search is not None)) > 1:
        return "--ask, --chat, --headless and --search are different front ends: choose one."
    if args.search is not None and not args.search.strip():
        return "--search needs something to look for, for example --search \"the receipt\"."
    if args.search is not None and args.search_model == "off":
        return "--search needs an image search model: leave --search-model out or name one."
    if args.image and args.ask is None:
        return "--image needs --ask (in --chat, type '/image PATH'; in the window, use Attach image…)."
    if args.timings and not args.chat:
        return "--timings goes with --chat."
    if args.realtime and not args.headless:
        return "--realtime goes with --headless (the window always plays a --mic recording at its own pace)."
    if args.wake_word is not None and args.wake_word != "off" and args.wake_word not in WAKE_WORDS:
        return f"--wake-word takes one of {', '.join(WAKE_WORDS)}, or off; not {args.wake_word!r}."
    if args.camera is not None:
        from assistant.devices.camera import parse_source

        try:
            parse_source(args.camera)
        except ValueError as exc:
            return f"--camera: {exc}"
    return None
