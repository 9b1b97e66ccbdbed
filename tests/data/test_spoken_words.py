"""The embedded spoken-word set: many eSpeak NG voices, each augmentation doing what it says, the same files for
the same seed, and the held-out synthesisers' words kept apart from it."""

import shutil

import numpy as np
import pytest
import soundfile as sf
from zoo.data.audio import AudioData
from zoo.data.spoken_words import (
    ACCENTS,
    NOISE_CHANCE,
    OTHER_VOICES,
    ROOM_CHANCE,
    VARIANTS,
    WORDS,
    ESpeak,
    band_limit,
    coloured_noise,
    draw_takes,
    other_synthesiser_words,
    perturb_tract,
    read_manifest,
    render,
    room_impulse_response,
    spoken_words,
)

from zoo.errors import DataError


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """A small embedded set: 10 words x 6 takes."""
    return spoken_words(tmp_path_factory.mktemp("set") / "words", takes_per_word=6)


def band_power(wave: np.ndarray, low: float, high: float, rate: int = 16000) -> float:
    """Mean power spectral density of ``wave`` between ``low`` and ``high`` Hz."""
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / rate)
    return float(spectrum[(f >= low) & (f < high)].mean())


def test_each_word_is_spoken_by_many_distinct_voices():
    takes = draw_takes(300, seed=0)
    assert len(takes) == 3000 and {t.word for t in takes} == set(WORDS)
    for word in WORDS:
        voices = [t.voice for t in takes if t.word == word]
        assert len(set(voices)) == 300  # 832 accent x variant voices: none repeats within a word
    accents = {t.voice.partition("+")[0] for t in takes}
    variants = {t.voice.partition("+")[2] for t in takes}
    assert accents == set(ACCENTS) and len(variants) > 90
    assert {"klatt", "klatt4", "whisper", "croak", "m1", "f5", ""} <= variants
    speeds, pitches = [t.speed_wpm for t in takes], [t.pitch for t in takes]
    assert min(speeds) < 110 and max(speeds) > 230 and min(pitches) < 15 and max(pitches) > 85
    rooms, noisy = [t for t in takes if t.rt60_s], [t for t in takes if t.noise != "none"]
    assert abs(len(rooms) / 3000 - ROOM_CHANCE) < 0.03 and abs(len(noisy) / 3000 - NOISE_CHANCE) < 0.03
    assert not any(t.rt60_s or t.noise != "none" or t.lowpass_hz for t in draw_takes(30, seed=0, augment=False))
    assert {t.noise for t in noisy} == {"white", "pink", "brown"}


def test_every_variant_exists_in_the_voice_data():
    """eSpeak falls back to the plain voice without a word for a variant it lacks: the set's names must be real."""
    speaker = ESpeak()
    assert all(speaker.has_variant(v) for v in VARIANTS) and not speaker.has_variant("no-such-variant")
    plain = speaker.say("yes", "en-us", 150, 50)
    for variant in ("klatt", "whisper", "f2", "croak"):
        other = speaker.say("yes", f"en-us+{variant}", 150, 50)
        n = min(len(plain), len(other))
        assert np.abs(plain[:n].astype(float) - other[:n]).mean() > 0.2 * np.abs(plain[:n].astype(float)).mean()


def test_takes_are_the_same_for_a_seed_and_differ_across_seeds():
    assert draw_takes(20, seed=3) == draw_takes(20, seed=3)
    first, other = draw_takes(20, seed=3), draw_takes(20, seed=4)
    assert sum(a.voice == b.voice for a, b in zip(first, other, strict=True)) < 10


def test_the_set_on_disk_follows_its_seed_and_lists_its_voices(words, tmp_path):
    rows = read_manifest(words)
    assert len(rows) == 60 and {r["synthesiser"] for r in rows} == {"espeak-ng"}
    assert len({r["voice"] for r in rows}) > 40
    for row in rows[:5]:
        wave, rate = sf.read(words / row["path"], dtype="int16")
        assert rate == 16000 and wave.shape == (16000,) and np.any(wave)
    again = spoken_words(tmp_path / "again", takes_per_word=6)
    assert read_manifest(again) == rows  # eSpeak's own samples vary slightly between runs; the takes do not
    other_seed = read_manifest(spoken_words(tmp_path / "seed1", takes_per_word=6, seed=1))
    assert [r["voice"] for r in other_seed] != [r["voice"] for r in rows]


def test_render_is_deterministic_for_a_take():
    speaker = ESpeak()
    wave = speaker.say("go", "en-gb-x-rp+m3", 150, 50)
    for take in [t for t in draw_takes(10, seed=0) if t.word == "go"][:4]:
        assert np.array_equal(render(take, wave, speaker.rate, 0), render(take, wave, speaker.rate, 0))
        assert not np.array_equal(render(take, wave, speaker.rate, 0), render(take, wave, speaker.rate, 1)) \
            or (take.noise == "none" and not take.rt60_s)


