"""The embedded spoken-word set: ten English command words synthesised offline with eSpeak NG across its English
accents and voice variants, speaking rates and pitches, then put through a vocal-tract / tempo perturbation, a
microphone band, a synthetic room and background noise, and written ONCE as a class-per-folder wav tree (with a
``manifest.csv`` of every clip's voice and augmentation) that :class:`zoo.data.audio.AudioData` reads like any
user folder.

Why so many voices: a model trained on one synthesiser with a handful of voices learns that synthesiser. It
recognised eSpeak clips (0.59) but the same words from other synthesisers at 0.16-0.18 (chance 0.10). Every take
here draws its own voice (8 accents x 104 variants, among them the Klatt formant synthesisers, whisper and creaky
voices), rate, pitch, pitch range, tract length, room and noise, so that the words, not one voice, are what the
takes have in common.

:func:`other_synthesiser_words` writes the same ten words from OTHER synthesisers (Flite, Festival; Debian's
``flite``, ``festival`` and ``festvox-*`` packages) as a test-only Speech Commands tree: a held-out check that a
model trained on the embedded set recognises voices it never heard. Nothing of it enters the embedded set.

Shapes: every clip is (16000,) int16 samples, one second at 16 kHz, mono.
"""

from __future__ import annotations

import csv
import ctypes
import functools
import io
import math
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, firwin, resample_poly, sosfilt

from zoo.errors import DataError

SAMPLE_RATE = 16_000
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# eSpeak NG's English accents (espeak-ng-data/lang/gmw; en-Shaw is the Shavian alphabet, not an accent)
ACCENTS = ("en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-us", "en-us-nyc")
# eSpeak NG 1.52's voice variants (espeak-ng-data/voices/!v): formant settings, the Klatt synthesisers, whisper,
# breathy and creaky voices; "" is the accent's own voice.
VARIANTS = ("", "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo", "Gene",
            "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Mr serious", "Nguyen",
            "Reed", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot", "adam", "anika",
            "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david",
            "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa", "gustave", "ian",
            "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5",
            "klatt6", "linda", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel",
            "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2",
            "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph",
            "steph2", "steph3", "travis", "victor", "whisper", "whisperf", "zac")
TAKES_PER_WORD = 240
SET_VERSION = 2  # the cache folder's name carries it, so that a cache of an older set is never reused


