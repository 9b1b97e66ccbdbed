"""Audio clips as Kaldi-compatible log-mel filterbanks (the AST / SSAST front end), from the real on-disk formats.

Sources (``--data.format``, "auto" tells them apart by their files):

- ``folder``: a class-per-folder tree ``root/<class>/<clip>.{wav,flac,ogg}`` (random stratified split);
- ``speech_commands``: Speech Commands v2 (``root/<word>/<clip>.wav`` with ``validation_list.txt`` and
  ``testing_list.txt``; ``_background_noise_`` is skipped); 35 words;
- ``esc50``: ESC-50 (``root/meta/esc50.csv`` + ``root/audio/``), ``test_fold`` and ``val_fold`` held out;
- ``audioset``: AudioSet-style JSON ``{"data": [{"wav": path, "labels": "mid1,mid2"}]}`` (``train_json``,
  ``val_json``, ``test_json``) with a label CSV ``index,mid,display_name`` (multi-hot targets);
- ``unlabelled``: every audio file under ``root`` (labels ignored), for masked pretraining;
- no ``root``: the embedded spoken-word set (:mod:`zoo.data.spoken_words`), ten English words synthesised with
  eSpeak NG, each take in its own voice (8 accents x 104 variants), rate, pitch and augmentation
  (``espeakng-loader`` ships the library; Debian's ``espeak-ng`` also works), written ONCE as a class-per-folder wav
  tree with a ``manifest.csv`` in the cache and then read like any user folder.

Clips are read with soundfile, averaged to mono and resampled to 16 kHz with torchaudio; the waveform mean is
removed; :class:`KaldiFbank` computes the 128-bin fbank (torchaudio.compliance.kaldi.fbank with the official
settings), which is padded with zeros or cut to ``num_frames`` and normalised as (x - mean) / (2 std). ``mean`` and
``std`` default to the statistics of the training part (``python -m zoo.data.audio stats ROOT`` prints them);
the official ones are AudioSet -4.2677393 / 4.5689974, ESC-50 -6.6268077 / 5.358466, Speech Commands
-6.845978 / 5.5654526. Training augmentation: SpecAugment (one frequency mask of up to ``freqm`` bins and one time
mask of up to ``timem`` frames, torchaudio) and the official "noise" augmentation (``noise``). Batches are
``(fbank (B, num_frames, 128), labels (B,))`` (multi-hot (B, C) float for AudioSet), fbank only when unlabelled.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, describe_files, match_class_names
from zoo.data.splits import random_split
from zoo.data.spoken_words import TAKES_PER_WORD, ESpeak, spoken_words  # noqa: F401  (ESpeak: re-exported)

from zoo.errors import DataError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SAMPLE_RATE = 16_000
Format = Literal["auto", "folder", "speech_commands", "esc50", "audioset", "unlabelled"]
OFFICIAL_STATS = {"audioset": (-4.2677393, 4.5689974), "esc50": (-6.6268077, 5.358466),
                  "speech_commands": (-6.845978, 5.5654526)}


# --- reading and the front end ------------------------------------------------------------------------------------
def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, resample: bool = True) -> torch.Tensor:
    """(N,) float32 mono waveform of ``path`` at ``sample_rate``.

    Raises:
        DataError: for a file soundfile cannot read, an empty clip, or another rate when ``resample`` is False.
    """
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise DataError(f"cannot read audio file {path}: {err}") from None
    if data.size == 0:
        raise DataError(f"audio file {path} is empty (no samples)")
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        if not resample:
            raise DataError(f"{path} is sampled at {rate} Hz, not {sample_rate} Hz, and resampling is off "
                            "(--data.resample false); resample the files or allow it")
        wave = torchaudio.functional.resample(wave, rate, sample_rate)
    return wave


class KaldiFbank(nn.Module):
    """Waveform (N,) at 16 kHz -> (num_frames, num_mel_bins) log-mel filterbank, as the AST/SSAST dataloaders make
    it: DC removed, ``torchaudio.compliance.kaldi.fbank(htk_compat=True, use_energy=False, window_type="hanning",
    dither=0.0, frame_shift=10)`` (25 ms frames), zero-padded at the end or cut to ``num_frames``, then
    (x - mean) / (2 std). Deterministic; augmentation is separate."""

    def __init__(self, num_frames: int = 1024, num_mel_bins: int = 128, mean: float = 0.0, std: float = 0.5,
                 sample_rate: int = SAMPLE_RATE):
        super().__init__()
        if std <= 0:
            raise DataError(f"the filterbank std must be positive, got {std}")
        self.num_frames, self.num_mel_bins, self.mean, self.std = num_frames, num_mel_bins, mean, std
        self.sample_rate = sample_rate

    def fbank(self, wave: torch.Tensor) -> torch.Tensor:
        """(N,) -> (T, num_mel_bins) unnormalised, unpadded log-mel filterbank."""
        wave = wave - wave.mean()
        if wave.numel() < int(0.025 * self.sample_rate):
            raise DataError(f"a clip of {wave.numel()} samples is shorter than one 25 ms frame")
        return torchaudio.compliance.kaldi.fbank(
            wave.unsqueeze(0), htk_compat=True, sample_frequency=self.sample_rate, use_energy=False,
            window_type="hanning", num_mel_bins=self.num_mel_bins, dither=0.0, frame_shift=10)

    def pad_or_cut(self, fbank: torch.Tensor) -> torch.Tensor:
        missing = self.num_frames - fbank.shape[0]
        if missing > 0:
            return torch.nn.functional.pad(fbank, (0, 0, 0, missing))
        return fbank[:self.num_frames]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(N,) -> (num_frames, num_mel_bins), normalised."""
        return (self.pad_or_cut(self.fbank(wave)) - self.mean) / (2 * self.std)


