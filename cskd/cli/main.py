"""Command line: `cskd train | predict | analyze | sweep | reproduce | prepare | import | dashboard |
demo | models` (train's options: cskd.cli.train_options).

Every user mistake ends as one line on stderr (`cskd: error: ...`) and exit status 2. SIGTERM ends
any command through the normal way out (temporary files removed, locks released); during training
it first saves a checkpoint within the epoch (see cskd.training.trainer).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from cskd.analysis.calibration import N_BINS
from cskd.cli.launch_options import add_launch_options, launch_fields
from cskd.cli.train_options import (
    SWEEP_OVERRIDES,
    add_sweep_overrides,
    add_train_options,
    given_options,
    nonempty_path,
    with_default,
)
from cskd.config import CLASS_WISE, METHODS, PRECISIONS, PRESETS, PROTOCOLS, TrainConfig, resolve
from cskd.errors import UserError
from cskd.experiments.demo import DEMO_EPOCHS, DEMO_PER_CLASS, DEMO_SEEDS
from cskd.experiments.plans import ASSUMED_TFLOPS
from cskd.runfolder.layout import DEFAULT_SPLIT, SPLITS
from cskd.runfolder.run_names import DEFAULT_RUNS_ROOT, NAME_PATTERN, REPRODUCE_RUNS_ROOT, SWEEP_RUNS_ROOT, run_name


def cmd_train(args) -> int:
    from cskd.training.distributed import close_world
    from cskd.training.trainer import run_training

    given = given_options(args)
    # Resuming --out, the run's saved config is all there is: the options given are compared with
    # it and merged once (cskd.training.session.resumed_config). Otherwise the command line's config
    # names the folder, is compared with the run there (--resume auto) or starts a new run.
    cfg = None if args.resume is True and "out" in given else resolve(given, args.preset)
    try:
        run_training(cfg, resume=args.resume, overwrite=args.overwrite, progress=args.progress, explicit=given)
    finally:
        close_world()
    return 0


def _table_name(text: str) -> str:
    from cskd.experiments.plans import TABLES

    if text not in TABLES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(TABLES)})")
    return text


def _launch(args):
    """The launcher of --launcher/--parallel (cskd.experiments.slurm, imported only here), None for
    one run after another in this process; with --status, one that reads the runs' states."""
    fields = launch_fields(args)
    if fields is None and not args.status:
        return None
    from cskd.experiments.slurm import Launch

    return Launch(**(fields or {}))


def cmd_reproduce(args) -> int:
    from cskd.experiments.reproduce import reproduce

    reproduce(args.table, datasets=args.datasets, seeds=args.seeds, protocol=args.protocol, scale=args.scale,
              runs_root=args.runs, out=args.out, data_root=args.data_root, dry_run=args.dry_run,
              nproc_per_node=args.nproc_per_node, tflops=args.tflops, epochs=args.epochs, progress=args.progress,
              launch=_launch(args), status=args.status, precision=args.precision)
    return 0


def cmd_models(args) -> int:
    from cskd.models import describe_models

    if args.num_classes < 1:
        raise UserError(f"--num-classes must be a positive integer; got {args.num_classes}")
    rows = describe_models(num_classes=args.num_classes)
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  input  parameters ({args.num_classes} classes)  source")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['input_size']:>3} px  {r['params']:>14,}                 {r['source']}")
    return 0


def cmd_demo(args) -> int:
    from cskd.experiments.demo import run_demo

    return run_demo(runs_root=args.runs, seeds=args.seeds, epochs=args.epochs, per_class=args.per_class,
                    dashboard=args.dashboard)


def cmd_predict(args) -> int:
    from cskd.evaluation.predict import predict

    for run in args.runs:
        path = predict(run, split=args.split, checkpoint=args.checkpoint, force=args.force, progress=args.progress)
        print(f"{path}")
    return 0


