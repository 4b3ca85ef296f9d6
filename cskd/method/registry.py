"""Every training method cskd knows (`--method`): one frozen MethodSpec each, in METHOD_SPECS, the one
place a method's facts are written. Every other method table is derived from it (cskd.config's METHODS,
KD_METHODS, CLASS_WISE and USES_TEMPERATURE; the labels and costs of cskd.experiments; the partner
mode and step of cskd.method.objectives.method_for).

Why the step is held by name: cskd.config, imported almost everywhere, needs the method names and
flags and must not import torch; the step functions need torch and live in cskd.method.objectives,
which itself imports cskd.config. So this module imports nothing (it sits on the lowest level of the
import graph, next to cskd.errors), holds each step as the name of its function, and objectives maps
those names to the functions (objectives.STEPS, keyed by each function's own __name__). Nothing is
registered or patched at import time; tests/test_specs.py checks that the names here and the
functions there agree exactly, and that every partner mode is one of cskd.method.batch.PARTNER_MODES
(that module imports torch, so it is not imported here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    """What one method is. `relative_cost`: forward-backward passes per anchor image relative to
    cross-entropy (a forward is ~1/3 of a forward-backward), for the GPU-hour estimate."""

    name: str  # the --method value
    label: str  # as the paper's tables print it
    partner: str  # what the data source adds to each anchor batch: one of cskd.method.batch.PARTNER_MODES
    step: str  # the name of its step function in cskd.method.objectives (objectives.STEPS)
    relative_cost: float
    short_label: str = ""  # in narrow tables (the demo's); "" = `label`
    uses_temperature: bool = False  # its loss reads --temperature
    class_wise: bool = False  # it has the class-wise term λ_cls·T²·KL of Eq. (1) (reads --lambda-cls too)
    needs_teacher: bool = False  # it distils from a --teacher run
    clean: bool = False  # the source also yields un-augmented anchors
    in_batch_pairing: bool = False  # --pairing in-batch applies: its partner mode becomes "in-batch"

    @property
    def short(self) -> str:
        return self.short_label or self.label


# In the order of the --method help text. Costs: CS-KD's no-grad partner forward (+1/3), KD's teacher
# forward (+1/3), CS-KD-E's clean forward (+1/3), DDGSD's second view (a second forward-backward),
# BYOT's shallow classifiers (+0.2).
METHOD_SPECS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("ce", "Cross-entropy", "none", "ce_step", 1.0, short_label="CE"),
    MethodSpec("cskd", "CS-KD", "class", "cskd_step", 4 / 3, uses_temperature=True, class_wise=True,
               in_batch_pairing=True),
    MethodSpec("adacos", "AdaCos", "none", "head_step", 1.0),
    MethodSpec("virtual_softmax", "Virtual-softmax", "none", "head_step", 1.0),
    MethodSpec("max_entropy", "Maximum-entropy", "none", "max_entropy_step", 1.0),
    MethodSpec("label_smoothing", "Label-smoothing", "none", "label_smoothing_step", 1.0),
    MethodSpec("ddgsd", "DDGSD", "view", "ddgsd_step", 2.0),
    MethodSpec("byot", "BYOT", "none", "byot_step", 1.2),
    MethodSpec("mixup", "Mixup", "none", "mixup_step", 1.0),
    MethodSpec("mixup_cskd", "Mixup + CS-KD", "class", "mixup_cskd_step", 4 / 3, uses_temperature=True,
               class_wise=True),
    MethodSpec("kd", "KD", "none", "kd_step", 4 / 3, uses_temperature=True, needs_teacher=True),
    MethodSpec("kd_cskd", "KD + CS-KD", "class", "kd_cskd_step", 5 / 3, uses_temperature=True, class_wise=True,
               needs_teacher=True),
    MethodSpec("cskd_e", "CS-KD-E", "class", "cskd_e_step", 5 / 3, uses_temperature=True, class_wise=True,
               clean=True),
)}


def methods_where(flag: str) -> tuple[str, ...]:
    """The names of the methods whose spec has `flag` (a bool field) set, in METHOD_SPECS order."""
    return tuple(name for name, spec in METHOD_SPECS.items() if getattr(spec, flag))
