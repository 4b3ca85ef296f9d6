"""cskd: class-wise self-knowledge distillation (Yun et al., CVPR 2020) — trainer, data, models."""

__version__ = "0.1.0"
