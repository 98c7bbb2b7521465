"""Speech for the synthetic face data: espeak-ng where it is installed, a formant synthesiser
otherwise, and the per-frame mouth opening the face generator derives from it.

:func:`speak` returns float32 mono audio in [-1, 1] at the requested rate. With espeak-ng
(``espeak-ng --stdout``, run with a timeout) the words are real speech in one of a few English
voices; without it (or when it fails) :func:`formant_speech` builds each syllable from a short
noise burst (the consonant) and a voiced vowel (a glottal pulse train through three formant
resonances), with pauses between words. Either way the loudness rises on every syllable, and
:func:`mouth_opening` turns that loudness into a per-frame opening in [0, 1], so "the mouth
opens when the audio is loud" and the motion is learnable from the audio.
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np

WORDS = (
    "the a bright morning river stone carries quiet music over green hills while children "
    "laugh near old wooden boats and seven birds follow every small cloud today because "
    "someone painted yellow windows under blue lamps"
).split()
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+f2", "en-gb-scotland")
ESPEAK_TIMEOUT_S = 10.0

# F1, F2, F3 (Hz) of a few vowels; bandwidths 90, 110, 170 Hz.
VOWELS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
BANDWIDTHS = (90.0, 110.0, 170.0)


def find_espeak() -> str | None:
    """Path of the espeak-ng (or espeak) executable, ``None`` if neither is installed."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def sentence(rng: np.random.Generator, words: tuple[int, int] = (4, 7)) -> str:
    """A random sentence of ``words[0]`` to ``words[1]`` words from :data:`WORDS`."""
    n = int(rng.integers(words[0], words[1] + 1))
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def _pcm_from_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM of espeak's ``--stdout`` WAV (whose sizes are streaming placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV file")
    rate = struct.unpack("<I", data[24:28])[0]
    start = data.index(b"data", 12) + 8
    body = data[start : len(data) - (len(data) - start) % 2]
    return np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0, rate


def espeak(
    text: str, voice: str, speed: int, pitch: int, executable: str
) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng: (float32 audio, its sample rate)."""
    result = subprocess.run(
        [executable, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        timeout=ESPEAK_TIMEOUT_S,
        check=True,
    )
    return _pcm_from_wav_bytes(result.stdout)


def _syllables(word: str) -> list[str]:
    """The vowel of each syllable of ``word`` (groups of vowels count once; at least one)."""
    vowels, previous = [], False
    for ch in word:
        is_vowel = ch in "aeiouy"
        if is_vowel and not previous:
            vowels.append("i" if ch == "y" else ch)
        previous = is_vowel
    return vowels or ["a"]


def formant_speech(
    text: str, sample_rate: int, rng: np.random.Generator, f0: float = 120.0, rate: float = 1.0
) -> np.ndarray:
    """Formant-synthesised ``text``: per syllable a consonant burst and a vowel, then a pause
    after each word. ``f0`` is the voice's pitch, ``rate`` its speed (1.0: about 4 syllables/s)."""
    t_ir = np.arange(int(0.03 * sample_rate)) / sample_rate
    pieces: list[np.ndarray] = [np.zeros(int(0.08 * sample_rate), np.float32)]
    for word in text.split():
        for vowel in _syllables(word):
            burst = rng.standard_normal(int(rng.uniform(0.03, 0.06) / rate * sample_rate))
            pieces.append((0.05 * burst * np.hanning(len(burst))).astype(np.float32))
            n = int(rng.uniform(0.12, 0.22) / rate * sample_rate)
            pitch = f0 * (
                1 + 0.08 * np.sin(np.linspace(0, np.pi, n)) + 0.02 * rng.standard_normal()
            )
            phase = np.cumsum(pitch / sample_rate)
            pulses = np.diff(np.floor(phase), prepend=0.0)  # one pulse per glottal period
            impulse = sum(
                np.exp(-np.pi * bw * t_ir) * np.sin(2 * np.pi * f * t_ir)
                for f, bw in zip(VOWELS[vowel], BANDWIDTHS)
            )
            voiced = np.convolve(pulses, impulse)[:n] * np.hanning(n) ** 0.5
            pieces.append((0.5 * voiced / (np.abs(voiced).max() + 1e-9)).astype(np.float32))
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.12) / rate * sample_rate), np.float32))
    audio = np.concatenate(pieces)
    audio += 1e-3 * rng.standard_normal(len(audio)).astype(np.float32)  # room noise
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def speak(
    text: str, sample_rate: int, rng: np.random.Generator, voice: int = 0, engine: str = "auto"
) -> tuple[np.ndarray, str]:
    """``text`` as float32 audio at ``sample_rate`` and the engine that made it.

    ``voice`` picks the speaker (espeak voice, speed and pitch; or the formant voice's pitch
    and rate). ``engine``: ``"auto"`` (espeak-ng if installed, else formants), ``"espeak"``
    or ``"formant"``.
    """
    import librosa

    executable = find_espeak() if engine in ("auto", "espeak") else None
    if engine == "espeak" and executable is None:
        raise RuntimeError("engine='espeak' but neither espeak-ng nor espeak is installed")
    if executable is not None:
        try:
            audio, rate = espeak(
                text,
                VOICES[voice % len(VOICES)],
                150 + 7 * (voice % 6),
                35 + 9 * (voice % 5),
                executable,
            )
            audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
            peak = float(np.abs(audio).max())
            if peak > 0:
                return (0.6 * audio / peak).astype(np.float32), "espeak-ng"
        except (OSError, subprocess.SubprocessError, ValueError):
            if engine == "espeak":
                raise
    f0 = 95.0 + 25.0 * (voice % 5)
    return formant_speech(text, sample_rate, rng, f0=f0, rate=0.9 + 0.05 * (voice % 4)), "formant"


def frame_windows(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """(frames, window) float64: frame ``t``'s samples ``[t, t + 1) * sample_rate / fps``
    (zero-padded past the end of the audio)."""
    hop = sample_rate / fps
    width = max(1, int(hop))
    starts = (np.arange(frames) * hop).astype(np.int64)
    padded = np.concatenate([audio.astype(np.float64), np.zeros(width + int(hop) + 1)])
    return padded[starts[:, None] + np.arange(width)[None, :]]


def mouth_opening(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """Per-frame mouth opening in [0, 1] from the audio's loudness.

    Frame ``t`` covers samples ``[t, t + 1) * sample_rate / fps``; its RMS in dB relative to
    the sequence's loudest frame is mapped linearly from -35 dB (closed) to 0 dB (fully open),
    then smoothed over 3 frames (the jaw cannot move faster).
    """
    rms = np.sqrt(np.mean(frame_windows(audio, sample_rate, fps, frames) ** 2, axis=1))
    db = 20 * np.log10(rms + 1e-8)
    opening = np.clip((db - db.max() + 35.0) / 35.0, 0.0, 1.0)
    kernel = np.array([0.25, 0.5, 0.25])
    padded = np.pad(opening, 1, mode="edge")
    return np.convolve(padded, kernel, mode="valid").astype(np.float32)