def spec_augment(fbank: torch.Tensor, freqm: int, timem: int) -> torch.Tensor:
    """One frequency mask (up to ``freqm`` bins) and one time mask (up to ``timem`` frames) of a (T, F) fbank, zero
    filled, with torchaudio on the (1, F, T) view (as the official code since the 2022 fix)."""
    view = fbank.T.unsqueeze(0)
    if freqm:
        view = torchaudio.transforms.FrequencyMasking(freqm)(view)
    if timem:
        view = torchaudio.transforms.TimeMasking(timem)(view)
    return view.squeeze(0).T


def noise_augment(fbank: torch.Tensor) -> torch.Tensor:
    """The official ``noise`` augmentation: add U(0, 1) noise scaled by U(0, 1) / 10, roll time by [-10, 10)."""
    fbank = fbank + torch.rand_like(fbank) * torch.rand(()) / 10
    return torch.roll(fbank, int(torch.randint(-10, 10, ())), 0)


# --- the on-disk formats ------------------------------------------------------------------------------------------
def list_audio(root: Path) -> list[Path]:
    """Every wav/flac/ogg file under ``root`` (sorted); a DataError when there is none."""
    if not root.exists():
        raise DataError(f"audio folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"{root} holds no audio files (looked for {', '.join(AUDIO_EXTENSIONS)})")
    return files


def scan_class_folders(root: Path) -> tuple[list[str], list[Path], list[int]]:
    """(class names, files, labels) of ``root/<class>/<clip>``; folders starting with "_" are skipped."""
    if not root.is_dir():
        raise DataError(f"audio folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if not classes:
        raise DataError(f"{root} has no class folders: expected {root}/<class name>/<audio files>")
    files, labels = [], []
    for index, name in enumerate(classes):
        clips = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not clips:
            raise DataError(f"class folder {root / name} holds no audio files (looked for "
                            f"{', '.join(AUDIO_EXTENSIONS)})")
        files += clips
        labels += [index] * len(clips)
    return classes, files, labels


def read_speech_commands(root: Path) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    """Speech Commands v2: words and the official train/val/test parts from ``validation_list.txt`` and
    ``testing_list.txt`` (paths relative to ``root``; every other clip trains)."""
    classes, files, labels = scan_class_folders(root)
    listed = {}
    for part, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        lines = (root / name).read_text().split()
        for number, line in enumerate(lines, 1):
            if not (root / line).is_file():
                raise DataError(f"{root / name} line {number}: {line} is not a file under {root}")
            listed[line] = part
    parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for path, label in zip(files, labels, strict=True):
        part = parts[listed.get(path.relative_to(root).as_posix(), "train")]
        part[0].append(path)
        part[1].append(label)
    return classes, parts


def read_esc50(root: Path, val_fold: int | None, test_fold: int
               ) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    """ESC-50: ``meta/esc50.csv`` (filename, fold, target, category, ...) and ``audio/``; one fold tests, one
    validates (None: the test fold also validates, as the official 5-fold recipe), the others train."""
    meta = root / "meta" / "esc50.csv"
    names: dict[int, str] = {}
    parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
    with open(meta, newline="") as f:
        for number, row in enumerate(csv.DictReader(f), 2):
            try:
                fold, target, path = int(row["fold"]), int(row["target"]), root / "audio" / row["filename"]
                names[target] = row["category"]
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{meta} line {number}: expected filename, fold, target, category ({err})") from None
            if not path.is_file():
                raise DataError(f"{meta} line {number}: {path} does not exist")
            part = "test" if fold == test_fold else "val" if fold == val_fold else "train"
            for p in (part, "val") if part == "test" and val_fold is None else (part,):
                parts[p][0].append(path)
                parts[p][1].append(target)
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{meta}: targets must be 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))], parts


