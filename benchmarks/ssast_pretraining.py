"""Does MSPM pretraining help at small scale? SSAST-tiny (patch) fine-tuned from scratch vs from its own masked
pretraining on unlabelled clips, on the embedded spoken-word set (synthesised with eSpeak NG).

Per word, ``--labelled`` clips keep their label (a class-per-folder tree, split train/val/test by the data module)
and the rest lose it (a flat folder for pretraining). The two `zoo train` chain as a user would run them:
pretraining, then fine-tuning with ``--model.pretrained runs:/<run>/pretrained/model.safetensors``.

    PYTHONPATH=. python -m benchmarks.ssast_pretraining --labelled 40 --pretrain-epochs 12 --finetune-epochs 15 \
        --lr 0.00025
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.data.audio import AUDIO_EXTENSIONS, spoken_words

FRAMES, MASKED = 96, 37  # 96 frames x 128 bins: 6 x 8 = 48 patches of 16x16, 37 masked (the paper's 78 %)
PATCH_MODEL = '{"input_tdim": 96, "fstride": 16, "tstride": 16}'


def split_words(root: Path, out: Path, labelled: int, seed: int, extra: Path | None = None) -> tuple[int, int]:
    """Symlink ``labelled`` clips per word into out/labelled/<word>/ and the rest into out/unlabelled/, with
    every clip of ``extra`` (other takes of the words) unlabelled too."""
    rng, counts = random.Random(seed), [0, 0]
    for clip in sorted(extra.rglob("*.wav")) if extra else ():
        (out / "unlabelled").mkdir(parents=True, exist_ok=True)
        (out / "unlabelled" / f"extra_{clip.parent.name}_{clip.name}").symlink_to(clip)
        counts[1] += 1
    for word in sorted(p for p in root.iterdir() if p.is_dir()):
        clips = sorted(p for p in word.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        rng.shuffle(clips)
        for i, clip in enumerate(clips):
            target = out / "labelled" / word.name if i < labelled else out / "unlabelled"
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{word.name}_{clip.name}").symlink_to(clip)
            counts[i >= labelled] += 1
    return counts[0], counts[1]


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
    parser.add_argument("--labelled", type=int, default=40, help="labelled clips per word (the rest: unlabelled)")
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--finetune-epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=2.5e-4, help="fine-tuning AdamW lr (official Speech Commands)")
    parser.add_argument("--pretrain-lr", type=float, default=5e-4, help="MSPM AdamW lr (the quick-start recipe's)")
    parser.add_argument("--strides", type=int, nargs="+", default=[16],
                        help="fine-tuning patch strides to compare at (16: the quick start's and the pretraining's; "
                             "10: the paper's fine-tuning stride)")
    parser.add_argument("--extra-speeds", type=int, nargs="*", default=[],
                        help="also synthesise unlabelled takes of the words at these speeds (wpm) ...")
    parser.add_argument("--extra-pitches", type=int, nargs="*", default=[], help="... and these pitches (0-100)")
    parser.add_argument("--workdir", type=Path, help="keep the clips and the MLflow runs here (default: a temporary "
                        "folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if bool(args.extra_speeds) != bool(args.extra_pitches):
        parser.error("--extra-speeds and --extra-pitches go together (each take is one speed at one pitch)")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        extra = spoken_words(work / "extra_takes", args.extra_speeds, args.extra_pitches) if args.extra_speeds else None
        n_labelled, n_unlabelled = split_words(spoken_words(), work, args.labelled, args.seed, extra)
        print(f"{n_labelled} labelled clips, {n_unlabelled} unlabelled", flush=True)
        out, pretrain_s = zoo_train(work, "audio/ssast_tiny_patch_pretrain", "--data.root", str(work / "unlabelled"),
                                    "--data.num_frames", str(FRAMES), "--model.model_kwargs", PATCH_MODEL,
                                    "--model.num_masked", str(MASKED), "--trainer.max_epochs",
                                    str(args.pretrain_epochs), "--optimizer.lr", str(args.pretrain_lr))
        (run_id,) = re.findall(r"MLflow run: +([0-9a-f]{32})", out)
        print(f"pretraining: {pretrain_s:.0f} s, run {run_id}, "
              f"{' '.join(re.findall(r'val/masked_acc [0-9.]+', out)[-1:])}",
              flush=True)
        results = {}
        for stride, (name, extra) in itertools.product(args.strides, (
                ("from scratch", []),
                ("from MSPM pretraining", ["--model.pretrained", f"runs:/{run_id}/pretrained/model.safetensors"]))):
            name = f"stride {stride}, {name}"
            extra = [*extra, "--model.model_kwargs", f'{{"input_tdim": {FRAMES}, "fstride": {stride}, '
                                                     f'"tstride": {stride}}}']
            out, seconds = zoo_train(work, "audio/ssast_tiny_patch", "--data.root", str(work / "labelled"),
                                     "--data.val_fraction", "0.15", "--data.test_fraction", "0.25",
                                     "--data.batch_size", "16", "--trainer.max_epochs", str(args.finetune_epochs),
                                     "--optimizer.lr", str(args.lr), "--seed_everything", str(args.seed), *extra)
            results[name] = (metric(out, "test/acc"), metric(out, "test/loss"), seconds)
            print(f"{name}: test/acc {results[name][0]:.4f}, test/loss {results[name][1]:.4f} ({seconds:.0f} s)",
                  flush=True)
    print("\n| fine-tuning | test acc | test loss | time (s) |\n|---|---|---|---|")
    for name, (acc, loss, seconds) in results.items():
        print(f"| {name} | {acc:.4f} | {loss:.4f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