def cmd_analyze(args) -> int:
    from cskd.evaluation.analyze import analyze

    metrics = analyze(args.runs, args.out, split=args.split, n_bins=args.bins, progress=args.progress)
    width = max(len(n) for n in metrics)
    print(f"{'run':<{width}}  top1_err  top5_err    ece     nll    R@1")
    for name, m in metrics.items():
        r1 = f"{100 * m['recall_at_1']:5.2f}%" if "recall_at_1" in m else "  n/a (no features)"
        print(f"{name:<{width}}  {100 * m['top1_error']:7.2f}%  {100 * m['top5_error']:7.2f}%  "
              f"{100 * m['ece']:5.2f}%  {m['nll']:.3f}  {r1}")
    print(f"wrote {args.out}/metrics.json, table.md/.csv/.tex and figures/ (PNG and PDF)")
    return 0


def cmd_sweep(args) -> int:
    from cskd.experiments.sweep import run_sweep

    overrides = given_options(args, SWEEP_OVERRIDES)
    run_sweep(presets=args.presets, methods=args.methods, seeds=args.seeds, temperatures=args.temperatures,
              lambdas=args.lambdas, overrides=overrides, runs_root=args.runs, report=args.out, progress=args.progress,
              nproc_per_node=args.nproc_per_node, launch=_launch(args), status=args.status)
    return 0


def cmd_dashboard(args) -> int:
    from cskd.cli.dashboard import launch

    return launch(args.runs, port=args.port, host=args.host)


class Parser(argparse.ArgumentParser):
    """argparse with the project's error form: one line, `cskd: error: ...`, exit status 2 (the
    usage block argparse prints by default buries the message)."""

    def error(self, message: str):
        help_cmd = self.prog if self.prog.startswith("cskd") else "cskd"
        self.exit(2, f"cskd: error: {message} (see `{help_cmd} --help`)\n")