def read_label_csv(path: Path) -> tuple[list[str], list[str]]:
    """AudioSet label CSV ``index,mid,display_name`` -> (mids, display names) in index order."""
    mids, names = [], []
    with open(path, newline="") as f:
        for number, row in enumerate(csv.DictReader(f), 2):
            try:
                if int(row["index"]) != len(mids):
                    raise ValueError(f"index {row['index']} out of order")
                mids.append(row["mid"])
                names.append(row["display_name"])
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{path} line {number}: expected index,mid,display_name ({err})") from None
    if not mids:
        raise DataError(f"{path} names no classes")
    return mids, names


def read_audioset_json(path: Path, mids: Sequence[str], label_csv: Path) -> tuple[list[Path], torch.Tensor]:
    """AudioSet-style JSON -> (files, (N, C) multi-hot targets); relative paths are taken from the JSON's folder."""
    try:
        entries = json.loads(path.read_text())["data"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        layout = '{"data": [{"wav": ..., "labels": "mid1,mid2"}]}'
        raise DataError(f"{path}: expected {layout} ({err})") from None
    index = {m: i for i, m in enumerate(mids)}
    files, targets = [], torch.zeros(len(entries), len(mids))
    for number, entry in enumerate(entries):
        for mid in str(entry.get("labels", "")).split(","):
            if mid.strip() not in index:
                raise DataError(f"{path} entry {number} ({entry.get('wav')}): label {mid.strip()!r} is not a class "
                                f"of {label_csv}")
            targets[number, index[mid.strip()]] = 1
        wav = Path(entry["wav"])
        files.append(wav if wav.is_absolute() else path.parent / wav)
    return files, targets


def fbank_statistics(files: Sequence[Path], num_frames: int = 1024, num_mel_bins: int = 128,
                     sample_rate: int = SAMPLE_RATE, resample: bool = True) -> tuple[float, float]:
    """Mean and std of the unnormalised, padded fbanks of ``files`` (the official ``get_norm_stats``)."""
    front = KaldiFbank(num_frames, num_mel_bins, sample_rate=sample_rate)
    values = torch.stack([front.pad_or_cut(front.fbank(read_audio(f, sample_rate, resample))) for f in files])
    return float(values.mean()), float(values.std())


# --- datasets and the data module ---------------------------------------------------------------------------------
class FbankClips(Dataset):
    """Clips -> normalised fbanks, with training augmentation. With ``preload`` the unnormalised fbanks are
    computed once (the front end is deterministic) and normalised per item."""

    def __init__(self, files: Sequence[Path], targets: Sequence | torch.Tensor | None, front: KaldiFbank,
                 sample_rate: int, resample: bool, freqm: int = 0, timem: int = 0, noise: bool = False,
                 preload: bool = True):
        self.files, self.targets, self.front = list(files), targets, front
        self.sample_rate, self.resample = sample_rate, resample
        self.freqm, self.timem, self.noise = freqm, timem, noise
        self.cache = [self._raw(i) for i in range(len(self.files))] if preload else None

    def _raw(self, index: int) -> torch.Tensor:
        return self.front.pad_or_cut(self.front.fbank(read_audio(self.files[index], self.sample_rate,
                                                                 self.resample)))

    def statistics(self) -> tuple[float, float]:
        """Mean and std of the unnormalised, padded fbanks (the official ``get_norm_stats``)."""
        values = torch.stack(self.cache if self.cache is not None else [self._raw(i) for i in range(len(self))])
        return float(values.mean()), float(values.std())

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        raw = self.cache[index] if self.cache is not None else self._raw(index)
        fbank = (raw - self.front.mean) / (2 * self.front.std)
        if self.freqm or self.timem:
            fbank = spec_augment(fbank, self.freqm, self.timem)
        if self.noise:
            fbank = noise_augment(fbank)
        if self.targets is None:
            return fbank
        return fbank, self.targets[index]


class AudioData(ZooDataModule):
    """Log-mel filterbank batches of audio clips (see the module docstring for the formats).

    Args:
        root: the data folder (class folders, Speech Commands, ESC-50, or any audio for ``unlabelled``); None: the
            embedded spoken-word set.
        format: "auto" (from the files), "folder", "speech_commands", "esc50", "audioset", "unlabelled".
        labelled: False ignores labels (masked pretraining): batches are fbanks only.
        num_frames: frames per clip after padding/cutting (10 ms each; 1024 AudioSet, 512 ESC-50, 128 Speech
            Commands).
        mean / std: fbank statistics; None computes them on the training part.
        sample_rate / resample: clips are resampled to ``sample_rate`` unless ``resample`` is False (then another
            rate is an error).
        freqm / timem / noise: training augmentation (SpecAugment widths, the official noise augmentation).
        val_fraction / test_fraction: split sizes of sources without a given split.
        val_fold / test_fold: ESC-50 folds held out (val_fold None: the test fold validates too).
        train_json / val_json / test_json / label_csv: AudioSet-style metadata.
        preload: compute every fbank once at setup (default when there are at most 20,000 clips).
        words_per_class / words_augment: without ``root``, the embedded spoken-word set's takes per word and whether
            they get a microphone band, room and noise (zoo.data.spoken_words).
        test_root: a folder that holds only evaluation clips (``test_root/<class>/<clip>``; any clips when
            unlabelled): ``zoo test`` and ``zoo validate`` evaluate all of it and read nothing else (no ``root``
            needed), normalised with the recorded ``mean`` / ``std``.
        predict_path: an audio file or a folder of clips for ``zoo predict``.
        class_names: the classes in label order; None reads them from the data (a checkpoint records them, so
            that new clips are matched to the model's classes by name).
    """

    def __init__(self, root: str | None = None, format: Format = "auto", labelled: bool = True,
                 num_frames: int = 128, num_mel_bins: int = 128, mean: float | None = None, std: float | None = None,
                 sample_rate: int = SAMPLE_RATE, resample: bool = True, freqm: int = 0, timem: int = 0,
                 noise: bool = False, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 val_fold: int | None = 4, test_fold: int = 5, train_json: str | None = None,
                 val_json: str | None = None, test_json: str | None = None, label_csv: str | None = None,
                 preload: bool | None = None, words_per_class: int = TAKES_PER_WORD, words_augment: bool = True,
                 batch_size: int = 32, num_workers: int | None = None, seed: int = 0,
                 test_root: str | None = None, predict_path: str | None = None,
                 class_names: list[str] | None = None):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if num_frames < 1 or num_mel_bins < 1:
            raise DataError(f"num_frames and num_mel_bins must be positive, got {num_frames} and {num_mel_bins}")
        self.test_root = Path(test_root).expanduser() if test_root else None
        if self.test_root is not None and not self.test_root.is_dir():
            raise DataError(f"--data.test_root {self.test_root} is not a folder (expected "
                            f"{self.test_root}/<class name>/<audio files>)")
        self.embedded = root is None and format in ("auto", "folder", "unlabelled") and train_json is None
        # with the classes recorded, the spoken-word set is written only when its clips are read (not to test a
        # test-only folder or to predict new clips)
        if self.embedded and not (class_names or not labelled):
            self.root = spoken_words(takes_per_word=words_per_class, augment=words_augment)
        else:
            self.root = Path(root).expanduser() if root else None
        self.format = self._detect(format)
        self.class_names = list(class_names) if class_names else self._class_names()
        self.num_classes = len(self.class_names) if self.class_names else None
        self.hparams.class_names = self.class_names  # kept with the run: new clips are matched by name
        self.in_memory = True
        self.predict_paths: list[Path] = []
        self.evaluation_folder: Path | None = None  # set up from a test-only folder

    def _detect(self, format: str) -> str:
        if format != "auto":
            if format != "audioset" and self.root is None:
                raise DataError(f"--data.format {format} needs --data.root")
            return format
        if self.hparams.train_json:
            return "audioset"
        if self.root is None:  # a test-only folder, evaluated with the recorded classes
            return "folder" if self.hparams.labelled else "unlabelled"
        if (self.root / "meta" / "esc50.csv").is_file():
            return "esc50"
        if (self.root / "validation_list.txt").is_file() and (self.root / "testing_list.txt").is_file():
            return "speech_commands"
        return "folder" if self.hparams.labelled else "unlabelled"

    def _class_names(self) -> list[str] | None:
        if not self.hparams.labelled or self.format == "unlabelled":
            return None
        if self.format == "audioset":
            if not self.hparams.label_csv:
                raise DataError("--data.format audioset needs --data.label_csv (index,mid,display_name)")
            self.mids, names = read_label_csv(Path(self.hparams.label_csv))
            return names
        if self.format == "esc50":
            return read_esc50(self.root, self.hparams.val_fold, self.hparams.test_fold)[0]
        return scan_class_folders(self.root or self.test_root)[0]

    def _parts(self) -> dict[str, tuple[list[Path], Sequence | torch.Tensor | None]]:
        hp = self.hparams
        if self.root is None and self.embedded:
            self.root = spoken_words(takes_per_word=hp.words_per_class, augment=hp.words_augment)
        if self.format == "speech_commands":
            return read_speech_commands(self.root)[1]
        if self.format == "esc50":
            return read_esc50(self.root, hp.val_fold, hp.test_fold)[1]
        if self.format == "audioset":
            csv_path = Path(hp.label_csv)
            parts = {}
            for part, name in (("train", hp.train_json), ("val", hp.val_json), ("test", hp.test_json)):
                parts[part] = read_audioset_json(Path(name), self.mids, csv_path) if name else ([], None)
            return parts
        if self.format == "unlabelled" or not hp.labelled:
            files = list_audio(self.root)
            split = random_split(len(files), hp.val_fraction, hp.test_fraction, hp.seed)
            return {k: ([files[i] for i in idx], None) for k, idx in zip(("train", "val", "test"), split, strict=True)}
        _, files, labels = scan_class_folders(self.root)
        counts = np.bincount(labels)
        if counts.min() < 3:
            raise DataError(f"class folder {self.root / self.class_names[int(counts.argmin())]} has {counts.min()} "
                            "clips; at least 3 per class are needed to split train/val/test")
        split = random_split(len(files), hp.val_fraction, hp.test_fraction, hp.seed, stratify=labels)
        return {k: ([files[i] for i in idx], [labels[i] for i in idx])
                for k, idx in zip(("train", "val", "test"), split, strict=True)}

    def _front_end(self) -> KaldiFbank:
        """The front end normalised with the recorded statistics (evaluation and prediction of new clips)."""
        hp = self.hparams
        if hp.mean is None or hp.std is None:
            raise DataError("new clips are normalised with the training part's fbank statistics, which are not "
                            "known here: give the checkpoint's (--data.mean, --data.std) or train first")
        self.mean, self.std = hp.mean, hp.std
        return KaldiFbank(hp.num_frames, hp.num_mel_bins, hp.mean, hp.std, hp.sample_rate)

    def _setup_new_clips(self, stage: str) -> None:
        """The clips of ``predict_path`` (stage "predict") or of the test-only ``test_root``, and nothing else."""
        hp = self.hparams
        front = self._front_end()
        if stage == "predict":
            if not hp.predict_path:
                raise DataError("zoo predict needs --data.predict_path (an audio file or a folder of clips)")
            path = Path(hp.predict_path).expanduser()
            self.predict_paths = [path] if path.is_file() else list_audio(path)
            self.predict_set = FbankClips(self.predict_paths, None, front, hp.sample_rate, hp.resample)
            return
        labelled = hp.labelled and self.format != "unlabelled"
        if labelled:
            classes, files, labels = scan_class_folders(self.test_root)
            index = match_class_names(classes, self.class_names, str(self.test_root))
            targets: list[int] | None = [index[y] for y in labels]
        else:
            files, targets = list_audio(self.test_root), None
        self.evaluation_folder = self.test_root
        self.val_set = self.test_set = FbankClips(files, targets, front, hp.sample_rate, hp.resample)

    def evaluation_line(self, split: str) -> str:
        """"data: 5 clips in my_clips/ (test only), 10 classes", the clips to predict, or the run's own split."""
        if split == "predict":
            return f"data: {len(self.predict_paths)} clips to predict in {describe_files(self.predict_paths)}"
        if self.evaluation_folder is not None:
            classes = f", {self.num_classes} classes" if self.num_classes else ""
            return (f"data: {len(self.split_dataset(split))} clips in {self.evaluation_folder}/ (test only)"
                    f"{classes}")
        return super().evaluation_line(split).replace(" examples", " clips")

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage == "predict" or (stage in ("test", "validate") and self.test_root is not None):
            self._setup_new_clips(stage)
            return
        if self.train_set is not None:  # set up for fitting already: the test stage reads the same parts' fbanks
            return
        parts = self._parts()
        if not parts["train"][0] and stage in (None, "fit"):
            raise DataError(f"no training clips in {self.root or hp.train_json}")
        front = KaldiFbank(hp.num_frames, hp.num_mel_bins, 0.0, 0.5, hp.sample_rate)
        preload = hp.preload if hp.preload is not None else sum(len(p[0]) for p in parts.values()) <= 20_000
        labelled = hp.labelled and self.format != "unlabelled"
        for part, (files, targets) in parts.items():
            train = part == "train"
            setattr(self, f"{part}_set", FbankClips(
                files, targets if labelled else None, front, hp.sample_rate, hp.resample,
                hp.freqm if train else 0, hp.timem if train else 0, hp.noise and train, preload))
        if hp.mean is None or hp.std is None:  # fitted on the training part only
            self.mean, self.std = (self.train_set if len(self.train_set) else self.test_set).statistics()
            # kept with the run: a checkpoint records its data module's arguments, so `zoo test|predict --ckpt` on
            # other clips normalise with the training part's statistics, not the new clips' own
            self.hparams.mean, self.hparams.std = self.mean, self.std
        else:
            self.mean, self.std = hp.mean, hp.std
        front.mean, front.std = self.mean, self.std

    def describe(self) -> str:
        source = (f"embedded spoken words (eSpeak NG synthetic speech) in {self.root}" if self.embedded
                  else f"{self.format} {self.root or self.hparams.train_json}")
        sizes = ", ".join(f"{s} {len(getattr(self, f'{s}_set'))}" for s in ("train", "val", "test")
                          if getattr(self, f"{s}_set") is not None)
        classes = f"{self.num_classes} classes" if self.num_classes else "unlabelled"
        stats = f", mean {self.mean:.3f} std {self.std:.3f}" if hasattr(self, "mean") else ""
        return (f"data: {source}; {classes}; {sizes}; input {self.hparams.num_frames} frames x "
                f"{self.hparams.num_mel_bins} mel bins{stats}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m zoo.data.audio stats ROOT [NUM_FRAMES]``: the fbank mean and std of every clip under ROOT."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "stats":
        raise SystemExit("usage: python -m zoo.data.audio stats ROOT [NUM_FRAMES]")
    frames = int(args[2]) if len(args) > 2 else 1024
    mean, std = fbank_statistics(list_audio(Path(args[1])), frames)
    print(f"mean {mean:.7f} std {std:.7f} (pass --data.mean {mean:.7f} --data.std {std:.7f})")


if __name__ == "__main__":
    main()