# --- eSpeak NG ------------------------------------------------------------------------------------------------------
class ESpeak:
    """eSpeak NG through ctypes (the ``espeakng-loader`` package's library and voice data) or, failing that, the
    ``espeak-ng`` command line program."""

    def __init__(self):
        self.lib, self.rate, self.command, self.data_path = None, 22_050, shutil.which("espeak-ng"), None
        try:
            import espeakng_loader
        except ImportError:
            if self.command is None:
                raise DataError("the embedded spoken-word set needs eSpeak NG: `pip install espeakng-loader` "
                                "(or install Debian's espeak-ng), or pass --data.root with your own audio") from None
            return
        self.data_path = Path(espeakng_loader.get_data_path())
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.rate = self.lib.espeak_Initialize(2, 0, str(self.data_path).encode(), 0)  # synchronous
        if self.rate <= 0:
            raise DataError("eSpeak NG did not initialise (espeakng-loader's voice data missing?)")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def collect(wave, count, events):
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
            return 0

        self._callback = callback_type(collect)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def has_variant(self, variant: str) -> bool:
        """Whether the voice data holds ``variant`` (eSpeak falls back to the plain voice without a word when a
        variant is missing, so the set checks before it names a clip after one)."""
        return not variant or self.data_path is None or (self.data_path / "voices" / "!v" / variant).is_file()

    def say(self, text: str, voice: str, speed: int, pitch: int, pitch_range: int = 50) -> np.ndarray | None:
        """(N,) int16 samples at ``self.rate`` (None when the voice does not exist). ``speed`` in words per minute,
        ``pitch`` and ``pitch_range`` 0-100. eSpeak NG carries state from one utterance to the next (its pitch
        flutter, the breath noise of breathy variants), so the same call gives slightly different samples later."""
        if self.lib is None:
            out = subprocess.run([self.command, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                                 capture_output=True, check=False)
            if out.returncode or len(out.stdout) <= 44:
                return None
            data, self.rate = sf.read(io.BytesIO(out.stdout), dtype="int16")
            return data
        self.lib.espeak_SetSynthCallback(self._callback)  # the library's one callback: this speaker's
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            return None
        self.lib.espeak_SetParameter(1, speed, 0)  # espeakRATE, words per minute
        self.lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH, 0-100
        self.lib.espeak_SetParameter(4, pitch_range, 0)  # espeakRANGE, 0-100
        self._chunks = []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else None


# --- one take: its voice and its augmentation -----------------------------------------------------------------------
@dataclass(frozen=True)
class Take:
    """Everything that makes one clip, as written to ``manifest.csv``."""

    word: str
    synthesiser: str
    voice: str            # e.g. "en-gb-scotland+klatt3"
    speed_wpm: int
    pitch: int            # 0-100
    pitch_range: int      # 0-100
    tract: float          # resampling factor: > 1 slower and lower (a longer vocal tract), < 1 faster and higher
    highpass_hz: float    # 0: none (the microphone band)
    lowpass_hz: float     # 0: none
    rt60_s: float         # 0: dry; else the reverberation time of the synthetic room
    drr_db: float         # direct-to-reverberant energy ratio of the room
    noise: str            # "none", "white", "pink" or "brown"
    snr_db: float         # speech-to-noise power ratio (over the word)
    level_dbfs: float     # peak level of the clip before noise
    offset_s: float       # where the word starts in the one-second clip


ROOM_CHANCE, NOISE_CHANCE, BAND_CHANCE = 0.3, 0.5, 0.3  # of a take having a room, noise, a microphone band
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f^alpha


def draw_takes(takes_per_word: int, seed: int, words: Sequence[str] = WORDS,
               voices: Sequence[str] | None = None, augment: bool = True) -> list[Take]:
    """``takes_per_word`` takes of each word, each with its own voice and augmentation drawn from ``seed``; a word's
    voices are drawn without replacement from ``voices`` (default every accent x variant) while they last. Without
    ``augment`` no take has a band, room or noise (voice, rate, pitch, tract, level and offset still vary)."""
    voices = list(voices or [a + (f"+{v}" if v else "") for a in ACCENTS for v in VARIANTS])
    takes = []
    for w, word in enumerate(words):
        rng = np.random.default_rng([seed, w])
        order = np.concatenate([rng.permutation(len(voices)) for _ in range(-(-takes_per_word // len(voices)))])
        for i in range(takes_per_word):
            reverb, noisy, band = (rng.random(3) < (ROOM_CHANCE, NOISE_CHANCE, BAND_CHANCE)) & augment
            takes.append(Take(
                word=word, synthesiser="espeak-ng", voice=voices[order[i]],
                speed_wpm=int(rng.integers(100, 241)), pitch=int(rng.integers(10, 91)),
                pitch_range=int(rng.integers(10, 91)), tract=round(float(rng.uniform(0.85, 1.18)), 3),
                highpass_hz=round(float(rng.uniform(60, 400)), 1) if band else 0.0,
                lowpass_hz=round(float(rng.uniform(2800, 7500)), 1) if band else 0.0,
                rt60_s=round(float(rng.uniform(0.1, 0.5)), 3) if reverb else 0.0,
                drr_db=round(float(rng.uniform(0, 15)), 2) if reverb else 0.0,
                noise=str(rng.choice(list(NOISE_COLOURS))) if noisy else "none",
                snr_db=round(float(rng.uniform(10, 40)), 2) if noisy else 0.0,
                level_dbfs=round(float(rng.uniform(-20, -1)), 2), offset_s=round(float(rng.random()), 4)))
    return takes


def trim_silence(wave: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """(N,) -> the part between the first and last sample above ``threshold`` x the peak."""
    loud = np.flatnonzero(np.abs(wave) > threshold * np.abs(wave).max())
    return wave[loud[0]:loud[-1] + 1] if len(loud) else wave


def perturb_tract(wave: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """(N,) at ``rate`` -> 16 kHz samples stretched by ``factor``: resampled to ``16000 * factor`` (rounded to 50 Hz;
    scipy's polyphase filter) and read at 16 kHz, which scales duration by ``factor`` and every frequency (pitch,
    formants) by 1 / factor."""
    return resample(wave, rate, round(SAMPLE_RATE * factor / 50) * 50)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(N,) at ``rate`` -> float32 samples at ``target`` (scipy's polyphase resampling, its Kaiser-windowed
    anti-aliasing filter designed once per pair of rates)."""
    if rate == target:
        return wave.astype(np.float32)
    common = math.gcd(target, rate)
    up, down = target // common, rate // common
    return resample_poly(wave, up, down, window=_antialiasing_filter(up, down)).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _antialiasing_filter(up: int, down: int) -> np.ndarray:
    """scipy.signal.resample_poly's own default filter (cutoff 1 / max(up, down), half length 10 x that, Kaiser 5)."""
    rate = max(up, down)
    return firwin(20 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def band_limit(wave: np.ndarray, highpass_hz: float, lowpass_hz: float) -> np.ndarray:
    """(N,) at 16 kHz through second-order Butterworth high-pass and low-pass filters, as a cheap microphone or
    line (0: no filter)."""
    for cutoff, kind in ((highpass_hz, "highpass"), (lowpass_hz, "lowpass")):
        if cutoff:
            wave = sosfilt(butter(2, cutoff, kind, fs=SAMPLE_RATE, output="sos"), wave)
    return wave


def room_impulse_response(rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room (rt60 * 16000,): a unit direct path, then Gaussian noise decaying by 60 dB over ``rt60_s``
    (a diffuse tail after 2.5 ms), its energy ``drr_db`` below the direct path's."""
    n = max(int(rt60_s * SAMPLE_RATE), 64)
    tail = rng.standard_normal(n) * np.exp(-np.log(1000.0) * np.arange(n) / n)
    tail[:40] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """(n,) noise of unit RMS whose power spectrum falls as 1 / f^alpha (white 0, pink 1, brown 2)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    noise = np.fft.irfft(spectrum / f ** (NOISE_COLOURS[colour] / 2), n)
    return noise / np.sqrt(np.mean(noise ** 2))


def render(take: Take, wave: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """A synthesised word (N,) int16 at ``rate`` -> the take's one-second clip (16000,) int16: silence trimmed,
    tract perturbation, band, room, placed at ``offset_s`` (the word itself always fits), peak level, noise."""
    rng = np.random.default_rng([seed, zlib.crc32(f"{take.word}/{take.voice}/{take.offset_s}".encode())])
    word = perturb_tract(trim_silence(wave.astype(np.float32) / 32768), rate, take.tract)[:SAMPLE_RATE]
    word = band_limit(word, take.highpass_hz, take.lowpass_hz)
    dry = len(word)
    if take.rt60_s:
        word = fftconvolve(word, room_impulse_response(take.rt60_s, take.drr_db, rng))
    start = int(take.offset_s * (SAMPLE_RATE - dry))
    clip = np.zeros(SAMPLE_RATE)
    clip[start:start + len(word)] = word[:SAMPLE_RATE - start]
    clip *= 10 ** (take.level_dbfs / 20) / max(np.abs(clip).max(), 1e-9)
    if take.noise != "none":
        power = np.mean(clip[start:start + dry] ** 2)
        clip += coloured_noise(SAMPLE_RATE, take.noise, rng) * np.sqrt(power * 10 ** (-take.snr_db / 10))
    return np.clip(np.round(clip * 32768), -32768, 32767).astype(np.int16)


def write_wav(path: Path, clip: np.ndarray) -> None:
    """(N,) samples -> a 16-bit 16 kHz wav file (through memory: libsndfile syncs every file it closes to disk)."""
    buffer = io.BytesIO()
    sf.write(buffer, clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def clip_name(index: int, take: Take) -> str:
    voice = take.voice.replace("+", "_").replace(" ", "-")
    return f"{index:04d}_{voice}.wav"


# --- the set --------------------------------------------------------------------------------------------------------
def write_manifest(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(folder: Path) -> list[dict[str, str]]:
    """The rows of ``folder/manifest.csv`` (path, then the :class:`Take` fields)."""
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def spoken_words(folder: Path | None = None, takes_per_word: int = TAKES_PER_WORD, seed: int = 0,
                 voices: Sequence[str] | None = None, augment: bool = True) -> Path:
    """The embedded spoken-word set, written once: ``len(WORDS)`` words x ``takes_per_word`` one-second 16 kHz
    wav clips in ``folder/<word>/``, each of its own eSpeak NG voice, rate, pitch and augmentation (see
    :func:`draw_takes`; ``manifest.csv`` lists them). The default folder is
    ``cache/spoken_words_v2_<takes>_<seed>[_clean]``; a folder that holds a README.txt is returned as it is. The
    same arguments give the same manifest (every clip's voice and augmentation) and the same augmentation of each
    synthesised word; eSpeak NG's own samples vary a little from run to run (see :meth:`ESpeak.say`)."""
    from zoo.data.base import cache_root

    folder = folder or cache_root() / (f"spoken_words_v{SET_VERSION}_{takes_per_word}_{seed}"
                                       + ("" if augment else "_clean"))
    if (folder / "README.txt").exists():
        return folder
    speaker = ESpeak()
    takes = [take for take in draw_takes(takes_per_word, seed, voices=voices, augment=augment)
             if speaker.has_variant(take.voice.partition("+")[2])]
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for word in WORDS:
        (tmp / word).mkdir(parents=True)
    for index, take in enumerate(takes):
        wave = speaker.say(take.word, take.voice, take.speed_wpm, take.pitch, take.pitch_range)
        if wave is None or not np.any(wave):
            continue
        path = Path(take.word) / clip_name(index, take)
        write_wav(tmp / path, render(take, wave, speaker.rate, seed))
        rows.append({"path": path.as_posix(), **asdict(take)})
    write_manifest(tmp / "manifest.csv", rows)
    (tmp / "README.txt").write_text(
        "Spoken words synthesised with eSpeak NG (GPL-3.0 program; the audio it outputs is not covered by its "
        f"licence) by zoo.data.spoken_words (set version {SET_VERSION}, seed {seed}): {len(WORDS)} words "
        f"({', '.join(WORDS)}), {len(rows)} one-second clips at {SAMPLE_RATE} Hz, each of its own voice "
        f"({len(ACCENTS)} English accents x {len(VARIANTS)} voice variants), rate, pitch, pitch range, vocal-tract "
        "perturbation, microphone band, synthetic room and background noise; manifest.csv lists every clip's "
        "settings. Synthetic speech, not recordings of people.\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


# --- held out: the same words from other synthesisers ---------------------------------------------------------------
# (synthesiser, voice): Flite's built-in voices (awb_time speaks only times of day) and Festival's English voices
# from Debian's festvox packages. None of them is eSpeak NG.
OTHER_VOICES = (("flite", "kal"), ("flite", "kal16"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
                ("festival", "kal_diphone"), ("festival", "ked_diphone"), ("festival", "cmu_us_slt_arctic_hts"))
STRETCHES = (0.85, 1.0, 1.2)  # duration stretch factors (slower > 1)


@functools.cache
def flite_voices() -> tuple[str, ...]:
    """The voices Flite has built in (``flite -lv``; an unknown name would silently speak with its default)."""
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    return tuple(listing.partition(":")[2].split())


def other_synthesiser_say(synthesiser: str, voice: str, text: str, stretch: float) -> tuple[np.ndarray, int] | None:
    """(samples (N,) float32, rate) of ``text`` from Flite or Festival, None when the program or voice is missing."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        if synthesiser == "flite" and shutil.which("flite") and voice in flite_voices():
            command = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text, "-o", str(out)]
            stdin = None
        elif synthesiser == "festival" and shutil.which("text2wave"):
            command = ["text2wave", "-eval", f"(voice_{voice})", "-eval",
                       f"(Parameter.set 'Duration_Stretch {stretch})", "-o", str(out)]
            stdin = text
        else:
            return None
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
        if result.returncode or "ERROR" in result.stderr + result.stdout or not out.is_file() \
                or out.stat().st_size <= 44:  # Festival reports an unknown voice and speaks with its default
            return None
        data, rate = sf.read(out, dtype="float32", always_2d=True)
    return (data.mean(axis=1), rate) if np.any(data) else None


def other_synthesiser_words(folder: Path, voices: Sequence[tuple[str, str]] = OTHER_VOICES,
                            stretches: Sequence[float] = STRETCHES) -> Path:
    """The ten words from other synthesisers' voices (``voices``: (synthesiser, voice) pairs; the missing ones
    are skipped), at each duration ``stretch``, written as a TEST-ONLY Speech Commands tree: ``folder/<word>/*.wav``
    (one second, 16 kHz, the word at a fixed pseudo-random offset, the synthesiser's own level, no noise), every
    clip in ``testing_list.txt``, an empty ``validation_list.txt``, and ``manifest.csv``.

    Raises:
        DataError: when none of the voices can be synthesised (names the Debian packages to install).
    """
    rows, seen = [], set()
    for synthesiser, voice in voices:
        for stretch in stretches:
            for word in WORDS:
                said = other_synthesiser_say(synthesiser, voice, word, stretch)
                if said is None:
                    break
                wave = trim_silence(said[0])
                if (word, wave.tobytes()) in seen:  # a voice that ignores the stretch (Festival's HTS voices)
                    continue
                seen.add((word, wave.tobytes()))
                wave = resample(wave, said[1], SAMPLE_RATE)[:SAMPLE_RATE]
                clip = np.zeros(SAMPLE_RATE, dtype=np.float32)
                name = f"{synthesiser}_{voice}_x{stretch}"
                start = zlib.crc32(f"{word}{name}".encode()) % (SAMPLE_RATE - len(wave) + 1)
                clip[start:start + len(wave)] = wave
                path = Path(word) / f"{name}.wav"
                (folder / word).mkdir(parents=True, exist_ok=True)
                write_wav(folder / path, clip)
                rows.append({"path": path.as_posix(), "word": word, "synthesiser": synthesiser, "voice": voice,
                             "stretch": stretch})
    if not rows:
        raise DataError("no other synthesiser could speak (install Debian's flite, or festival with festvox-kallpc16k, "
                        "festvox-kdlpc16k, festvox-us-slt-hts)")
    write_manifest(folder / "manifest.csv", rows)
    (folder / "testing_list.txt").write_text("".join(f"{r['path']}\n" for r in rows))
    (folder / "validation_list.txt").write_text("")
    return folder
