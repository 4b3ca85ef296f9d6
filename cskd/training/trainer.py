"""A run of any method: SGD with step decay over the epochs, per-epoch selection, checkpoints, on
one process or several (torchrun). One epoch (step, running sums, stop signals, evaluation) is
cskd.training.epoch's; how a run starts or resumes is cskd.training.session's; what a step computes
is cskd.method.objectives'; every file is written through cskd.runfolder, by rank 0 only.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from cskd.config import TrainConfig
from cskd.data.bundle import DataBundle
from cskd.data.loaders import EVAL_BATCH_SIZE, BatchSpec, eval_batches, train_batches
from cskd.data.placement import bundle_for
from cskd.errors import UserError
from cskd.method.objectives import Method, StepContext, method_for
from cskd.method.sampler import share
from cskd.runfolder.checkpoints import (
    LAST_FIELDS,
    load_model_state,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cskd.runfolder.config_file import read_record, write_config
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import BEST, CONFIG, LAST
from cskd.runfolder.training_log import read_metrics, write_metrics, write_summary
from cskd.training.device import apply_precision, compile_available, pick_device, precision_used
from cskd.training.distributed import (
    SINGLE,
    World,
    agree_or_raise,
    broadcast,
    device_of,
    init_world,
    on_rank0,
    same_buffers,
    wrap,
)
from cskd.training.epoch import (
    Diverged,
    EpochContext,
    EpochState,
    StopSignals,
    evaluate,
    load_optimizer_state,
    lr_at,
    train_epoch,
)
from cskd.training.host_memory import keep_freed_host_memory
from cskd.training.machine import set_threads
from cskd.training.run_meta import config_meta
from cskd.training.run_model import TrainingModel, build_run_model, load_teacher
from cskd.training.session import Start, choose_folder, open_run


class Preempted(UserError):
    """SIGTERM or SIGUSR1 arrived: the run saved a checkpoint within the epoch and stopped."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + signum


@dataclass
class Setup:
    model: torch.nn.Module  # the model whose state_dict is checkpointed (the zoo's network)
    optimizer: torch.optim.Optimizer
    method: Method
    source: object  # a training source (cskd.data.loaders): .epoch(e, start_step) -> Batches, .sampler, len()
    ctx: StepContext  # ctx.model: the gradient path (compiled and/or DDP-wrapped); ctx.fixed: without DDP
    evaluator: torch.nn.Module  # what evaluation calls: the model, compiled when --compile


@dataclass(frozen=True)
class RunContext:
    """One process's fixed view of the run it trains: `folder` (rank 0 writes every file), `cfg`
    (the run's settings), `bundle` (its data), `setup` (model, optimizer, method, source:
    build_training), `world` (the processes; SINGLE for one), `device` (this process's), `bf16`
    (steps and evaluation under bf16 autocast)."""

    folder: RunFolder
    cfg: TrainConfig
    bundle: DataBundle
    setup: Setup
    world: World
    device: torch.device
    bf16: bool


@dataclass(frozen=True)
class FitStart:
    """Where the epochs start: `epoch` the first (0-based) to train, `best` the selection so far
    ({"acc": fraction, "epoch": 1-based; -1 for none}), `state` that epoch's running sums (steps
    already done after a mid-epoch checkpoint, else fresh)."""

    epoch: int
    best: dict
    state: EpochState


def build_training(cfg: TrainConfig, bundle: DataBundle, device: torch.device, world: World = SINGLE) -> Setup:
    """Model (seeded init), optimizer, method and data source of a run — everything but the folder."""
    if cfg.compile and not compile_available(device):
        needs = "the triton package" if device.type == "cuda" else "a C++ compiler on PATH ($CXX, else g++)"
        raise UserError(f"--compile on {device.type} needs {needs}; install it or leave out --compile")
    if cfg.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm does not run on the CPU); leave it out")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    net = build_run_model(cfg, bundle)
    if cfg.sync_bn and world.distributed:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net = net.to(device)
    teacher = load_teacher(cfg, bundle=bundle, device=device)
    if device.type == "cuda":
        # Batch shapes repeat every step: let cuDNN time its convolution algorithms once per shape.
        torch.backends.cudnn.benchmark = True
    else:
        keep_freed_host_memory()  # activations live in host memory: stop re-faulting them every step
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher = teacher.to(memory_format=torch.channels_last)
    # fused SGD on CUDA: one kernel for the whole parameter update
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, **opt_kw)
    method = method_for(cfg)
    spec = BatchSpec(batch_size=cfg.batch_size, seed=cfg.seed, partner=method.partner, clean=method.clean,
                     allow_self_pair=cfg.allow_self_pair, rank=world.rank, world=world.size)
    source = train_batches(bundle, spec, device=device, loader=cfg.loader, workers=cfg.workers,
                           channels_last=channels_last)
    trainer = TrainingModel(net)
    # compile, then wrap: the partner's no-grad forward and evaluation call the compiled module
    # without the DDP wrapper (a no-grad forward through DDP would broadcast rank 0's buffers).
    fixed = torch.compile(trainer) if cfg.compile else trainer
    ctx = StepContext(cfg, wrap(fixed, world, device), fixed=fixed, teacher=teacher, num_classes=bundle.num_classes)
    # Evaluation gets a compiled module of its own: eval mode, no grad and the evaluation batch sizes
    # would otherwise add their graphs to the training module's cache (and its recompile limit).
    evaluator = torch.compile(net) if cfg.compile else net
    return Setup(net, optimizer, method, source, ctx, evaluator)