def test_tract_perturbation_scales_frequency_and_duration():
    rate, n = 22050, 22050 // 2
    tone = np.sin(2 * np.pi * 1000 * np.arange(n) / rate).astype(np.float32)
    for factor in (0.85, 1.0, 1.25):
        out = perturb_tract(tone, rate, factor)
        assert abs(len(out) - n / rate * 16000 * factor) <= 1
        peak = np.fft.rfftfreq(len(out), 1 / 16000)[np.argmax(np.abs(np.fft.rfft(out)))]
        assert abs(peak - 1000 / factor) < 5


def test_band_limit_cuts_below_the_high_pass_and_above_the_low_pass():
    noise = np.random.default_rng(0).standard_normal(16000)
    out = band_limit(noise, 300.0, 3000.0)
    middle = band_power(out, 800, 1500)
    assert band_power(out, 20, 80) < middle / 100 and band_power(out, 6000, 8000) < middle / 30
    assert np.array_equal(band_limit(noise, 0.0, 0.0), noise)


def test_room_has_the_asked_reverberation_time_and_direct_to_reverberant_ratio():
    response = room_impulse_response(0.5, 6.0, np.random.default_rng(0))
    assert len(response) == 8000 and response[0] == 1.0
    tail = response[1:]
    assert abs(10 * np.log10(1.0 / np.sum(tail ** 2)) - 6.0) < 1e-6
    energy = np.cumsum(tail[::-1] ** 2)[::-1]  # Schroeder backward integration
    decay_db = 10 * np.log10(energy[100] / energy[4000])  # over 0.25 s: 30 dB of a 60 dB-per-0.5 s decay
    assert 25 < decay_db < 35


def test_noise_colours_have_their_spectral_slopes():
    for colour, octave_ratio in (("white", 1.0), ("pink", 2.0), ("brown", 4.0)):
        noise = coloured_noise(64000, colour, np.random.default_rng(1))
        assert abs(np.sqrt(np.mean(noise ** 2)) - 1) < 1e-6
        ratio = band_power(noise, 1000, 2000) / band_power(noise, 2000, 4000)
        assert abs(ratio / octave_ratio - 1) < 0.25, (colour, ratio)


def test_render_places_the_word_at_its_level_and_noise_at_its_snr():
    speaker = ESpeak()
    wave = speaker.say("stop", "en-us", 150, 50)
    (take,) = [t for t in draw_takes(40, seed=0) if t.word == "stop" and t.noise == "pink" and not t.rt60_s][:1]
    quiet = take.__class__(**{**take.__dict__, "noise": "none", "snr_db": 0.0})
    clean = render(quiet, wave, speaker.rate, seed=0).astype(float) / 32768
    noisy = render(take, wave, speaker.rate, seed=0).astype(float) / 32768
    assert clean.shape == (16000,)
    assert abs(20 * np.log10(np.abs(clean).max()) - take.level_dbfs) < 0.1
    loud = np.flatnonzero(np.abs(clean) > 0.01 * np.abs(clean).max())
    start = int(take.offset_s * (16000 - (loud[-1] - loud[0] + 1)))
    assert abs(loud[0] - start) < 5
    word = clean[loud[0]:loud[-1] + 1]
    snr = 10 * np.log10(np.mean(word ** 2) / np.mean((noisy - clean) ** 2))
    assert abs(snr - take.snr_db) < 0.5, (snr, take.snr_db)


def test_held_out_synthesisers_are_never_in_the_embedded_set(words):
    training = {(r["synthesiser"], r["voice"]) for r in read_manifest(words)}
    every_take = {(t.synthesiser, t.voice) for t in draw_takes(832, seed=0)}
    assert not training & set(OTHER_VOICES) and not every_take & set(OTHER_VOICES)
    assert {s for s, _ in OTHER_VOICES}.isdisjoint({s for s, _ in every_take})


@pytest.mark.skipif(shutil.which("flite") is None, reason="Debian's flite is not installed")
def test_other_synthesiser_words_are_a_test_only_tree(tmp_path, words):
    folder = other_synthesiser_words(tmp_path / "held_out", voices=[("flite", "slt"), ("flite", "no-such-voice")],
                                     stretches=(1.0,))
    rows = read_manifest(folder)
    assert len(rows) == 10 and {(r["synthesiser"], r["voice"]) for r in rows} == {("flite", "slt")}
    data = AudioData(root=str(folder), num_frames=96, mean=-6.0, std=4.0)
    assert data.format == "speech_commands" and data.class_names == sorted(WORDS)
    data.setup("test")
    assert len(data.test_set) == 10 and len(data.train_set) == 0
    assert {p.name for p in data.test_set.files}.isdisjoint({p.name for p in words.rglob("*.wav")})


def test_no_other_synthesiser_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"no other synthesiser could speak .*install Debian's flite"):
        other_synthesiser_words(tmp_path / "none", voices=[("nonexistent", "voice")])
