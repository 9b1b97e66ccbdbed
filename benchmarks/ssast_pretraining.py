"""Does MSPM pretraining help at small scale? SSAST-tiny (patch) fine-tuned from scratch vs from its own masked
pretraining on unlabelled clips, on the embedded spoken-word set (synthesised with eSpeak NG).

Per word, ``--test-per-word`` and ``--val-per-word`` clips are held out and ``--train-per-word`` clips keep their
label (a Speech Commands tree with ``testing_list.txt`` / ``validation_list.txt`` per training size, so every
fine-tuning run is tested on the same clips); the rest lose their label (a flat folder for pretraining). The two
`zoo train` chain as a user would run them: MSPM pretraining (the quick-start pretraining recipe: the official tiny
models' Adam, lr 5e-4, wd 5e-7, betas 0.95/0.999), then fine-tuning at equal steps from scratch and with
``--model.pretrained runs:/<run>/pretrained/model.safetensors``.

    PYTHONPATH=. python -m benchmarks.ssast_pretraining   # 21 min of pretraining + 12 fine-tunings: 35 min, 2 cores

(Timings and results recorded before 2026-12-07 are on the earlier 25-voice set of 1,000 clips; the set now has 240
takes per word, each its own voice, so more clips are unlabelled.)
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.data.audio import AUDIO_EXTENSIONS, spoken_words

FRAMES, MASKED = 96, 37  # 96 frames x 128 bins: 6 x 8 = 48 patches of 16x16, 37 masked (the paper's 78 %)
PRETRAIN_EPOCHS = 120
PATCH_MODEL = '{"input_tdim": 96, "fstride": 16, "tstride": 16}'


def split_words(root: Path, out: Path, train_sizes: list[int], val: int, test: int, seed: int,
                extra: Path | None = None) -> int:
    """Split each word's clips (shuffled with ``seed``) into ``test`` and ``val`` clips, ``max(train_sizes)`` training
    clips and the unlabelled rest. Each training size k gets a Speech Commands tree out/labelled_<k>/ (word folders
    holding the first k training clips plus the shared val and test clips, listed in ``validation_list.txt`` and
    ``testing_list.txt``), so every fine-tuning run is tested on the same clips; the rest and every clip of ``extra``
    (other takes of the words) go to the flat folder out/unlabelled/. Returns the number of unlabelled clips."""
    rng, unlabelled = random.Random(seed), 0
    (out / "unlabelled").mkdir(parents=True, exist_ok=True)
    for clip in sorted(extra.rglob("*.wav")) if extra else ():
        (out / "unlabelled" / f"extra_{clip.parent.name}_{clip.name}").symlink_to(clip)
        unlabelled += 1
    lists: dict[str, list[str]] = {"testing_list.txt": [], "validation_list.txt": []}
    chosen: dict[str, list[Path]] = {}
    for word in sorted(p for p in root.iterdir() if p.is_dir()):
        clips = sorted(p for p in word.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        if len(clips) < test + val + max(train_sizes) + 1:
            raise SystemExit(f"{word} has {len(clips)} clips, fewer than test + val + train + 1")
        rng.shuffle(clips)
        lists["testing_list.txt"] += [f"{word.name}/{c.name}" for c in clips[:test]]
        lists["validation_list.txt"] += [f"{word.name}/{c.name}" for c in clips[test:test + val]]
        chosen[word.name] = clips
        for clip in clips[test + val + max(train_sizes):]:
            (out / "unlabelled" / f"{word.name}_{clip.name}").symlink_to(clip)
            unlabelled += 1
    for k in train_sizes:
        tree = out / f"labelled_{k}"
        for word, clips in chosen.items():
            (tree / word).mkdir(parents=True)
            for clip in clips[:test + val + k]:
                (tree / word / clip.name).symlink_to(clip)
        for name, lines in lists.items():
            (tree / name).write_text("\n".join(lines) + "\n")
    return unlabelled


def zoo_train(folder: Path, *args: str) -> tuple[str, float]:
    """Run `zoo train` in ``folder``; returns its output and wall time."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "train", *args, "--trainer.enable_progress_bar", "false"],
                          cwd=folder, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    if done.returncode:
        raise SystemExit(f"zoo train {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, time.monotonic() - started


def metric(output: str, name: str) -> float:
    return float(re.findall(rf"{re.escape(name)} ([0-9.]+)", output)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-word", type=int, nargs="+", default=[8, 24],
                        help="labelled training clips per word; each size is fine-tuned from scratch and from the "
                             "pretraining, on the same validation and test clips")
    parser.add_argument("--val-per-word", type=int, default=6)
    parser.add_argument("--test-per-word", type=int, default=10)
    parser.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS)
    parser.add_argument("--finetune-epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=2.5e-4, help="fine-tuning AdamW lr (official Speech Commands)")
    parser.add_argument("--pretrain-lr", type=float, default=5e-4, help="MSPM Adam lr (the official tiny models')")
    parser.add_argument("--strides", type=int, nargs="+", default=[16],
                        help="fine-tuning patch strides to compare at (16: the quick start's and the pretraining's; "
                             "10: the paper's fine-tuning stride)")
    parser.add_argument("--extra-takes", type=int, default=0,
                        help="also synthesise this many unlabelled takes of each word (other voices and "
                             "augmentation: the spoken-word set of seed 1)")
    parser.add_argument("--workdir", type=Path, help="keep the clips and the MLflow runs here (default: a temporary "
                        "folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the pretraining")
    parser.add_argument("--finetune-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="each fine-tuning (from scratch and from the pretraining) runs once per seed: head "
                             "initialisation and batch order")
    parser.add_argument("--pretraining-run", help="reuse this pretraining run of --workdir (and its split) instead "
                        "of pretraining again")
    args = parser.parse_args()
    if args.pretraining_run and not args.workdir:
        parser.error("--pretraining-run needs the --workdir that holds it")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        run_id = args.pretraining_run or pretrain(work, args)
        results: dict[tuple[int, int, str], list[float]] = {}
        for size, stride, seed, (start, extra) in itertools.product(
                args.train_per_word, args.strides, args.finetune_seeds, (
                    ("from scratch", []),
                    ("from MSPM pretraining", ["--model.pretrained", f"runs:/{run_id}/pretrained/model.safetensors"]))):
            extra = [*extra, "--model.model_kwargs", f'{{"input_tdim": {FRAMES}, "fstride": {stride}, '
                                                     f'"tstride": {stride}}}']
            out, seconds = zoo_train(work, "audio/ssast_tiny_patch", "--data.root", str(work / f"labelled_{size}"),
                                     "--data.batch_size", "16", "--trainer.max_epochs", str(args.finetune_epochs),
                                     "--optimizer.lr", str(args.lr), "--seed_everything", str(seed), *extra)
            results.setdefault((size, stride, start), []).append(metric(out, "test/acc"))
            print(f"{size} clips/word, stride {stride}, seed {seed}, {start}: test/acc {metric(out, 'test/acc'):.4f}, "
                  f"test/loss {metric(out, 'test/loss'):.4f} ({seconds:.0f} s)", flush=True)
    print("\n| training clips per word | stride | fine-tuning | test acc per seed | mean |\n|---|---|---|---|---|")
    for (size, stride, start), accs in results.items():
        print(f"| {size} | {stride} | {start} | {' '.join(f'{a:.2f}' for a in accs)} | {statistics.mean(accs):.3f} |")


def pretrain(work: Path, args: argparse.Namespace) -> str:
    """Split the words into work/ and run the MSPM pretraining there; returns its MLflow run id."""
    extra = spoken_words(work / "extra_takes", args.extra_takes, seed=1) if args.extra_takes else None
    n_unlabelled = split_words(spoken_words(), work, args.train_per_word, args.val_per_word, args.test_per_word,
                               args.seed, extra)
    print(f"per word: {args.test_per_word} test, {args.val_per_word} val, {args.train_per_word} train clips; "
          f"{n_unlabelled} unlabelled clips", flush=True)
    out, seconds = zoo_train(work, "audio/ssast_tiny_patch_pretrain", "--data.root", str(work / "unlabelled"),
                             "--data.num_frames", str(FRAMES), "--model.model_kwargs", PATCH_MODEL,
                             "--model.num_masked", str(MASKED), "--trainer.max_epochs", str(args.pretrain_epochs),
                             "--optimizer.lr", str(args.pretrain_lr), "--seed_everything", str(args.seed))
    (run_id,) = re.findall(r"MLflow run: +([0-9a-f]{32})", out)
    masked_acc = re.findall(r"val/masked_acc ([0-9.]+)", out)
    print(f"pretraining: {seconds:.0f} s, run {run_id}, val/masked_acc {masked_acc[-1] if masked_acc else '?'}",
          flush=True)
    return run_id


if __name__ == "__main__":
    main()