def run_training(cfg: TrainConfig | None, *, resume=False, overwrite: bool = False,
                 stop_after_epoch: int | None = None, progress: bool | None = None,
                 explicit: dict | None = None) -> dict:
    """Train one run and return its summary. `resume`: False, True or "auto" (see cskd.training.session).
    `stop_after_epoch` ends early (tests simulate a kill). `explicit`: the options given on the
    command line (a resumed run refuses those that would change what it computes). `cfg` may be
    None with resume=True and explicit["out"]: the run continues with its saved config.

    Under torchrun every process calls this; rank 0 decides the folder and writes every file."""
    device = cfg.device if cfg is not None else (explicit or {}).get("device", TrainConfig.device)
    world = init_world(device)
    with contextlib.ExitStack() as held:
        start, error = None, None
        if world.main:
            folder = None
            try:
                folder = choose_folder(cfg, resume, explicit)
                held.enter_context(folder.writing())
                start = open_run(folder, cfg, resume=resume, overwrite=overwrite, explicit=explicit)
            except UserError as e:
                error = e
                if folder is not None and folder.path.is_dir():
                    folder.discard_if_empty()  # refused before writing anything: leave no folder
        agree_or_raise(error, world)
        start = _shared_start(start, world)
        if start.finished is not None:
            if world.main:
                print(f"run {start.folder}: finished earlier (best epoch {start.finished.get('best_epoch')}); "
                      f"nothing to do")
            return start.finished
        return _train(start, world, stop_after_epoch=stop_after_epoch, progress=progress)


def _shared_start(start: Start | None, world: World) -> Start:
    """Every rank's copy of rank 0's decision (the others read last.pt themselves)."""
    if not world.distributed:
        return start
    plan = broadcast(None if start is None else (str(start.folder.path), start.cfg.to_dict(),
                                                 start.checkpoint is not None, start.finished), world)
    if world.main:
        return start
    path, cfg, resumed, finished = plan
    folder = RunFolder(path)
    ckpt = read_checkpoint(folder, "last", fields=LAST_FIELDS) if resumed else None  # rank 0 writes no checkpoint yet
    return Start(folder, TrainConfig.from_dict(cfg), checkpoint=ckpt, finished=finished)


def _train(start: Start, world: World, *, stop_after_epoch, progress) -> dict:
    folder = start.folder
    try:
        if start.cfg.batch_size % world.size:  # the config it trains with: a resumed run's own
            raise UserError(f"--batch-size {start.cfg.batch_size} (the global batch) is not divisible by the "
                            f"{world.size} processes; choose a multiple of {world.size}")
        return _train_in(start, world, stop_after_epoch=stop_after_epoch, progress=progress)
    except UserError:
        if world.main and start.checkpoint is None and folder.file(CONFIG).is_file() \
                and not folder.file(LAST).is_file() and _is_this_run(folder, start):
            # nothing to resume: leave no half-made run behind, so the same command can be run again
            folder.clear()
        raise
    finally:
        if world.main:
            folder.discard_if_empty()  # a run refused before it wrote anything leaves no folder


def _is_this_run(folder: RunFolder, start: Start) -> bool:
    try:
        return read_record(folder)["meta"].get("run_id") == start.run_id
    except UserError:
        return False


