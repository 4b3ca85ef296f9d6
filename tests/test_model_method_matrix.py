"""timm-style: every model x every method. One training step through the method's own code path
gives every parameter a finite gradient, and the method's regulariser is non-zero exactly where
the method has one. Inputs are tiny (224-px models take 32-px input here; they pool globally)."""

from types import SimpleNamespace

import pytest
import torch

from cskd.config import METHODS, resolve
from cskd.method.batch import Batch
from cskd.method.objectives import StepContext, method_for
from cskd.method.sampler import step_generator
from cskd.models import MODELS
from cskd.training.run_model import TrainingModel, build_run_model

pytestmark = pytest.mark.slow

NUM_CLASSES = 5
# Methods whose Step.reg is 0 by definition: their whole loss is a cross-entropy (AdaCos and
# Virtual-softmax change the logits, Mixup the inputs and targets).
NO_REGULARISER = {"ce", "adacos", "virtual_softmax", "mixup"}
# Parameters allowed to get no gradient from one step, with the reason. None today: every method
# routes all of its model's parts through the one training forward.
NO_GRADIENT: dict = {}


def _step(model_name: str, method: str):
    made_for = MODELS[model_name][1]
    size = min(made_for, 32)  # 224-px models pool globally: 32-px input keeps the test fast
    bundle = SimpleNamespace(name="tiny", num_classes=NUM_CLASSES, in_channels=3, image_size=made_for)
    extra = {"teacher": "unused"} if method in ("kd", "kd_cskd") else {}
    small = {"width": 4} if made_for < 224 else {}  # 224-px models keep torchvision's widths
    cfg = resolve({"model": model_name, "method": method, **small, **extra})
    torch.manual_seed(0)
    net = build_run_model(cfg, bundle)
    model = TrainingModel(net).train()
    teacher = None
    if extra:
        teacher = build_run_model(resolve({"model": model_name, "method": "ce", **small}), bundle).eval()
        teacher.requires_grad_(False)
    m = method_for(cfg)
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    x = torch.randn(len(y), 3, size, size, generator=g)
    other = torch.randn(len(y), 3, size, size, generator=g)
    batch = Batch(x, y, partner=other if m.partner in ("class", "view") else None,
                  clean=torch.randn(len(y), 3, size, size, generator=g) if m.clean else None)
    ctx = StepContext(cfg, model, teacher=teacher, generator=step_generator(0, 0, 0), num_classes=NUM_CLASSES)
    out = m.step(ctx, batch)
    out.loss.backward()
    return net, out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_one_step_gives_every_parameter_a_finite_gradient(model_name, method):
    if method == "byot" and model_name.startswith("densenet"):
        pytest.skip("BYOT needs a model with stages; DenseNets have none (refused with a one-line error)")
    net, out = _step(model_name, method)
    assert torch.isfinite(out.loss) and out.logits.shape == (8, NUM_CLASSES)
    missing = [n for n, p in net.named_parameters()
               if (p.grad is None or not torch.isfinite(p.grad).all()) and n not in NO_GRADIENT]
    assert missing == [], missing
    assert all(p.grad.abs().sum() > 0 for n, p in net.named_parameters() if n.startswith("head"))
    if method in NO_REGULARISER:
        assert out.reg.item() == 0.0
    else:
        assert abs(out.reg.item()) > 1e-6, f"{method}: its regulariser is zero"  # max_entropy: -βH < 0
