"""``softmask data synth``, ``eval`` and ``train``: datasets, the DAVIS metric and training."""

from __future__ import annotations

import argparse
from pathlib import Path

from softmask.cli.common import bar, positive_int


def _cmd_synth(args: argparse.Namespace) -> int:
    from softmask.data.synthetic import write_davis_dataset

    root = write_davis_dataset(
        args.out, args.videos, args.seed, args.height, args.width, args.frames, args.subset,
        progress=lambda it: bar(args, iterable=it, desc="videos", unit="video"),
        video_files=args.mp4,
    )
    print(f"wrote {args.videos} videos (seeds {args.seed}..{args.seed + args.videos - 1}) to "
          f"{root} (DAVIS layout, subset {args.subset!r})")
    return 0


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets")
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True
    s = data_sub.add_parser("synth", help="generate synthetic VOS videos in the DAVIS layout")
    s.add_argument("--out", required=True, help="DAVIS root to write (created or extended)")
    s.add_argument("--videos", type=positive_int, required=True, help="number of videos")
    s.add_argument("--seed", type=int, required=True, help="seed of the first video (then +1 ...)")
    s.add_argument("--height", type=positive_int, default=240)
    s.add_argument("--width", type=positive_int, default=432)
    s.add_argument("--frames", type=positive_int, default=24)
    s.add_argument("--subset", default="val", help="ImageSets/2017/<subset>.txt to list them in")
    s.add_argument("--mp4", action="store_true",
                   help="also write each video as videos/<name>.mp4 (H.264, 24 fps)")
    s.set_defaults(handler=_cmd_synth)


def _cmd_eval(args: argparse.Namespace) -> int:
    from softmask.eval.davis import evaluate_davis, format_table, write_csv

    if args.model:
        from softmask.eval.davis_run import segment_davis
        from softmask.runtime.factory import resolve_model

        model = resolve_model(args.model)
        segment_davis(model, args.davis_root, args.results, args.subset,
                      progress=lambda it: bar(args, iterable=it, desc="segmenting", unit="seq"))
    results = evaluate_davis(args.davis_root, args.results, args.subset,
                             progress=lambda it: bar(args, iterable=it, desc="sequences",
                                                      unit="seq"))
    print(format_table(results))
    csv_path = Path(args.csv) if args.csv else Path(args.results) / "global_results-val.csv"
    main_csv, per_object = write_csv(results, csv_path)
    print(f"wrote {main_csv} and {per_object}")
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="DAVIS 2017 J&F of a results folder (semi-supervised)")
    p.add_argument("--davis-root", required=True, help="folder with Annotations/480p, ImageSets")
    p.add_argument("--results", required=True, help="folder with <sequence>/<frame>.png")
    p.add_argument("--subset", default="val")
    p.add_argument("--csv", help="global CSV path (default: <results>/global_results-val.csv)")
    p.add_argument("--model", help="first segment every sequence into --results with this model "
                                   "('tiny' = the bundled one, or a checkpoint path), from its "
                                   "first frame's annotation")
    p.set_defaults(handler=_cmd_eval)


def _cmd_train(args: argparse.Namespace) -> int:
    from softmask.train import TrainConfig, train

    config = TrainConfig(
        out_dir=args.out, model=args.model, supervision=args.supervision, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        height=args.height, width=args.width,
        videos=args.videos, static_fraction=args.static_fraction,
        checkpoint_every=args.checkpoint_every, seed=args.seed, threads=args.threads,
        init_from=args.init_from,
    )
    with bar(args, total=config.steps, desc="train", unit="step") as train_bar:
        def progress(step: int, steps: int, record: dict) -> None:
            train_bar.n = step
            train_bar.set_postfix(loss=f"{record['loss']:.3f}")
            train_bar.refresh()

        final = train(config, resume=not args.restart, progress=progress,
                      pool_progress=lambda it: bar(args, iterable=it, desc="training videos",
                                                    unit="video", leave=False))
    print(f"wrote {final}")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on synthetic videos (HODOR's cyclic "
                                     "weak supervision); resumable")
    p.add_argument("--out", required=True, help="run folder (checkpoints; resumed if present)")
    p.add_argument("--model", default="tiny", help="model preset (default tiny)")
    p.add_argument("--supervision", choices=("weak", "full"), default="weak",
                   help="weak: only the reference frame's annotation (cyclic); full: every frame")
    p.add_argument("--steps", type=positive_int, default=2000)
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: decay to 2%% of --lr over --steps")
    p.add_argument("--height", type=positive_int, default=128)
    p.add_argument("--width", type=positive_int, default=224)
    p.add_argument("--videos", type=positive_int, default=200, help="synthetic training videos")
    p.add_argument("--static-fraction", type=float, default=0.3,
                   help="share of static-image pseudo-video batches (fully supervised)")
    p.add_argument("--checkpoint-every", type=positive_int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--init-from", help="start from this checkpoint's weights")
    p.add_argument("--restart", action="store_true", help="ignore an existing latest.pth")
    p.set_defaults(handler=_cmd_train, torch_for="training")