def _train_in(start: Start, world: World, *, stop_after_epoch, progress) -> dict:
    folder, cfg, ckpt = start.folder, start.cfg, start.checkpoint
    device = device_of(world, pick_device(cfg.device))
    set_threads(cfg, device)
    bf16 = apply_precision(cfg, device) == "bf16"  # refused here if the device cannot compute it
    bundle = bundle_for(cfg)  # every split checked before anything is written
    setup = build_training(cfg, bundle, device, world)
    select_split = bundle.val if cfg.select_on == "val" else bundle.test
    if select_split is None:
        raise UserError("no validation split is held out (--val-fraction 0 or --protocol authors); "
                        "select on test (--select-on test) or hold out a fraction in (0, 1)")
    start_epoch, best, state = 0, {"acc": -1.0, "epoch": -1}, EpochState.fresh(device)
    if ckpt is not None:
        _restore(setup, ckpt, folder, device)
        start_epoch, best = ckpt["epoch"] + 1, dict(ckpt["best"])
        state.step = ckpt["step"]
        if ckpt["step"] and world.main:  # read_checkpoint checked `partial` whenever step > 0
            state.unpack(ckpt["partial"])
    run = RunContext(folder, cfg, bundle, setup, world, device, bf16)
    on_rank0(world, _write_first_files, start, run)
    print_main = print if world.main else (lambda *a, **k: None)
    print_main(f"run {folder}: {cfg.method} on {cfg.dataset} ({len(bundle.train)} train / "
               f"{len(bundle.val) if bundle.val is not None else 0} val / {len(bundle.test)} test), {cfg.model}, "
               f"{device} {precision_used(cfg, device)}{f', {world.size} processes' if world.distributed else ''}, "
               f"epochs {start_epoch + 1}-{cfg.epochs}" + (f" from step {state.step + 1}" if state.step else ""))
    t_run = time.time()
    best = _fit(run, select_split, FitStart(start_epoch, best, state), stop_after_epoch=stop_after_epoch,
                progress=progress)
    finished = stop_after_epoch is None or stop_after_epoch >= cfg.epochs - 1
    summary = {"finished": finished, "best_epoch": best["epoch"], "best_acc": best["acc"],
               "selected_on": cfg.select_on, "train_seconds": round(time.time() - t_run, 2)}
    if finished:
        summary.update(_test_best(run))
        on_rank0(world, write_summary, folder, summary)
        print_main(f"done: best epoch {best['epoch']} ({cfg.select_on} acc {100 * best['acc']:.2f}%), "
                   f"test acc {100 * summary['test_acc']:.2f}%  -> {folder}")
    return {"run": str(folder), **summary}


def _restore(setup: Setup, ckpt: dict, folder: RunFolder, device) -> None:
    load_model_state(setup.model, ckpt["model"], folder.file(LAST))
    try:
        load_optimizer_state(setup.optimizer, ckpt["optimizer"])
        setup.source.sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise UserError(f"{folder.file(LAST)} holds a damaged training state ({type(e).__name__}); "
                        f"start the run again with --overwrite") from None


def _write_first_files(start: Start, run: RunContext) -> None:
    """A new run: config.json and an empty metrics log (after removing cskd's files of a replaced
    run). A resumed run: config.json again when it was lost, and the log without the records of
    epochs after the checkpoint (written before a kill), so none repeats."""
    folder, cfg, ckpt = start.folder, start.cfg, start.checkpoint
    meta = config_meta(run.cfg, run.bundle, run.device, precision_used(run.cfg, run.device), run.world.size)
    if ckpt is None:
        folder.clear()  # only cskd's own files of an earlier run here (--overwrite, or resume auto)
        start.run_id = write_config(folder, cfg.to_dict(), meta)
        write_metrics(folder, [])
        return
    if start.repair_config:
        write_config(folder, cfg.to_dict(), {**meta, "run_id": ckpt.get("run_id")})
    write_metrics(folder, [r for r in read_metrics(folder) if r["epoch"] <= ckpt["epoch"] + 1])


