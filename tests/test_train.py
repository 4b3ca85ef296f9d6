import json
import subprocess
import sys
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cskd.cli import main
from cskd.config import resolve
from cskd.train import CompiledModel, load_optimizer_state, lr_at, run_training


def cli(*argv):
    return main([str(a) for a in argv])


def test_ce_and_cskd_runs_write_the_run_files(digits_runs):
    for method, run in digits_runs.items():
        for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json"):
            assert (run / name).is_file(), name
        config = json.loads((run / "config.json").read_text())
        assert config["config"]["method"] == method and config["config"]["epochs"] == 2
        assert config["meta"]["selection"] == "best validation epoch"
        records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2]
        assert all(0 <= r["val_acc"] <= 1 for r in records)
        # CS-KD logs its KL regulariser; cross-entropy has none.
        assert (records[-1]["train_reg"] > 0) == (method == "cskd")
        state = torch.load(run / "last.pt", weights_only=True)
        assert {"model", "optimizer", "sampler", "rng", "config", "epoch"} <= set(state)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["test_acc"] > 0.3  # far above the 0.1 of chance after 2 epochs


def test_cli_train_writes_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("train", "--dataset", "digits", "--method", "ce", "--epochs", 1, "--seed", 0, "--out", out) == 0
    assert (out / "best.pt").is_file() and (out / "metrics.jsonl").is_file()
    assert "test acc" in capsys.readouterr().out


def test_kill_and_resume_gives_identical_weights(tmp_path):
    overrides = {"method": "cskd", "epochs": 3, "seed": 1, "batch_size": 128}
    full = resolve({**overrides, "out": str(tmp_path / "full")}, "digits-small")
    run_training(full, progress=False)
    cut = resolve({**overrides, "out": str(tmp_path / "cut")}, "digits-small")
    run_training(cut, progress=False, stop_after_epoch=0)  # "killed" after the first epoch
    assert not (tmp_path / "cut" / "summary.json").exists()
    run_training(cut, resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]


def test_lr_schedule_follows_the_paper():
    cfg = resolve({"epochs": 200})
    assert lr_at(cfg, 0) == 0.1 and lr_at(cfg, 99) == 0.1
    assert lr_at(cfg, 100) == pytest.approx(0.01) and lr_at(cfg, 149) == pytest.approx(0.01)
    assert lr_at(cfg, 150) == pytest.approx(0.001) and lr_at(cfg, 199) == pytest.approx(0.001)
    # short runs: the first epoch always uses the base lr; drops at ceil(0.5 E) and ceil(0.75 E)
    assert [lr_at(resolve({"epochs": 1}), e) for e in range(1)] == [0.1]
    assert [round(lr_at(resolve({"epochs": 4}), e), 6) for e in range(4)] == [0.1, 0.1, 0.01, 0.001]
    assert [round(lr_at(resolve({"epochs": 30}), e), 6) for e in (14, 15, 22, 23)] == [0.1, 0.01, 0.01, 0.001]


def test_generated_run_name_is_readable_and_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("train", "--epochs", 1, "--method", "ce") == 0
    assert cli("train", "--epochs", 1, "--method", "ce") == 0
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["digits-small-ce-e1-s0", "digits-small-ce-e1-s0-2"]


