"""Audio data: the Kaldi front end against torchaudio's reference, the on-disk formats, the spoken-word default and
the errors on bad input."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from zoo.data.audio import AudioData, ESpeak, KaldiFbank, read_audio, spoken_words

from zoo.errors import DataError


@pytest.fixture(scope="module")
def word():
    """A real spoken word: eSpeak NG's 'left' at its native 22.05 kHz."""
    speaker = ESpeak()
    return speaker.say("left", "en-us", 150, 50).astype(np.float32) / 32768, speaker.rate


def write_clip(path, wave, rate, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, format=fmt)
    return path


def test_front_end_equals_torchaudio_kaldi_reference(tmp_path, word):
    wave, rate = word
    path = write_clip(tmp_path / "left.wav", wave, rate, "WAV")
    loaded = read_audio(path)
    reference_wave = torchaudio.functional.resample(torch.from_numpy(sf.read(path, dtype="float32")[0]), rate, 16000)
    assert torch.allclose(loaded, reference_wave)
    reference = torchaudio.compliance.kaldi.fbank(
        (reference_wave - reference_wave.mean()).unsqueeze(0), htk_compat=True, sample_frequency=16000,
        use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    front = KaldiFbank(num_frames=128, mean=-6.845978, std=5.5654526)
    out = front(loaded)
    assert out.shape == (128, 128)
    frames = reference.shape[0]
    assert torch.allclose(out[:frames], (reference - -6.845978) / (2 * 5.5654526))
    assert torch.all(out[frames:] == 6.845978 / (2 * 5.5654526))  # zero padding, normalised
    assert KaldiFbank(num_frames=10)(loaded).shape == (10, 128)
    assert KaldiFbank().fbank(torch.randn(16000)).shape[0] == 98  # 1 s -> 98 frames


def test_class_folders_of_wav_flac_ogg_resampled(tmp_path, word):
    wave, rate = word
    for c, fmt in zip(("a", "b", "c"), ("WAV", "FLAC", "OGG"), strict=True):
        for i in range(4):
            write_clip(tmp_path / c / f"{i}.{fmt.lower()}", wave * (0.5 + 0.1 * i), rate, fmt)
    data = AudioData(root=str(tmp_path), num_frames=64, batch_size=4, val_fraction=0.25, test_fraction=0.25)
    assert data.format == "folder" and data.class_names == ["a", "b", "c"] and data.num_classes == 3
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (4, 64, 128) and y.dtype == torch.int64
    assert len(data.train_set) + len(data.val_set) + len(data.test_set) == 12
    assert "3 classes" in data.describe()
    # the statistics fitted on the training part are the module's arguments now, so a checkpoint keeps them
    assert (data.hparams.mean, data.hparams.std) == data.train_set.statistics()


def test_fit_then_test_reads_every_clip_once(tmp_path, word, monkeypatch):
    """`zoo train` sets the module up for fitting, then for testing: the second stage keeps the fbanks (and the
    statistics) of the first instead of reading and transforming every clip again."""
    wave, rate = word
    for c in ("a", "b"):
        for i in range(4):
            write_clip(tmp_path / c / f"{i}.wav", wave * (0.5 + 0.1 * i), rate, "WAV")
    reads = []
    monkeypatch.setattr("zoo.data.audio.read_audio", lambda path, *args: reads.append(path) or read_audio(path, *args))
    data = AudioData(root=str(tmp_path), num_frames=32, batch_size=2, val_fraction=0.25, test_fraction=0.25)
    data.setup("fit")
    test_set, statistics = data.test_set, (data.mean, data.std)
    data.setup("test")
    assert len(reads) == 8 and data.test_set is test_set and (data.mean, data.std) == statistics


def test_a_checkpointed_audio_module_normalises_new_clips_with_the_training_statistics(tmp_path, word):
    wave, rate = word
    for c in ("a", "b", "c"):
        for i in range(4):
            write_clip(tmp_path / "train" / c / f"{i}.wav", wave * (0.5 + 0.1 * i), rate, "WAV")
            write_clip(tmp_path / "new" / c / f"{i}.wav", wave * (2.0 + 0.3 * i), rate, "WAV")
    trained = AudioData(root=str(tmp_path / "train"), num_frames=32, val_fraction=0.25, test_fraction=0.25)
    trained.setup("fit")
    recorded = dict(trained.hparams)  # what Lightning writes as the checkpoint's datamodule_hyper_parameters
    again = AudioData(**{**recorded, "root": str(tmp_path / "new")})
    again.setup("test")
    assert (again.mean, again.std) == (recorded["mean"], recorded["std"])
    assert (again.mean, again.std) != again.train_set.statistics()  # the new clips' own would differ


def test_speech_commands_lists(tmp_path, word):
    wave, rate = word
    for w in ("yes", "no"):
        for i in range(3):
            write_clip(tmp_path / w / f"spk{i}_nohash_0.wav", wave, rate)
    write_clip(tmp_path / "_background_noise_" / "noise.wav", wave, rate)
    (tmp_path / "validation_list.txt").write_text("yes/spk1_nohash_0.wav\nno/spk1_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/spk2_nohash_0.wav\n")
    data = AudioData(root=str(tmp_path), num_frames=32, mean=-6.845978, std=5.5654526)
    assert data.format == "speech_commands" and data.class_names == ["no", "yes"]
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (3, 2, 1)
    (tmp_path / "testing_list.txt").write_text("yes/missing.wav\n")
    with pytest.raises(DataError, match=r"testing_list.txt line 1: yes/missing.wav"):
        AudioData(root=str(tmp_path)).setup("fit")


def test_esc50_meta_and_folds(tmp_path, word):
    wave, rate = word
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, name in enumerate(("dog", "rain")):
            file = f"{fold}-{target}-A-0.wav"
            write_clip(tmp_path / "audio" / file, wave, rate)
            rows.append(f"{file},{fold},{target},{name},False,{target},A")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    data = AudioData(root=str(tmp_path), num_frames=32)
    assert data.format == "esc50" and data.class_names == ["dog", "rain"]
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (6, 2, 2)
    official = AudioData(root=str(tmp_path), num_frames=32, val_fold=None, test_fold=1)
    official.setup("fit")
    assert [p.name for p in official.val_set.files] == [p.name for p in official.test_set.files]


def test_audioset_json_and_label_csv(tmp_path, word):
    wave, rate = word
    (tmp_path / "labels.csv").write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/04rlf,"Music"\n')
    entries = [{"wav": str(write_clip(tmp_path / f"{i}.wav", wave, rate)), "labels": labels}
               for i, labels in enumerate(["/m/09x0r", "/m/04rlf,/m/09x0r", "/m/04rlf"])]
    (tmp_path / "train.json").write_text(json.dumps({"data": entries}))
    data = AudioData(format="audioset", train_json=str(tmp_path / "train.json"),
                     test_json=str(tmp_path / "train.json"), label_csv=str(tmp_path / "labels.csv"), num_frames=32)
    assert data.class_names == ["Speech", "Music"]
    data.setup("fit")
    assert torch.equal(data.train_set.targets, torch.tensor([[1.0, 0], [1, 1], [0, 1]]))
    entries[2]["labels"] = "/m/unknown"
    (tmp_path / "bad.json").write_text(json.dumps({"data": entries}))
    bad = AudioData(format="audioset", train_json=str(tmp_path / "bad.json"), label_csv=str(tmp_path / "labels.csv"))
    with pytest.raises(DataError, match=r"bad.json entry 2 .*'/m/unknown' is not a class of .*labels.csv"):
        bad.setup("fit")


def test_unlabelled_folder_for_pretraining(tmp_path, word):
    wave, rate = word
    for i in range(6):
        write_clip(tmp_path / "any" / "nested" / f"{i}.flac", wave, rate, "FLAC")
    data = AudioData(root=str(tmp_path), labelled=False, num_frames=32, batch_size=2, val_fraction=0.2,
                     test_fraction=0.2)
    assert data.format == "unlabelled" and data.num_classes is None
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 32, 128)


