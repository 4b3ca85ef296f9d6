"""The training loop: cross-entropy or CS-KD (Eq. 1), SGD with step decay, per-epoch validation.

No host synchronisation inside the step: loss/accuracy sums and a "first bad step" marker stay on
the device and are read once per `log_interval` steps and at the end of the epoch.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import __version__
from .checkpoint import LAST_FIELDS, append_metrics, load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state, write_json, write_metrics
from .config import TrainConfig
from .data import DataBundle, bundle_for
from .device import autocast, compile_available, pick_device, use_bf16
from .errors import UserError, short_reason
from .host_memory import keep_freed_host_memory
from .loaders import Batch, eval_batches, train_batches
from .methods import Context, Method, Step, adapt_model, load_teacher, method_for
from .sampler import epoch_generator
from .models import build_model
from .runs import choose_out_dir, clear_run, config_from_record, git_commit, holds_run, read_config, read_metrics


METHOD_SEED_OFFSET = 99_991


class Diverged(UserError):
    """The loss became NaN or infinite."""


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """lr for 0-based `epoch`: cfg.lr, divided by 10 at each milestone (fractions of cfg.epochs).

    With 200 epochs and milestones (0.5, 0.75): 0.1 for epochs 1-100, 0.01 for 101-150, 0.001 after
    (1-based), i.e. "divided by 10 after epochs 100 and 150" as in the paper. The authors' code
    adjusts the lr after each epoch, so its drops land one epoch later (0.1 for epochs 1-101).
    """
    drops = sum(epoch >= milestone(m, cfg.epochs) for m in cfg.lr_milestones)
    return cfg.lr * 0.1**drops


def milestone(fraction: float, epochs: int) -> int:
    """First 0-based epoch after a drop: ceil(fraction * epochs), at least 1 so epoch 0 keeps the base lr."""
    return max(1, math.ceil(fraction * epochs))


@torch.no_grad()
def evaluate(model, batches, *, device: torch.device, bf16: bool) -> dict:
    """Top-1 accuracy (fraction) and mean cross-entropy over an evaluation source."""
    model.eval()
    sums = torch.zeros(2, device=device, dtype=torch.float64)
    n = 0  # counted on the host: building it on the device would copy (and sync) every batch
    for x, y, _ in batches:
        with autocast(device, bf16):
            logits = model(x).float()
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                             (logits.argmax(1) == y).sum().double()])
        n += len(y)
    loss, correct = sums.tolist()
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1), "n": int(n)}


def train_step(ctx: Context, method: Method, optimizer, batch: Batch, *, device, bf16: bool) -> Step:
    """One optimisation step on `batch`; returns the method's Step (tensors on the device, no sync)."""
    if ctx.channels_last:
        batch = _to_channels_last(batch)
    with autocast(device, bf16):
        out = method.step(ctx, batch)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return out


def train_epoch(ctx: Context, method: Method, optimizer, source, epoch: int, *, device, bf16: bool, bar) -> dict:
    """One epoch. Returns means of loss, CE, the regulariser and the train accuracy (fractions)."""
    cfg = ctx.cfg
    ctx.model.train()
    # sums on the device: total loss, CE, regulariser (each x batch size), correct predictions
    sums = torch.zeros(4, device=device, dtype=torch.float64)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    seen, step = 0, -1  # host-side counters: the batch size is known without asking the device
    for step, batch in enumerate(source.epoch(epoch)):
        out = train_step(ctx, method, optimizer, batch, device=device, bf16=bf16)
        n = out.labels.shape[0]
        seen += n
        sums += torch.stack([out.loss.detach().double() * n, out.ce.detach().double() * n,
                             out.reg.detach().double() * n, (out.logits.detach().argmax(1) == out.labels).sum().double()])
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(out.loss.detach()), step, first_bad)
        if (step + 1) % cfg.log_interval == 0:
            _check_and_show(sums, seen, first_bad, epoch, bar, optimizer, step + 1)
    _check_and_show(sums, seen, first_bad, epoch, bar, optimizer, step + 1)
    total, ce, reg, correct = sums.tolist()
    return {"train_loss": total / seen, "train_ce": ce / seen, "train_reg": reg / seen, "train_acc": correct / seen}


def _to_channels_last(batch: Batch) -> Batch:
    return Batch(*(t.contiguous(memory_format=torch.channels_last) if t is not None and t.dim() == 4 else t
                   for t in batch))