BAD_INPUTS = [
    (["--dataset", "mnist"], "unknown data set 'mnist'; choose one of: cifar100, cub200, digits"),
    (["--model", "vgg"], "unknown model 'vgg'; choose one of:"),
    (["--method", "foo"], "unknown method 'foo'; choose one of: adacos, byot, ce, cskd, cskd_e, ddgsd"),
    (["--preset", "nope"], "unknown preset 'nope'; choose one of:"),
    (["--temperature", "0"], "--temperature must be > 0; got 0.0"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--lambda-cls", "-0.5"], "--lambda-cls must be >= 0; got -0.5"),
    (["--epochs", "0"], "--epochs must be a positive integer; got 0"),
    (["--batch-size", "-4"], "--batch-size must be a positive integer; got -4"),
    (["--momentum", "-0.5"], "--momentum must be in [0, 1); got -0.5"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0; got -1.0"),
    (["--compile", "--batch-size", "5000"], "an epoch held no full batch: --batch-size 5000 exceeds"),
    (["--dataset", "cub200", "--data-root", "{tmp}/nodata"], "expected training images in"),
    (["--dataset", "cifar100", "--data-root", "{tmp}/nodata"], "CIFAR-100 not found"),
    (["--resume"], "holds no checkpoint"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_one_line_error_and_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--epochs" not in args:
        args = ["--epochs", "1", *args]
    code = cli("train", *args, "--out", out)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("cskd: error: ") and message in err and "\n" not in err, err
    assert not out.exists()


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(digits_runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(digits_runs["ce"], run)
    assert cli("train", "--epochs", 1, "--out", run) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert cli("train", "--epochs", 1, "--method", "ce", "--out", run, "--overwrite") == 0
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 1


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_resume_from_a_damaged_checkpoint_is_a_clear_error(digits_runs, tmp_path, capsys, content):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(digits_runs["ce"], run)
    full = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(content or full[: len(full) // 2])
    assert cli("train", "--out", run, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "last.pt is not a readable cskd checkpoint" in err and "\n" not in err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_that_needs_code_to_load_is_refused(tmp_path, capsys):
    import pickle

    run = tmp_path / "evil"
    run.mkdir()

    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"format": 1, "model": Boom()}, run / "last.pt", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    assert cli("train", "--out", run, "--resume") == 2
    captured = capsys.readouterr()
    assert "code ran" not in captured.out and "not a readable cskd checkpoint" in captured.err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    # A huge learning rate makes the loss blow up to inf/NaN within the first epochs.
    code = cli("train", "--epochs", 4, "--lr", "1e6", "--method", "ce", "--out", out)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "loss became NaN/inf at epoch" in err and "step" in err and "\n" not in err
    if "epoch 1," not in err:
        torch.load(out / "last.pt", weights_only=True)  # the last good checkpoint is whole


def test_console_script_exits_nonzero_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cskd", "train", "--model", "nope", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in r.stderr


def test_overwrite_deletes_only_the_files_cskd_wrote(digits_runs, tmp_path):
    import shutil

    out = tmp_path / "mine"
    shutil.copytree(digits_runs["ce"], out)
    (out / "notes.txt").write_text("keep me")
    (out / "sub").mkdir()
    assert cli("train", "--epochs", 1, "--method", "ce", "--out", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "sub").is_dir()
    assert json.loads((out / "config.json").read_text())["config"]["epochs"] == 1


def test_resume_without_out_finds_the_generated_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = resolve({"method": "ce", "epochs": 2})
    run_training(cfg, progress=False, stop_after_epoch=0)
    assert cli("train", "--method", "ce", "--epochs", 2, "--resume") == 0
    assert json.loads((tmp_path / "checkpoints" / "digits-small-ce-e2-s0" / "summary.json").read_text())["finished"]


def test_resume_refuses_options_that_change_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    run_training(resolve({"method": "ce", "epochs": 2, "out": str(out)}), progress=False, stop_after_epoch=0)
    assert cli("train", "--out", out, "--resume", "--lr", "0.5", "--workers", "0") == 2
    err = capsys.readouterr().err
    assert "these options differ from it: --lr" in err and "--workers" not in err
    assert cli("train", "--out", out, "--resume", "--workers", "0") == 0  # execution-only options are fine


def test_run_killed_before_its_first_checkpoint_points_to_overwrite(digits_runs, tmp_path, capsys):
    out = tmp_path / "early"
    out.mkdir()
    (out / "config.json").write_text((digits_runs["ce"] / "config.json").read_text())
    assert cli("train", "--out", out, "--resume") == 2
    assert "stopped before its first epoch ended; start it again with --overwrite" in capsys.readouterr().err


class _HostWaits(TorchDispatchMode):
    """Records the aten ops that make the host wait for a CUDA device, with the innermost cskd
    frame that issued them: reading a value (_local_scalar_dense: .item(), bool(), float(), int()),
    data-dependent output shapes (nonzero, masked_select, unique, repeat_interleave without
    output_size, indexing with a boolean mask) and Python data turned into a tensor (lift_fresh:
    on CUDA a host-to-device copy). On the CPU these ops run as usual, so CI can look for them."""

    ALWAYS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_dim",
              "unique_consecutive", "lift_fresh")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()) if i is not None)
        open_repeat = name == "repeat_interleave" and (kwargs or {}).get("output_size") is None
        if name in self.ALWAYS or bool_index or open_repeat:
            frame = next((f for f in reversed(traceback.extract_stack())
                          if "/cskd/" in f.filename or "/analysis/" in f.filename), None)
            self.seen.append((name, frame and frame.filename, frame and frame.lineno, frame and frame.name))
        return func(*args, **(kwargs or {}))


def test_training_step_never_makes_the_host_wait(monkeypatch):
    """No op inside a training step makes the host wait for the device (on CUDA each would stall the
    queue): every aten op of the forward, the backward and the update is inspected, and .tolist()
    (which bypasses the dispatcher) is spied on. The only allowed exception is Mixup's draw from its
    CPU generator."""
    from cskd.data import bundle_for
    from cskd.sampler import epoch_generator
    from cskd.train import build_training, train_step

    def spy(original):
        def tolist(self, *a, **k):
            caller = sys._getframe(1)
            waits.seen.append(("tolist", caller.f_code.co_filename, caller.f_lineno, caller.f_code.co_name))
            return original(self, *a, **k)
        return tolist

    waits = _HostWaits()
    for method in ("ce", "cskd", "mixup", "mixup_cskd", "adacos", "virtual_softmax", "byot", "ddgsd", "cskd_e",
                   "label_smoothing", "max_entropy"):
        cfg = resolve({"method": method, "batch_size": 16})
        setup = build_training(cfg, bundle_for(cfg), torch.device("cpu"))
        setup.ctx.generator = epoch_generator(0, 0)
        batches = iter(setup.source.epoch(0))
        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "tolist", spy(torch.Tensor.tolist))
            for _ in range(2):
                with waits:  # drawing the batch (sampler, augmentation) is inspected too
                    train_step(setup.ctx, setup.method, setup.optimizer, next(batches), device=torch.device("cpu"),
                               bf16=False)
    ours = [r for r in waits.seen if r[1] and ("/cskd/" in r[1] or "/analysis/" in r[1])]
    assert ours, "the spy saw nothing: it would not catch a wait either"
    assert [r for r in ours if r[3] != "mixup_batch"] == [], ours


def test_device_augmentations_never_make_the_host_wait():
    """The batched augmentations of the device path, for every kind of data set it serves."""
    from cskd.augment import random_crop_flip, random_resized_crop_flip, resize_center_crop
    from cskd.sampler import epoch_generator

    g = epoch_generator(0, 0)
    images = torch.randint(0, 256, (6, 3, 40, 48), dtype=torch.uint8)
    sizes = torch.tensor([[40, 48], [32, 40], [40, 30], [36, 36], [40, 48], [20, 40]])
    waits = _HostWaits()
    with waits:
        random_crop_flip(images, pad=4, flip=True, generator=g)
        random_resized_crop_flip(images, size=32, generator=g)  # TinyImageNet: one size for all
        random_resized_crop_flip(images, size=16, generator=g, sizes=sizes)  # padded 224-px sets
        resize_center_crop(images, sizes, resize=24, size=16)
    assert waits.seen == []


def test_host_wait_detector_catches_what_cuda_would_wait_for():
    """The detector above is only as good as its op list: each of these would stall on CUDA."""
    x, mask = torch.randn(4, 3), torch.rand(4, 3) > 0.5
    for wait in (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: x[mask], lambda: mask.nonzero(),
                 lambda: torch.as_tensor(3.0), lambda: x.unique(), lambda: x.masked_fill(mask, 0)[mask]):
        waits = _HostWaits()
        with waits:
            wait()
        assert waits.seen, wait
    waits = _HostWaits()
    with waits:  # and these never do
        torch.full((4,), 3.0).add_(x[:, 0]).gather(0, torch.zeros(2, dtype=torch.long))
        torch.where(mask, x, 0.0).median()
    assert waits.seen == []


def test_resumed_momentum_buffers_take_the_parameters_memory_format():
    """A checkpoint from a contiguous (CPU) run loaded into a channels_last (CUDA-style) model: the
    momentum buffers must follow the parameters' strides (CUDA's fused SGD refuses a mismatch) and
    keep their values."""
    from cskd.models import build_model

    def model_and_optimizer(channels_last):
        torch.manual_seed(0)
        model = build_model("preact_resnet18", num_classes=10, in_channels=3, width=4)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, opt = model_and_optimizer(False)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    saved = opt.state_dict()
    target_model, target_opt = model_and_optimizer(True)
    load_optimizer_state(target_opt, saved)
    convs = [p for p in target_model.parameters() if p.dim() == 4]
    assert any(p.stride() != p.contiguous().stride() for p in convs)  # really channels_last
    for p, q in zip(target_model.parameters(), model.parameters()):
        buf = target_opt.state[p]["momentum_buffer"]
        assert buf.stride() == p.stride()
        assert torch.equal(buf, opt.state[q]["momentum_buffer"])


@pytest.mark.parametrize("method,parts", [("cskd", set()), ("adacos", {"forward_features", "head"}),
                                          ("ddgsd", {"forward_features", "head"}),
                                          ("byot", {"forward_stages", "head", "byot"})])
def test_compiled_step_matches_the_eager_step_and_compiles_the_parts_it_calls(method, parts, monkeypatch):
    """--compile (dynamo's eager backend here, to keep the test fast): one step gives the same loss and
    parameters as without it, and every part of the model the method calls directly was compiled."""
    from cskd.data import bundle_for
    from cskd.train import build_training, train_step

    compiled = []
    real_compile = torch.compile

    def eager_compile(fn, **kwargs):
        compiled.append(fn)
        return real_compile(fn, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    # the eager backend builds no C++: this test must not depend on the machine having a compiler
    monkeypatch.setattr("cskd.train.compile_available", lambda device: True)
    torch._dynamo.reset()
    results = []
    for use_compile in (False, True):
        cfg = resolve({"method": method, "batch_size": 16, "compile": use_compile})
        setup = build_training(cfg, bundle_for(cfg), torch.device("cpu"))
        out = train_step(setup.ctx, setup.method, setup.optimizer, next(iter(setup.source.epoch(0))),
                         device=torch.device("cpu"), bf16=False)
        results.append((out.loss.detach(), [p.detach().clone() for p in setup.model.parameters()]))
    (loss, params), (loss_c, params_c) = results
    torch.testing.assert_close(loss_c, loss)
    for p, q in zip(params_c, params):
        torch.testing.assert_close(p, q)
    view = setup.ctx.model
    assert isinstance(view, CompiledModel) and compiled[0] is setup.model
    assert set(view._parts) == parts and len(compiled) == 1 + len(parts)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1 + len(parts)


@pytest.mark.parametrize("caps, native", [({"amx_bf16": True, "avx512_bf16": False}, True),
                                          ({"amx_bf16": False, "avx512_bf16": True}, True),
                                          ({"avx2": True}, False)])
def test_bf16_counts_as_native_only_on_cpus_with_bf16_instructions(caps, native, monkeypatch):
    from cskd.device import bf16_is_native

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps, raising=False)
    assert bf16_is_native(torch.device("cpu")) is native
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert bf16_is_native(torch.device("cpu")) is False


def test_compile_without_a_cpu_compiler_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--compile", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cskd: error: --compile on cpu needs a C++ compiler on PATH ($CXX, else g++); install it or "
                   "leave out --compile"]
    assert not (tmp_path / "run").exists()


def test_compile_looks_for_the_compiler_inductor_would_use(monkeypatch):
    import shutil

    from cskd.device import compile_available

    found = {"/usr/bin/g++-13"}
    monkeypatch.setattr(shutil, "which", lambda name: name if name in found else None)
    monkeypatch.setenv("CXX", "/usr/bin/g++-13 -fno-lto")  # $CXX may carry flags after the command
    assert compile_available(torch.device("cpu"))
    monkeypatch.setenv("CXX", "clang++")  # inductor takes $CXX as it is and tries nothing else
    assert not compile_available(torch.device("cpu"))
    monkeypatch.delenv("CXX")
    found.add("g++")
    assert compile_available(torch.device("cpu"))
