"""Regenerate the speech clips of this folder from manifest.json with espeak-ng (not run by the tests).

    sudo apt-get install espeak-ng          # Debian/Ubuntu; the shipped clips were made with the version recorded
    .venv/bin/python data/speech/make_clips.py

For every entry of manifest.json, espeak-ng speaks its `transcript` with the manifest's `synthesis.voice` at
`synthesis.words_per_minute` and writes a WAV at its own rate (22,050 Hz mono); the clip is resampled to
`synthesis.sample_rate_hz` (16 kHz, the rate the speech recognisers take) with scipy's polyphase filter and written
as 16-bit PCM to the entry's `file`. The espeak-ng version is written back into the manifest
(`synthesis.espeak_ng_version`): another version may pronounce some words differently, so the clips are
reproduced byte for byte only by the version recorded. Why synthetic speech: it is original (no recording rights),
small, and its transcript is exactly what was spoken, so a recogniser's word error rate is measurable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"


def espeak_version() -> str:
    """'1.51' from 'eSpeak NG text-to-speech: 1.51  Data at: …'."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split(":")[1].split()[0]


def speak(text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    """espeak-ng's own WAV of `text`: float samples and their rate."""
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text], check=True)
        samples, rate_hz = sf.read(wav, dtype="float64")
    return samples, rate_hz


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling by the reduced ratio (22,050 → 16,000 Hz is × 320 / 441), clipped to [-1, 1]."""
    common = gcd(from_hz, to_hz)
    return np.clip(resample_poly(samples, to_hz // common, from_hz // common), -1.0, 1.0)


def main() -> None:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    synthesis = manifest["synthesis"]
    synthesis["espeak_ng_version"] = espeak_version()
    for entry in manifest["entries"]:
        samples, rate_hz = speak(entry["transcript"], synthesis["voice"], synthesis["words_per_minute"])
        clip = resample(samples, rate_hz, synthesis["sample_rate_hz"])
        sf.write(HERE / entry["file"], clip, synthesis["sample_rate_hz"], subtype="PCM_16")
        print(f"{entry['file']}: {len(clip) / synthesis['sample_rate_hz']:.2f} s", file=sys.stderr)
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