def _check_and_show(sums, seen: int, first_bad, epoch, bar, optimizer, done_steps) -> None:
    """The once-per-interval host read: stop on a non-finite loss, else update the progress bar."""
    values = sums.tolist()
    bad = int(first_bad)
    if bad >= 0:
        raise Diverged(f"loss became NaN/inf at epoch {epoch + 1}, step {bad + 1}")
    seen = max(seen, 1)
    bar.update(done_steps - bar.n)
    bar.set_postfix(loss=f"{values[0] / seen:.3f}", acc=f"{100 * values[3] / seen:.1f}",
                    lr=f"{optimizer.param_groups[0]['lr']:.4g}", refresh=False)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """optimizer.load_state_dict, then every per-parameter buffer laid out like its parameter. A run
    resumed on another device may switch memory format (channels_last is on for CUDA only), and
    CUDA's fused SGD requires parameter, gradient and momentum buffer to share strides."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for p in group["params"]:
            buffers = optimizer.state.get(p, {})
            for key, buf in buffers.items():
                if isinstance(buf, torch.Tensor) and buf.shape == p.shape and buf.stride() != p.stride():
                    buffers[key] = torch.empty_like(p, dtype=buf.dtype).copy_(buf)


class CompiledModel:
    """What the methods call when --compile is on. Calling it runs the compiled forward; the parts
    that some methods call directly (AdaCos and Virtual-softmax: forward_features and head; DDGSD
    likewise; BYOT: forward_stages, head and its branches) are compiled too, each on first use —
    `torch.compile(model)` alone would hand them out uncompiled. Everything else (train/eval,
    parameters, ...) is the model's own."""

    PARTS = ("forward_features", "forward_stages", "head", "byot")

    def __init__(self, model: torch.nn.Module):
        self.module = model
        self._forward = torch.compile(model)
        self._parts: dict = {}

    def __call__(self, *args, **kwargs):
        return self._forward(*args, **kwargs)

    def __getattr__(self, name: str):
        if name not in CompiledModel.PARTS:
            return getattr(self.module, name)
        if name not in self._parts:
            self._parts[name] = torch.compile(getattr(self.module, name))
        return self._parts[name]


@dataclass
class Setup:
    model: torch.nn.Module  # the module whose state_dict is checkpointed
    optimizer: torch.optim.Optimizer
    method: Method
    source: object  # a training source (cskd.loaders): .epoch(e) -> Batches, .sampler, len()
    ctx: Context  # ctx.model is `model`, or its CompiledModel view


def build_training(cfg: TrainConfig, bundle: DataBundle, device: torch.device) -> Setup:
    """Model (seeded init), optimizer, method and data source of a run — everything but the folder."""
    if cfg.compile and not compile_available(device):
        needs = "the triton package" if device.type == "cuda" else "a C++ compiler on PATH ($CXX, else g++)"
        raise UserError(f"--compile on {device.type} needs {needs}; install it or leave out --compile")
    torch.manual_seed(cfg.seed)
    model = adapt_model(cfg, build_model(cfg.model, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                                         width=cfg.width)).to(device)
    teacher = load_teacher(cfg, bundle=bundle, device=device)
    if device.type == "cuda":
        # Batch shapes repeat every step: let cuDNN time its convolution algorithms once per shape.
        torch.backends.cudnn.benchmark = True
    else:
        keep_freed_host_memory()  # activations live in host memory: stop re-faulting them every step
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # fused SGD on CUDA: one kernel for the whole parameter update
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, **opt_kw)
    method = method_for(cfg)
    source = train_batches(bundle, loader=cfg.loader, batch_size=cfg.batch_size, seed=cfg.seed, device=device,
                           partner=method.partner, clean=method.clean, allow_self_pair=cfg.allow_self_pair,
                           workers=cfg.workers, drop_last=cfg.compile)
    # The compiled view shares parameters with `model`; checkpoints save `model`'s state dict.
    net = CompiledModel(model) if cfg.compile else model
    if teacher is not None and channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    ctx = Context(cfg, net, teacher=teacher, channels_last=channels_last, num_classes=bundle.num_classes)
    return Setup(model, optimizer, method, source, ctx)