def _shown(value) -> str:
    """An argparse default as the help shows it."""
    if isinstance(value, (list, tuple)):
        return " ".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _defaulted(parser, *names, help: str, **spec) -> None:
    """An option whose help ends with its argparse default, "(default: X)"."""
    parser.add_argument(*names, help=with_default(help, _shown(spec["default"])), **spec)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cskd", description="Class-wise self-knowledge distillation (CS-KD) toolkit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    presets = "\n".join(f"  {name:<26} " + ", ".join(f"{k}={v}" for k, v in fields.items())
                        for name, fields in PRESETS.items())
    t = sub.add_parser("train", help="train one run of any method",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=f"Train one run into {DEFAULT_RUNS_ROOT}/<run>/ (config.json, metrics.jsonl, "
                                   "last.pt, best.pt, summary.json). Under torchrun, every process trains a share "
                                   "of each batch.",
                       epilog="presets (every field can be overridden by its option):\n" + presets)
    add_train_options(t)
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="write RUN/predictions-<split>.npz (logits, features, labels, indices)")
    pr.add_argument("runs", nargs="+", metavar="RUN", type=nonempty_path, help="run folder(s)")
    pr.add_argument("--split", choices=SPLITS, default=DEFAULT_SPLIT)
    pr.add_argument("--checkpoint", choices=("best", "last"), default="best")
    pr.add_argument("--force", action="store_true", help="recompute even when the file is newer than the checkpoint")
    pr.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    pr.set_defaults(func=cmd_predict)

    an = sub.add_parser("analyze", help="metrics, seed-grouped tables and figures of one or more runs")
    an.add_argument("runs", nargs="+", metavar="RUN", type=nonempty_path,
                    help="run folders (same data set); predicted where needed")
    an.add_argument("--out", required=True, type=nonempty_path, help="output folder")
    an.add_argument("--split", choices=SPLITS, default=DEFAULT_SPLIT)
    an.add_argument("--bins", type=int, default=N_BINS,
                    help=f"equal-width confidence bins for ECE/MCE ({N_BINS}, as the paper)")
    an.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    an.set_defaults(func=cmd_analyze)

    sw = sub.add_parser("sweep", help="grid of presets x methods x (T, λ) x seeds, then mean ± std tables",
                        description=f"Runs are named as by cskd train, {NAME_PATTERN} (e.g. "
                                    f"{run_name(TrainConfig())}), under --runs; "
                                    "finished runs are skipped and interrupted ones resumed, so the same command "
                                    "continues a killed sweep.")
    _defaulted(sw, "--presets", nargs="+", default=["digits-small"], help="presets of the grid")
    _defaulted(sw, "--methods", nargs="+", default=["ce", "cskd"], help=f"any of: {', '.join(METHODS)}")
    _defaulted(sw, "--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the grid")
    _defaulted(sw, "--temperatures", "-T", nargs="+", type=float, default=[TrainConfig.temperature],
               help=f"T grid for {', '.join(CLASS_WISE)}")
    _defaulted(sw, "--lambdas", nargs="+", type=float, default=[TrainConfig.lambda_cls],
               help="λ_cls grid for the same methods")
    add_sweep_overrides(sw)
    _defaulted(sw, "--nproc-per-node", type=int, default=1,
               help="train each run with torchrun over this many local processes (GPUs)")
    _defaulted(sw, "--runs", default=SWEEP_RUNS_ROOT, type=nonempty_path, help="folder of the sweep's runs")
    sw.add_argument("--out", type=nonempty_path, help=with_default("report folder", "RUNS/report"))
    sw.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_launch_options(sw)
    sw.set_defaults(func=cmd_sweep)

    db = sub.add_parser("dashboard", help="browse runs in the Streamlit dashboard (never trains; computes "
                                          "predictions and the stats and t-SNE caches a page needs and saves them "
                                          "into the run's folder)")
    _defaulted(db, "--runs", default=DEFAULT_RUNS_ROOT, type=nonempty_path,
               help="runs folder; nothing outside it is read or written")
    _defaulted(db, "--port", type=int, default=8501, help="port to serve on")
    _defaulted(db, "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    db.set_defaults(func=cmd_dashboard)

    d = sub.add_parser("demo", help="the main job: CE and CS-KD on the embedded digits data set (low-data regime, "
                                    f"{DEMO_SEEDS} seeds each), then the comparison")
    _defaulted(d, "--runs", default=DEFAULT_RUNS_ROOT, type=nonempty_path,
               help="runs folder (the demo's runs go to RUNS/demo)")
    _defaulted(d, "--seeds", type=int, default=DEMO_SEEDS, help="seeds per method")
    d.add_argument("--epochs", type=int, default=None, help=with_default("epochs per run", str(DEMO_EPOCHS)))
    d.add_argument("--per-class", type=int, default=None,
                   help=with_default("training images per class", str(DEMO_PER_CLASS)))
    d.add_argument("--dashboard", action="store_true", help="start the dashboard on the demo runs at the end")
    d.set_defaults(func=cmd_demo)

    rp = sub.add_parser("reproduce", help="train what one of the paper's tables needs; ours beside the paper's",
                        description="Plan the runs of a table of the paper (presets x methods x seeds; the T x lambda "
                                    "grid for table7; the CS-KD DenseNet-121 teachers before Table 4's students), "
                                    "train what is missing (a killed reproduction continues with the same command), "
                                    "then write <table>.md/.csv/.tex with the paper's numbers beside ours "
                                    "(and our cells in <table>.json).")
    rp.add_argument("table", type=_table_name, metavar="TABLE", help="table1 ... table7, or fig4")
    rp.add_argument("--datasets", nargs="+", help="only these of the table's data sets (e.g. cifar100 cub200)")
    rp.add_argument("--seeds", nargs="+", type=int,
                    help=with_default("seeds", "0 1 2; one seed for table5 and table7, as the paper"))
    _defaulted(rp, "--protocol", choices=PROTOCOLS, default="authors",
               help="authors (the experiment the paper's numbers come from) or clean")
    _defaulted(rp, "--scale", choices=("full", "smoke"), default="full",
               help="smoke: the same plan on digits with a small CNN and 2 epochs (tests the path on a CPU; "
                    "its numbers mean nothing and are labelled so)")
    rp.add_argument("--dry-run", action="store_true", help="print the plan and the estimated GPU-hours; train nothing")
    rp.add_argument("--runs", type=nonempty_path,
                    help=with_default("runs folder", f"{REPRODUCE_RUNS_ROOT}; {REPRODUCE_RUNS_ROOT}-smoke for smoke "
                                                     f"runs"))
    rp.add_argument("--out", type=nonempty_path, help=with_default("tables folder", "RUNS/tables"))
    _defaulted(rp, "--data-root", type=nonempty_path, default=TrainConfig.data_root,
               help="folder holding the data sets")
    rp.add_argument("--epochs", type=int, help="override the presets' epochs (a shorter trial run)")
    _defaulted(rp, "--nproc-per-node", type=int, default=1, help="train each run with torchrun over N processes")
    rp.add_argument("--precision", choices=PRECISIONS,
                    help=with_default("arithmetic of every run (see cskd train --help)",
                                      "fp32 under --protocol authors, else auto"))
    rp.add_argument("--tflops", type=float,
                    help=with_default("assumed sustained TFLOP/s of one GPU for the --dry-run estimate",
                                      ", ".join(f"{v:g} for {k}" for k, v in ASSUMED_TFLOPS.items())))
    rp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_launch_options(rp)
    rp.set_defaults(func=cmd_reproduce)

    from cskd.data.prepare.command import add_arguments as prepare_arguments
    from cskd.data.prepare.command import cmd_prepare

    pp = sub.add_parser("prepare", help="a paper data set from its official archives into train/ and test/ folders",
                        description="Turn a data set's official archives (or the folder they were extracted to) "
                                    "into DATA_ROOT/NAME/train/<class>/ and test/<class>/ with the official split, "
                                    "checked against the official counts. Nothing is downloaded.")
    prepare_arguments(pp)
    pp.set_defaults(func=cmd_prepare)

    from cskd.evaluation.importer import add_arguments as import_arguments
    from cskd.evaluation.importer import cmd_import

    im = sub.add_parser("import", help="predictions of a model trained anywhere, as a run folder cskd can analyse",
                        description="Create (or add a split to) a run folder RUN_DIR from logits and labels of a "
                                    "model trained anywhere, so that cskd analyze and every dashboard page work on "
                                    "it. Temperature scaling needs validation logits: import a val split for it.")
    import_arguments(im)
    im.set_defaults(func=cmd_import)

    mo = sub.add_parser("models", help="every model with its input size, parameter count and origin")
    _defaulted(mo, "--num-classes", type=int, default=1000, help="classes of the head")
    mo.set_defaults(func=cmd_models)
    return p


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Terminated(SystemExit):
    """SIGTERM outside training: unwinds like any exit (temporary files removed, locks released)."""


def _terminate(signum, frame):
    raise Terminated(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (e.g. called from the dashboard): leave signals alone
        pass
    try:
        return args.func(args)
    except UserError as e:
        text = str(e)
        if "Original Traceback" in text:  # raised in a DataLoader worker: torch prepends the worker's traceback
            text = text.rstrip().splitlines()[-1].split("UserError: ", 1)[-1]
        status = getattr(e, "exit_status", 2)  # a preempted run: 128 + the signal, as the shell reports kills
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the error: rank 0 says it
            print(f"cskd: {'' if status != 2 else 'error: '}{_one_line(text)}", file=sys.stderr)
        return status
    except OSError as e:  # a path the user gave: not writable, not a folder, too long, a full disk, ...
        where = f": {e.filename}" if e.filename else ""
        print(f"cskd: error: {_one_line((e.strerror or str(e)) + where)}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cskd: interrupted; files being written were left in their previous version (a run continues from "
              "its last complete checkpoint with --resume, if it has one)", file=sys.stderr)
        return 130
    except Terminated as e:
        print("cskd: stopped by SIGTERM; files being written were left in their previous version", file=sys.stderr)
        return e.code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
