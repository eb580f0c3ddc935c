"""System configuration: every number of the report lives here, with its source.

One frozen dataclass per concern, nested in :class:`SystemConfig`; the YAML presets (``asc_keras/
presets/systems``, ``.../profiles``) merge into it (:func:`asc_keras.presets.system_config`).  Defaults
are the report's values (section cited) or, where it is silent, the choice documented beside the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from asc_keras.files import content_hash

# --- Numbers of the report (Fei, Li & Jia, DCASE 2023 Task 1a technical report) ---
REPORT_SAMPLE_RATE = 16000  # sec. 2.1 "sampling rate ... 16000Hz"
REPORT_N_FFT = 2048  # sec. 2.1 "Fourier change window ... 2048-samples"
REPORT_HOP = 512  # sec. 2.1 "frame-shift ... 512-samples"
REPORT_N_FRAMES_1S = 28  # sec. 2.1 "divided into 28 frames" (no centring: 1 + (16000-2048)//512)
REPORT_N_MELS = 256  # sec. 2.1 "256-bit Mel filter bank", features (N, 28, 256)
REPORT_EPOCHS = 800  # sec. 4.2 "maximum 800 epochs"
REPORT_WARMUP_EPOCHS = 300  # sec. 4.2 "for the first 300 epochs ... exponentially increased"
REPORT_PEAK_LR = 1e-3  # sec. 4.2 "... increased to 0.001"
REPORT_FINAL_LR = 1e-5  # sec. 4.2 "linear decrease to 1e-5 until epoch 800"
REPORT_WEIGHT_DECAY = 1e-3  # sec. 4.2 "Adam with a weight decay of 0.001"
REPORT_STUDENT_WIDTHS = (32, 24)  # sec. 4.3 submissions 1/3 (SERFR-CNN-32) and 2/4 (SERFR-CNN-24)
REPORT_HEAD_CHANNELS = 256  # Table 1 "1x1 conv-256"
# DCASE 2023 Task 1 complexity limits (docs/sources.md): per 1 s input.  128 kB of parameter
# memory: 128,000 bytes, as the organisers' NeSsi counts it (MAX_PARAMS = 128e3), not 128 x 1024.
DCASE_MAX_PARAM_BYTES = 128_000
DCASE_MAX_MACS = 30_000_000

SCENE_CLASSES = ("airport", "bus", "metro", "metro_station", "park", "public_square",
                 "shopping_mall", "street_pedestrian", "street_traffic", "tram")  # fmt: skip
N_CLASSES = len(SCENE_CLASSES)  # the scenes above: the official order of DCASE task 1

ENSEMBLE_MODES = ("probabilities", "logits")  # how teachers combine (asc_keras.distill.losses)
KD_PARTS = ("whole", "non_target")  # distill.losses.distillation_terms
SHARE_RULES = ("fixed", "confidence")  # DistillConfig.control_share_by (losses.mixed_targets)
TEACHER_VIEWS = ("own", "parallel")  # DistillConfig.teacher_view (distill.distiller)
STRATEGIES = ("default", "mirrored", "multiworker")  # tf.distribute (training.loop.get_strategy)
TEACHER_ARCHITECTURES = ("mobilenetv2", "cnn", "bcresnet")  # asc_keras.models.teachers.TEACHERS
TEACHER_POOLINGS = ("mean", "max+mean", "bands")  # TeacherConfig.pooling; input_norm: the same
TEACHER_INPUT_NORMS = ("none", "residual", "both")
# The teacher settings one teacher may set for itself (TeacherConfig.views).
VIEW_SETTINGS = ("crop_seconds", "masks", "mel_pool", "mixup", "steps", "batch_size", "peak_lr")

TRAIN_DEVICES = ("a", "b", "c", "s1", "s2", "s3")
UNSEEN_DEVICES = ("s4", "s5", "s6")  # fold 1: only in fold1_evaluate
ALL_DEVICES = TRAIN_DEVICES + UNSEEN_DEVICES


def teacher_architecture(name: str) -> str:
    """Teacher ``name``'s architecture: ``name`` up to its label ('cnn_clips' -> 'cnn')."""
    return name.split("_", 1)[0]


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel settings (report sec. 2.1).  ``mel_scale``: 'report' (eq. 1), 'htk' or 'slaney'."""

    sample_rate: int = REPORT_SAMPLE_RATE
    n_fft: int = REPORT_N_FFT
    hop_length: int = REPORT_HOP
    n_mels: int = REPORT_N_MELS
    fmin: float = 0.0
    fmax: float | None = None  # None = Nyquist
    mel_scale: str = "report"
    mel_norm: str | None = "slaney"  # not in the report; librosa's (equal area); None: peak 1
    log_offset: float = 1e-6  # log(mel_power + offset): silence maps to log(1e-6) ~ -13.8
    log: str = "natural"  # 'db': 10 log10(max(mel_power, log_offset)), PANNs' power_to_db (ref 1)
    clip_seconds: float = 1.0
    cache_dtype: str = "float16"  # the cache halves its disk/page-cache size; float32 compute
    # STFT framing for the baseline's features (NumPy extractor only); the defaults are the report's:
    win_length: int | None = None  # window samples, zero-padded (centred) to n_fft; None: n_fft
    window: str = "hann"  # periodic 'hann' or 'hamming'
    center: bool = False  # pad n_fft // 2 samples on both sides (reflect), as librosa's center=True
    power: float = 2.0  # 2: power spectrogram (the report); 1: magnitude (the DCASE baseline)
    peak_int16: bool = False  # log-mels / max|.| when > 1, through int16 (the baseline's h5)

    def n_frames(self, seconds: float | None = None) -> int:
        """Frames for a clip of ``seconds`` (default the clip length): no padding unless centred."""
        n = int(round((self.clip_seconds if seconds is None else seconds) * self.sample_rate))
        return 1 + n // self.hop_length if self.center else 1 + (n - self.n_fft) // self.hop_length

    def key(self) -> str:
        """Short stable hash of every setting that changes the feature values."""
        return content_hash(_without_later_defaults(self, _LATER_FEATURE_FIELDS), length=12)


def _without_later_defaults(cfg, later: dict) -> dict:
    """``cfg`` as a dict less the fields added later (``later``: their defaults) where they hold
    their defaults, so caches, teachers and probes made before keep their keys."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if later.get(k, ...) != v}