def _prepare_out(cfg: TrainConfig, *, resume: bool, overwrite: bool) -> tuple[Path, dict | None]:
    """Decide the run folder and read the checkpoint to resume from; writes nothing."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    out = choose_out_dir(cfg, existing=resume)
    if resume:
        if not (out / "last.pt").is_file():
            hint = ("it stopped before its first epoch ended; start it again with --overwrite" if holds_run(out)
                    else "train without --resume to start it")
            raise UserError(f"--resume: {out} holds no checkpoint (last.pt); {hint}")
        return out, load_checkpoint(out / "last.pt", fields=LAST_FIELDS)
    if holds_run(out) and not overwrite:
        raise UserError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                        f"or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    return out, None


# Options a resumed run (or a re-run sweep) may change: where and how fast it runs and where its
# files are, not what it computes.
RESUME_MAY_CHANGE = ("device", "threads", "workers", "log_interval", "loader", "out", "data_root", "download",
                     "decode_cache_dir")


@contextlib.contextmanager
def _unfinished_run_removed_on_error(out: Path):
    """A user-facing error (bad image, divergence, ...) before the first checkpoint leaves nothing
    to resume: remove what the run wrote, so the same command can simply be run again."""
    try:
        yield
    except UserError:
        if not (out / "last.pt").is_file():
            clear_run(out)
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty
        raise


def changed_settings(out: Path, cfg: TrainConfig) -> list[str]:
    """The options (as --flags) whose value in the run already in `out` differs from `cfg`, leaving
    out those a resumed run may change; [] when `out` holds no config.json."""
    if not (Path(out) / "config.json").is_file():
        return []
    saved, new = read_config(out).to_dict(), cfg.to_dict()
    return [f"--{k.replace('_', '-')} {saved.get(k)} -> {new[k]}" for k in new
            if k not in RESUME_MAY_CHANGE and saved.get(k) != new[k]]


def run_training(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
                 stop_after_epoch: int | None = None, progress: bool | None = None,
                 explicit: dict | None = None) -> dict:
    """Train one run and return its summary. `stop_after_epoch` ends early (tests simulate a kill).

    `explicit`: the options the user gave on the command line; a resumed run keeps its saved
    config and refuses explicit options that would change what it computes.
    """
    out, ckpt = _prepare_out(cfg, resume=resume, overwrite=overwrite)
    if ckpt is not None:
        # a resumed run keeps its own config
        saved = config_from_record(ckpt["config"], out / "last.pt", fix="start the run again with --overwrite")
        given = {k: v for k, v in (explicit or {}).items() if v is not None and k in saved.to_dict()}
        changed = sorted(k for k, v in given.items()
                         if k not in RESUME_MAY_CHANGE and TrainConfig.from_dict({**saved.to_dict(), k: v}) != saved)
        if changed:
            raise UserError(f"--resume continues {out} with its saved config; these options differ from it: "
                            f"{', '.join('--' + k.replace('_', '-') for k in changed)} (drop them, or start a new run)")
        cfg = TrainConfig.from_dict({**saved.to_dict(), **{k: given[k] for k in given if k in RESUME_MAY_CHANGE},
                                     "out": saved.out})
        config_ok = (out / "config.json").is_file()
        try:
            foreign = changed_settings(out, saved)
        except UserError:  # config.json damaged or unreadable: rewritten from last.pt below
            foreign, config_ok = [], False
        if foreign:
            raise UserError(f"{out / 'last.pt'} belongs to another run than {out / 'config.json'} "
                            f"({'; '.join(foreign[:3])}); start the run again with --overwrite")
    device = pick_device(cfg.device)
    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    bf16 = use_bf16(cfg, device)
    bundle = bundle_for(cfg)
    setup = build_training(cfg, bundle, device)
    model, optimizer, method, source, ctx = setup.model, setup.optimizer, setup.method, setup.source, setup.ctx
    if len(source) == 0:
        raise UserError(f"an epoch held no full batch: --batch-size {cfg.batch_size} exceeds the {len(bundle.train)} "
                        f"training samples (--compile keeps full batches only); lower --batch-size")
    select_split = bundle.val if cfg.select_on == "val" else bundle.test
    if select_split is None:
        raise UserError("--val-fraction 0 leaves no validation split; use --select-on test or a fraction in (0, 1)")

    start_epoch, best = 0, {"acc": -1.0, "epoch": -1}
    if ckpt is not None:
        load_model_state(model, ckpt["model"], out / "last.pt")
        try:
            load_optimizer_state(optimizer, ckpt["optimizer"])
            source.sampler.load_state_dict(ckpt["sampler"])
            set_rng_state(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise UserError(f"{out / 'last.pt'} holds a damaged training state ({type(e).__name__}: "
                            f"{short_reason(e, 80)}); start the run again with --overwrite") from None
        start_epoch, best = ckpt["epoch"] + 1, dict(ckpt["best"])
        if not config_ok:  # missing or damaged: last.pt holds the run's config, so write it again
            write_json(out / "config.json", _config_record(cfg, bundle, device, bf16))
        # Drop records of epochs after the checkpoint (written before the kill) so none repeat.
        kept = [r for r in read_metrics(out) if r.get("epoch", 0) <= ckpt["epoch"] + 1]
        write_metrics(out, kept)
    else:
        if overwrite:
            clear_run(out)  # only the files cskd wrote; anything else in the folder stays
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", _config_record(cfg, bundle, device, bf16))
        write_metrics(out, [])

    print(f"run {out}: {cfg.method} on {cfg.dataset} ({len(bundle.train)} train / "
        f"{len(bundle.val) if bundle.val is not None else 0} val / {len(bundle.test)} test), {cfg.model}, "
        f"{device.type}{' bf16' if bf16 else ''}, epochs {start_epoch + 1}-{cfg.epochs}")
    t_run = time.time()
    with _unfinished_run_removed_on_error(out):
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epoch is not None and epoch > stop_after_epoch:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch)
            # Method randomness (e.g. Mixup's λ) comes from (seed, epoch) too, so resuming is exact.
            ctx.generator = epoch_generator(cfg.seed + METHOD_SEED_OFFSET, epoch)  # CPU: Mixup draws λ on the host
            t0 = time.time()
            with tqdm(total=len(source), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                      # progress None: tqdm shows the per-step bar only on a terminal
                      disable=(not progress) if progress is not None else None, file=sys.stderr) as bar:
                try:
                    record = train_epoch(ctx, method, optimizer, source, epoch, device=device, bf16=bf16, bar=bar)
                except Diverged as e:
                    kept = f"the last good checkpoint (epoch {epoch}) is kept in {out / 'last.pt'}" if epoch > 0 \
                        else "nothing was kept"
                    raise Diverged(f"{e}; {kept}; lower --lr or check the data") from None
            val = evaluate(model, eval_batches(bundle, select_split, batch_size=256, device=device, workers=cfg.workers),
                           device=device, bf16=bf16)
            record = {"epoch": epoch + 1, "lr": lr_at(cfg, epoch), **record,
                      f"{cfg.select_on}_acc": val["acc"], f"{cfg.select_on}_loss": val["loss"],
                      "seconds": round(time.time() - t0, 3)}
            improved = val["acc"] > best["acc"]
            if improved:
                best = {"acc": val["acc"], "epoch": epoch + 1}
            state = {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch, "best": best}
            # Order matters for a kill between writes: best.pt, then the epoch's record, then last.pt.
            # A resume starts after last.pt's epoch, redoes a lost epoch and drops its orphan record.
            if improved:
                save_checkpoint(out / "best.pt", state)
            append_metrics(out, record)
            save_checkpoint(out / "last.pt", {**state, "optimizer": optimizer.state_dict(),
                                              "sampler": source.sampler.state_dict(), "rng": rng_state()})
            print(f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {record['train_loss']:.4f}  train acc "
                  f"{100 * record['train_acc']:.2f}%  {cfg.select_on} acc {100 * val['acc']:.2f}%  lr {record['lr']:.4g}  "
                  f"{record['seconds']:.1f}s")
    finished = (stop_after_epoch is None) or stop_after_epoch >= cfg.epochs - 1
    summary = {"run": str(out), "finished": finished, "best_epoch": best["epoch"],
               f"best_{cfg.select_on}_acc": best["acc"], "train_seconds": round(time.time() - t_run, 2)}
    if finished:
        summary.update(_test_best(out, cfg, bundle, model, device, bf16))
        write_json(out / "summary.json", summary)
        print(f"done: best epoch {best['epoch']} ({cfg.select_on} acc {100 * best['acc']:.2f}%), "
              f"test acc {100 * summary['test_acc']:.2f}%  -> {out}")
    return summary


def _test_best(out: Path, cfg, bundle: DataBundle, model, device, bf16) -> dict:
    load_model_state(model, load_checkpoint(out / "best.pt", map_location=device)["model"], out / "best.pt")
    test = evaluate(model, eval_batches(bundle, bundle.test, batch_size=256, device=device, workers=cfg.workers),
                    device=device, bf16=bf16)
    return {"test_acc": test["acc"], "test_loss": test["loss"], "test_n": test["n"]}


def _config_record(cfg: TrainConfig, bundle: DataBundle, device, bf16: bool) -> dict:
    selection = ("best validation epoch" if cfg.select_on == "val"
                 else "best TEST epoch (the authors' protocol; test accuracy is optimistically biased)")
    return {
        "config": cfg.to_dict(),
        "meta": {"cskd_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
                 "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "device": device.type, "precision": "bf16" if bf16 else "fp32", "selection": selection,
                 "num_classes": bundle.num_classes, "class_names": bundle.class_names,
                 "num_train": len(bundle.train), "num_val": len(bundle.val) if bundle.val is not None else 0,
                 "num_test": len(bundle.test)},
    }