def test_spoken_word_default_is_written_once_and_read_as_a_folder(tmp_path):
    folder = spoken_words(tmp_path / "words", takes_per_word=4)
    readme = (folder / "README.txt").stat().st_mtime_ns
    assert sorted(p.name for p in folder.iterdir() if p.is_dir())[:3] == ["down", "go", "left"]
    clips = sorted((folder / "yes").glob("*.wav"))
    assert len(clips) == 4 and sf.info(clips[0]).samplerate == 16000 and sf.info(clips[0]).frames == 16000
    assert spoken_words(tmp_path / "words") == folder and (folder / "README.txt").stat().st_mtime_ns == readme
    data = AudioData(root=str(folder), num_frames=100)
    assert data.num_classes == 10


def test_bad_audio_is_named(tmp_path, word):
    wave, rate = word
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.wav").write_bytes(b"not audio at all")
    with pytest.raises(DataError, match=r"cannot read audio file .*broken.wav"):
        read_audio(tmp_path / "a" / "broken.wav")
    write_clip(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match=r"empty.wav is empty"):
        read_audio(tmp_path / "empty.wav")
    path = write_clip(tmp_path / "fast.wav", wave, rate)
    with pytest.raises(DataError, match=r"fast.wav is sampled at 22050 Hz.*--data.resample false"):
        read_audio(path, resample=False)
    with pytest.raises(DataError, match="shorter than one 25 ms frame"):
        KaldiFbank().fbank(torch.zeros(100))
    (tmp_path / "none" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folder .*cls holds no audio files"):
        AudioData(root=str(tmp_path / "none"))
    with pytest.raises(DataError, match="holds no audio files"):
        AudioData(root=str(tmp_path / "none"), labelled=False).setup("fit")