_LATER_AUGMENT_FIELDS = {"freq_mixstyle": 0.0, "freq_mixstyle_alpha": 0.3}
OPTIM_STUDENTS_ONLY = {"ema_momentum": 0.0, "precise_bn_batches": 0}  # and their defaults
_LATER_FEATURE_FIELDS = {"win_length": None, "window": "hann", "center": False, "power": 2.0,
                         "peak_int16": False, "log": "natural"}  # fmt: skip


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation switches and sizes (report: mixup sec. 2.2, masks abstract, stretching 4.3)."""

    mixup: bool = True
    # Report: "lambda ... from the beta distribution and beta in (0.1, 0.9)": Beta(0.3, 0.3) (sources.md)
    mixup_alpha: float = 0.3
    freq_mask: bool = True
    freq_mask_param: int = 48  # up to 48 of 256 mel bins (SpecAugment practice, docs/sources.md)
    time_mask: bool = True
    time_mask_param: int = 4  # up to 4 of 28 frames (~140 ms)
    time_stretch: bool = False  # systems 3-4
    stretch_min: float = 0.9  # rate ~ U(0.9, 1.1): "around 1 +- 0.1" (docs/sources.md)
    stretch_max: float = 1.1
    freq_mixstyle: float = 0.0  # not in the report: the share of clips restyled (augment/mixstyle)
    freq_mixstyle_alpha: float = 0.3  # its mixing weight ~ Beta(a, a)

    def key_dict(self) -> dict:
        """The settings as a work folder's keys hold them (:func:`_without_later_defaults`)."""
        return _without_later_defaults(self, _LATER_AUGMENT_FIELDS)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (report sec. 4.2), in fractions of the run so it scales."""

    epochs: int = REPORT_EPOCHS
    # A budget in optimiser steps instead of epochs (training.length; None: ``epochs`` passes, the
    # report's convention), and at least ``min_passes`` passes over a student's clips (None: no floor).
    steps: int | None = None
    min_passes: float | None = None
    rounds: int = 10  # with ``steps``: validations (and backups, history rows) per training
    batch_size: int = 256
    peak_lr: float = REPORT_PEAK_LR
    final_lr: float = REPORT_FINAL_LR
    warmup_fraction: float = REPORT_WARMUP_EPOCHS / REPORT_EPOCHS
    weight_decay: float = REPORT_WEIGHT_DECAY
    # 'l2': decay added to the gradient, PyTorch's Adam(weight_decay=1e-3), as the report reads.
    weight_decay_mode: str = "l2"  # 'decoupled': AdamW
    bn_momentum: float = 0.9  # all models; not in the report (PyTorch 0.1); Keras' 0.99 lags
    mixed_precision: bool = False  # float16 compute on tensor cores (all models); CPUs gain nothing
    # Not the report's; students only (training.student.precise_batchnorm): the weights kept: the EMA
    # over the last ~1/(1 - m) steps (0: the last), BN statistics then from n clean batches (0: off).
    ema_momentum: float = 0.0
    precise_bn_batches: int = 0

    def key_dict(self, students: bool = True) -> dict:
        """The settings as a work folder's keys hold them (:func:`_without_later_defaults`); for
        a model that is no student, without the students' own (``OPTIM_STUDENTS_ONLY``, ``min_passes``)."""
        own = {**OPTIM_STUDENTS_ONLY, "min_passes": None}  # with their defaults
        d = _without_later_defaults(self, own)
        return d if students else {k: v for k, v in d.items() if k not in own}


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (report sec. 3); alpha and T are not given in the report."""

    enabled: bool = True
    # loss = alpha*CE(hard) + (1-alpha)*T^2*KL(teacher_T || student_T); CP-JKU's 0.02*CE + 0.98*T^2*
    # KL_mean-over-classes is alpha ~0.17 with a summed KL; we take 0.1, T 2 (docs/sources.md).
    alpha: float = 0.1
    recording_alpha: float | None = None  # alpha with recording-level targets (None: alpha)
    temperature: float = 2.0
    live_temperature: float | None = None  # T of targets made live on the batch (None: the above)
    ensemble: Literal[ENSEMBLE_MODES] = "probabilities"  # what the teachers average
    # A clip's target: the teachers' output on its 10 s 'recording' or on the 1 s 'clip'; 'auto': 'clip'
    # where their mean p[label] on their own recordings is >= auto_label_probability (targets.py).
    target_source: Literal["auto", "recording", "clip"] = "auto"
    auto_label_probability: float = 0.80  # built-in read up to 0.789, sparse 0.805 (probe-sets.md)
    swap_wrong: bool = False  # a wrong target's top class -> the label (targets.swap_to_label)
    kd_part: Literal[KD_PARTS] = "whole"  # 'non_target': decoupled KD's NCKD (distill.losses)
    kd_stop: float = 1.0  # steps with KD (share), then labels (early-stopped KD; distiller)
    # Clip-level targets: 'stored' (the report's), 'live' on each augmented batch (distiller.py), 'auto':
    # live where the teachers beat the student on clips held out from them (stages/teaching.py) by
    clip_targets: Literal["stored", "live", "auto"] = "stored"
    live_lead_p: float = 0.05  # a lead of one-sided p below this (1: any lead above 0)
    probe_devices: int = 0  # 'auto': also hear each held-out clip through this many devices
    # The target's share from the CE control run live on each augmented batch (the rest: the teachers');
    # 0: the report's KD; 'confidence': per example, by who gives the label more (CA-MKD; losses).
    control_share: float = 0.0
    control_share_by: Literal[SHARE_RULES] = "fixed"
    control_share_no_lead: float | None = None  # 'auto' with no such lead (None: the above)
    # What live teachers hear: a clip's 'own' audio, or its sound through one of the 'parallel'
    teacher_view: Literal[TEACHER_VIEWS] = "own"  # devices that recorded it (data/parallel.py)


@dataclass(frozen=True)
class TeacherConfig:
    """Teacher training on 10 s recordings (report sec. 3.1)."""

    # Architectures, or one with a label after '_' (cnn_clips: a second CNN teacher, its own view in
    # ``views``; pooling, input_norm: its architecture's unless its own); pretrained: 'mobilenetv2'.
    names: tuple[str, ...] = TEACHER_ARCHITECTURES
    epochs: int = 200
    steps: int | None = None  # a step budget for the (last) training phase, in optim.rounds rounds
    batch_size: int = 32
    peak_lr: float = 1e-3
    mobilenet_alpha: float = 1.0
    cnn_width: int = 64
    bcresnet_width: int = 40  # c = 8*tau with tau = 5
    # Transfer learning (a user file, nothing downloaded): a Keras weights file or PANNs' .pth (models.
    # panns_import); frozen_epochs > 0: frozen at peak_lr, then unfrozen at finetune_lr (or peak_lr).
    pretrained_mobilenetv2: str | None = None
    frozen_epochs: int = 0
    finetune_lr: float | None = None
    # Optional first fine-tune of MobileNetV2 on another TAU-layout set (the report's AudioSet -> DCASE
    # 2020 -> 2023): pretrain_frozen_epochs frozen, then pretrain_epochs at pretrain_lr (None: peak_lr).
    pretrain_data: str | None = None
    pretrain_frozen_epochs: int = 0
    pretrain_epochs: int = 0
    pretrain_lr: float | None = None
    # Training window: None: whole 10 s recordings (the report); seconds: one random window per recording
    # and step, cheaper (evaluation and soft targets: the whole recording, GAP).
    crop_seconds: float | None = None
    # The report's mixup is the students' (sec. 4.3); CNN teacher, generated data: 47 % with, 56 without.
    mixup: bool = False
    masks: bool = True  # the system's masks for them too (the report is silent; quick.yaml: off)
    mel_pool: int = 1  # mel-axis average pool at the input (1: 256 mels; 4: 64, PANNs'): cost
    # Per teacher (a key: one teacher; the report gives neither): its pooling before the head
    # (models.teachers.clip_pooling) and what it sees of its input (.teacher_input).  They differ on
    # purpose (sec. 3.1, "different teacher models show different effect"): the CNN averages (steady
    # spectra), MobileNetV2 pools as PANNs', BC-ResNet keeps the bands apart and sees each band's
    # deviation from its level (short events).  Probe sets, 300 steps, recordings: sparse events
    # BC-ResNet 55-60 %, the others chance; steady spectra CNN 82-95, MobileNetV2 43-57, BC-ResNet 15-30.
    pooling: dict = field(
        default_factory=lambda: {"mobilenetv2": "max+mean", "cnn": "mean", "bcresnet": "bands"}
    )
    input_norm: dict = field(
        default_factory=lambda: {"mobilenetv2": "none", "cnn": "none", "bcresnet": "both"}
    )
    inference_batch_size: int = 16  # recordings per pass as the teachers evaluate and teach
    # Per class, this fraction of the training locations is kept from the teachers and the ensemble's
    # weights fitted on it (stages.teachers, distill.targets.fit_ensemble_weights); 0: plain average.
    holdout_fraction: float = 0.0
    # The pretrained MobileNetV2's input: 'panns' (PANNs' front end, bn0 kept: features.logmel.PANNS_
    # FEATURES), 'report' (64 pooled bands, bn0 re-estimated), 'auto' ('panns' for PANNs' checkpoint).
    mobilenetv2_front_end: str = "auto"
    # Per teacher, its own values of VIEW_SETTINGS in place of the shared ones above (what it
    # trains on, how long): {"mobilenetv2": {"crop_seconds": 1.0, "mel_pool": 1}}; {}: all shared.
    views: dict = field(default_factory=dict)

    def view(self, name: str) -> TeacherConfig:
        """The settings teacher ``name`` trains with: its ``views`` entry in place of the shared."""
        return dataclasses.replace(self, views={}, **self.views.get(name, {}))

    def entry(self, table: dict, name: str):
        """Teacher ``name``'s entry of ``pooling`` or ``input_norm``, else its architecture's."""
        return table.get(name, table.get(teacher_architecture(name)))


@dataclass(frozen=True)
class CompressConfig:
    """Pruning + quantisation-aware training with tensorflow-model-optimization."""

    prune: bool = True
    target_sparsity: float = 0.3
    prune_epochs: int = 20
    prune_steps: int | None = None  # a length in optimiser steps instead of epochs (any set size)
    qat: bool = True
    qat_epochs: int = 20
    qat_steps: int | None = None
    qat_lr: float = 5e-5  # CP-Mobile QAT setting (CP-Mobile, DCASE 2023)
    prune_lr: float = 1e-4  # Adam during pruning: 1/10 of the report's peak LR, a fine-tuning rate
    prune_end_fraction: float = 0.8  # the sparsity's polynomial ramp ends at this share of steps
    prune_updates: int = 20  # mask updates along that ramp
    batch_size: int = 128  # pruning and QAT fine-tuning batches
    representative_samples: int = 512
    # Clean training batches that re-estimate BatchNorm statistics after pruning and QAT (training.bn)
    # and measure QAT's activation ranges before and after it (compress.ranges); 0 disables both.
    bn_recalibration_batches: int = 50


@dataclass(frozen=True)
class ControlsConfig:
    """Rows trained beside the KD student (not the report's method; its Table 3 has the baseline)."""

    ce_control: bool = True  # the same student, augmentation and schedule, CE only (no teachers)
    # The DCASE Task 1 baseline (Table 3) on its own log-mels (models.baseline), trained as task1.yaml:
    # Adam 1e-3, batches of 64, 200 epochs, 30 % of recordings (per class) held out, best after 50.
    baseline: bool = True
    baseline_epochs: int = 200
    baseline_steps: int | None = None  # a budget in optimiser steps instead (the quick profile)
    baseline_lr: float = 1e-3
    baseline_batch_size: int = 64
    baseline_validation: float = 0.3
    baseline_best_after: float = 0.25  # 50 of 200 epochs: the best is kept from then on


@dataclass(frozen=True)
class DataConfig:
    """Generated-data size used when no ``--data`` is given."""

    recordings_per_class: int = 60
    cities: int = 6
    extra_devices: int = 2  # devices besides 'a' rendering each 10 s source recording
    seed: int = 0
    workers: int = 2  # processes writing the generated audio


@dataclass(frozen=True)
class SystemConfig:
    """One submission system (report sec. 4.3) under one profile."""

    system: int = 1
    name: str = "SERFR-CNN-32, mixup + KD"
    student_width: int = 32
    profile: str = "paper"
    seed: int = 42
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SystemConfig:
        return _from_dict(cls, d)


def _from_dict(cls, d: Mapping[str, Any]):
    if not isinstance(d, Mapping):
        raise ValueError(f"expected a mapping for {cls.__name__}, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := set(d) - set(fields):
        raise ValueError(
            f"unknown {cls.__name__} setting(s): {sorted(unknown)}; known: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in d.items():
        sub = _NESTED.get(fields[name].name) if cls is SystemConfig else None
        if sub is not None:
            kwargs[name] = _from_dict(sub, value)
        else:  # YAML lists are tuples here (frozen configs)
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


_NESTED = {f.name: f.default_factory for f in dataclasses.fields(SystemConfig)
           if f.default_factory is not dataclasses.MISSING}  # SystemConfig's sections  # fmt: skip
