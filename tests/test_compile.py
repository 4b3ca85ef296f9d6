"""Speed paths that must not change results: torch.compile, resumed optimizer buffers across
memory formats, and what the machine offers (bf16 instructions, a C++ compiler)."""

import pytest
import torch
from conftest import cli

from cskd.config import resolve
from cskd.training.epoch import load_optimizer_state


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


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cskd", "adacos", "ddgsd", "byot"])
def test_compiled_step_matches_the_eager_step_and_compiles_every_call(method, monkeypatch):
    """--compile (dynamo's eager backend here, to keep the test fast): one step gives the same loss and
    parameters as without it, and every model call of the step went through the one compiled
    module (the TrainingModel: methods ask for parts of its forward instead of calling submodules)."""
    from cskd.data.placement import bundle_for
    from cskd.training.epoch import train_step
    from cskd.training.trainer import build_training

    compiled = []
    real_compile = torch.compile

    def eager_compile(fn, **kwargs):
        compiled.append(fn)
        return real_compile(fn, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    # the eager backend builds no C++: this test must not depend on the machine having a compiler
    monkeypatch.setattr("cskd.training.trainer.compile_available", lambda device: True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: the last assertion counts this test's graphs
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
    from cskd.training.run_model import TrainingModel

    assert isinstance(compiled[0], TrainingModel) and compiled[0].net is setup.model
    assert len(compiled) == 2 and compiled[1] is setup.model  # the training entry point, and evaluation's
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1


@pytest.mark.parametrize("caps, native", [({"amx_bf16": True, "avx512_bf16": False}, True),
                                          ({"amx_bf16": False, "avx512_bf16": True}, True),
                                          ({"avx2": True}, False)])
def test_bf16_counts_as_native_only_on_cpus_with_bf16_instructions(caps, native, monkeypatch):
    from cskd.training.device import bf16_is_native

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps, raising=False)
    assert bf16_is_native(torch.device("cpu")) is native
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert bf16_is_native(torch.device("cpu")) is False


def test_compile_without_a_cpu_compiler_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cli("train", "--dataset", "digits", "--epochs", "1", "--compile", "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cskd: error: --compile on cpu needs a C++ compiler on PATH ($CXX, else g++); install it or "
                   "leave out --compile"]
    assert not (tmp_path / "run").exists()


def test_compile_looks_for_the_compiler_inductor_would_use(monkeypatch):
    import shutil

    from cskd.training.device import compile_available

    found = {"/usr/bin/g++-13"}
    monkeypatch.setattr(shutil, "which", lambda name: name if name in found else None)
    monkeypatch.setenv("CXX", "/usr/bin/g++-13 -fno-lto")  # $CXX may carry flags after the command
    assert compile_available(torch.device("cpu"))
    monkeypatch.setenv("CXX", "clang++")  # inductor takes $CXX as it is and tries nothing else
    assert not compile_available(torch.device("cpu"))
    monkeypatch.delenv("CXX")
    found.add("g++")
    assert compile_available(torch.device("cpu"))