def _fit(run: RunContext, select_split, start: FitStart, *, stop_after_epoch: int | None,
         progress: bool | None) -> dict:
    """Epochs start.epoch..stop_after_epoch (0-based; None: all) selecting on `select_split`; returns the best
    {"acc", "epoch"}. Rank 0 writes best.pt, the epoch's record and last.pt after every epoch, and last.pt within
    the epoch on a stop signal. `progress`: show the bar (None: on rank 0 where stderr is a terminal)."""
    setup, folder, cfg, world, device, bf16 = run.setup, run.folder, run.cfg, run.world, run.device, run.bf16
    best, state = start.best, start.state
    selection = rank_share(select_split, world)
    with StopSignals() as stop:
        training = EpochContext(setup.ctx, setup.method, setup.optimizer, setup.source, device, bf16, world, stop)
        for epoch in range(start.epoch, cfg.epochs):
            if stop_after_epoch is not None and epoch > stop_after_epoch:
                break
            for group in setup.optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch)
            t0 = time.time()
            with tqdm(total=len(setup.source), initial=state.step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                      leave=False, disable=(not progress or not world.main) if progress is not None else
                      (None if world.main else True), file=sys.stderr) as bar:
                try:
                    stopped = train_epoch(training, epoch, state=state, bar=bar)
                except Diverged as e:
                    when = f"epoch {epoch}" if epoch > 0 else "within epoch 1"  # epoch 1: a stop signal's
                    kept = (f"the last good checkpoint ({when}) is kept in {folder.file(LAST)}"
                            if folder.file(LAST).is_file() else "nothing was kept")
                    raise Diverged(f"{e}; {kept}; lower --lr or check the data") from None
            if stopped:
                _preempt(run, epoch, best, state, stop.signum)
            same_buffers(setup.model, world)
            batches = eval_batches(run.bundle, selection, batch_size=EVAL_BATCH_SIZE, device=device,
                                   workers=cfg.workers)
            val = evaluate(setup.evaluator, batches, device=device, bf16=bf16, world=world)
            total, ce, reg, correct = state.sums.tolist()
            seen = max(state.seen, 1)
            record = {"epoch": epoch + 1, "lr": lr_at(cfg, epoch), "train_loss": total / seen, "train_ce": ce / seen,
                      "train_reg": reg / seen, "train_acc": correct / seen,
                      f"{cfg.select_on}_acc": val["acc"], f"{cfg.select_on}_loss": val["loss"],
                      "seconds": round(time.time() - t0, 3)}
            state = EpochState.fresh(device)
            improved = val["acc"] > best["acc"]
            if improved:
                best = {"acc": val["acc"], "epoch": epoch + 1}
            on_rank0(world, _save_epoch, run, epoch, best, record, improved)
            if world.main:
                print(f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {record['train_loss']:.4f}  train acc "
                      f"{100 * record['train_acc']:.2f}%  {cfg.select_on} acc {100 * val['acc']:.2f}%  "
                      f"lr {record['lr']:.4g}  {record['seconds']:.1f}s")
            if stop.signum:  # a signal during the epoch's last steps: its checkpoint is written
                raise Preempted(f"stopped by {_signal_name(stop.signum)} after epoch {epoch + 1}; continue with "
                                f"`cskd train --out {folder} --resume`", stop.signum)
    return best


def rank_share(split, world: World):
    """This rank's strided share of an evaluation split (all of it for one process)."""
    if not world.distributed:
        return split
    return split.subset(share(torch.arange(len(split)), world.rank, world.size).numpy())


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _save_epoch(run: RunContext, epoch: int, best: dict, record: dict, improved: bool) -> None:
    """Order matters for a kill between writes: best.pt, then the epoch's record, then last.pt. A
    resume starts after last.pt's epoch, redoes a lost epoch and drops its orphan record."""
    setup, folder, cfg = run.setup, run.folder, run.cfg
    weights = {"model": setup.model.state_dict(), "config": cfg.to_dict(), "epoch": epoch, "best": best}
    if improved:
        save_checkpoint(folder, "best", weights)
    write_metrics(folder, [r for r in read_metrics(folder) if r["epoch"] <= epoch] + [record])
    save_checkpoint(folder, "last", {**weights, **_training_state(setup), "step": 0})


def _training_state(setup: Setup) -> dict:
    return {"optimizer": setup.optimizer.state_dict(), "sampler": setup.source.sampler.state_dict(),
            "rng": rng_state()}


def _preempt(run: RunContext, epoch: int, best: dict, state: EpochState, signum: int) -> None:
    """Write last.pt within `epoch` (after `state.step` steps) and stop with a one-line message."""
    setup, folder, cfg = run.setup, run.folder, run.cfg
    on_rank0(run.world, save_checkpoint, folder, "last", {
        "model": setup.model.state_dict(), "config": cfg.to_dict(), "epoch": epoch - 1, "best": best,
        **_training_state(setup), "step": state.step, "partial": state.packed()})
    raise Preempted(f"stopped by {_signal_name(signum)} at epoch {epoch + 1}, step {state.step}/{len(setup.source)}; "
                    f"a checkpoint was saved: continue with `cskd train --out {folder} --resume`", signum)


def _test_best(run: RunContext) -> dict:
    """The best checkpoint's test accuracy (fraction), mean cross-entropy and sample count."""
    folder, cfg, bundle, setup, device, world = run.folder, run.cfg, run.bundle, run.setup, run.device, run.world
    load_model_state(setup.model, read_checkpoint(folder, "best", map_location=device)["model"], folder.file(BEST))
    batches = eval_batches(bundle, rank_share(bundle.test, world), batch_size=EVAL_BATCH_SIZE, device=device,
                           workers=cfg.workers)
    result = evaluate(setup.model, batches, device=device, bf16=run.bf16, world=world)
    return {"test_acc": result["acc"], "test_loss": result["loss"], "test_n": result["n"]}
