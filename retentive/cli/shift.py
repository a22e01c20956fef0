"""``retentive shift --state DIR --data CHUNK``: does a new chunk differ from what the model has seen?

The reference is the state folder's replay memory (no extra storage). A scheduler acts on the exit
code: 0 no shift at ``--alpha``, 3 shift detected; 1 an error (bad data, state folder or model,
too few samples; nothing is written); 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

from retentive.cli.arguments import add_chunk, add_epilog, add_threads, positive_int

if TYPE_CHECKING:  # imported when a command runs (startup time)
    from torch import nn

    from retentive.shift.detectors import ShiftDetector, ShiftDetectorWithFeatureExtractor
    from retentive.shift.result import ShiftResult

SHIFT_EXIT_CODE = 3

EPILOG = """\
exit codes: 0 no shift detected (p-value >= --alpha); 3 shift detected (p-value < --alpha); 1 an
error (bad data, state folder or model, fewer samples than the test needs; one line on stderr,
nothing written); 2 bad usage of the command line.

features: with --config (the YAML the state was updated with) or --model, the covariate tests
(mmd, ks) compare the model's features: by default the input of the last nn.Linear the forward
pass calls (the penultimate layer), or the output of --layer. Without a model, or with
--raw-inputs, they compare the raw inputs. --detector labels compares class proportions: the
chunk's labels against the memory's, or with --predicted the model's predicted classes on both.

example, in a pipeline before each update:
  retentive shift --state state/day1 --data chunks/day2.npz --config configs/der.yaml --json shift.json
  if [ $? -eq 3 ]; then retentive update ...; fi
"""


def probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    add_epilog(parser, EPILOG)
    parser.add_argument(
        "--state", required=True, type=Path, metavar="DIR", help="the state folder; its replay memory is the reference"
    )
    add_chunk(parser, "the new chunk")
    parser.add_argument(
        "--detector",
        choices=("mmd", "ks", "labels"),
        default="mmd",
        help="mmd: kernel MMD, permutation test; ks: per-feature Kolmogorov-Smirnov, Bonferroni; "
        "labels: chi-square test of class proportions [mmd]",
    )
    parser.add_argument("--alpha", type=probability, default=0.05, help="significance level [0.05]")
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="CONFIG",
        help="the update's YAML config: its model, with the state's weights, gives the features",
    )
    model.add_argument(
        "--model",
        default=None,
        metavar="MODULE:FUNCTION",
        help="a function building the model the state was trained with (instead of --config)",
    )
    parser.add_argument(
        "--layer", default=None, metavar="NAME", help="take features at this layer's output [the penultimate]"
    )
    parser.add_argument("--raw-inputs", action="store_true", help="test the raw inputs even when a model is given")
    parser.add_argument("--predicted", action="store_true", help="labels: compare the model's predicted classes")
    parser.add_argument(
        "--num-permutations", type=positive_int, default=1000, metavar="B", help="mmd permutations [1000]"
    )
    parser.add_argument(
        "--max-samples",
        type=positive_int,
        default=2000,
        metavar="N",
        help="seeded uniform subsample of each side for mmd, whose kernel matrix is N x N [2000]",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the subsample and the permutations [0]")
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, metavar="N", help="feature extraction batch [256]"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result as JSON")
    parser.add_argument(
        "--tb-logs",
        type=Path,
        default=Path("tb_logs"),
        metavar="DIR",
        help="TensorBoard folder; the result is logged under DIR/shift [tb_logs]",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="do not log to TensorBoard")
    add_threads(parser)


def outputs(args: argparse.Namespace) -> list[Path]:
    """The folders a run may create; a failed run removes those it left empty."""
    return [*([] if args.no_tensorboard else [args.tb_logs]), *([args.json.parent] if args.json else [])]


def _model(args: argparse.Namespace) -> nn.Module | None:
    """The user's model with the state's weights loaded, or None."""
    from retentive.state.loading import load_model

    if args.config is not None:
        from retentive.cli.config import load_config
        from retentive.cli.config.building import instantiate

        config = load_config(args.config, [])
        model = instantiate(config.model, "model", config.source)
    elif args.model is not None:
        from retentive.cli.evaluate import _factory

        model = _factory(args.model)()
    else:
        return None
    return load_model(model, args.state)


def _log(args: argparse.Namespace, result: ShiftResult, step: int) -> None:
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(args.tb_logs), name="shift")
    prefix = f"shift/{result.detector}"
    logger.log_metrics(
        {
            f"{prefix}/score": result.score,
            f"{prefix}/p_value": result.p_value,
            f"{prefix}/statistic": result.statistic,
            f"{prefix}/detected": float(result.shift),
        },
        step=step,
    )
    logger.finalize("success")


def run(args: argparse.Namespace) -> int:
    import torch

    from retentive.cli.update import check_fits
    from retentive.data.files import read_chunk
    from retentive.errors import DataError
    from retentive.shift import build_detector, memory_reference
    from retentive.state import read_manifest

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.predicted and args.detector != "labels":
        raise ValueError(f"--predicted applies to --detector labels, not {args.detector}")
    manifest = read_manifest(args.state)
    reference = memory_reference(args.state)  # a StateError for an empty or missing memory
    chunk = read_chunk(args.data)
    model = _model(args)
    if model is None and (args.predicted or args.layer):
        raise ValueError("--predicted and --layer need the model: pass --config or --model")
    if model is not None:
        check_fits(model, chunk, args.data)
    options = {"alpha": args.alpha, "seed": args.seed, "batch_size": args.batch_size}
    if args.detector == "mmd":
        options.update(num_permutations=args.num_permutations, max_samples=args.max_samples)
    detector = build_detector(args.detector, model, args.layer, args.raw_inputs, args.predicted, **options)
    detector.fit(reference)
    try:
        result = detector.test(chunk)
    except DataError as error:
        raise DataError(f"{args.data}: {error}") from error
    print(f"retentive shift: {result.summary()}", flush=True)
    record = {
        **result.to_dict(),
        "state": str(args.state),
        "data": str(args.data),
        "updates_done": manifest.get("updates_done"),
        "features": _features(args, model, detector),
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if not args.no_tensorboard:
        _log(args, result, int(manifest.get("updates_done") or 0))
    return SHIFT_EXIT_CODE if result.shift else 0


def _features(args: argparse.Namespace, model: nn.Module | None, detector: ShiftDetector) -> str:
    if args.detector == "labels":
        return "predicted classes" if args.predicted else "labels"
    if model is None or args.raw_inputs:
        return "raw inputs"
    extractor = cast("ShiftDetectorWithFeatureExtractor", detector)._feature_extractor  # a model's features
    return f"layer {getattr(extractor, 'layer', None)!r}" + ("" if args.layer else " (penultimate)")
