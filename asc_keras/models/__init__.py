"""Model builders: each returns a Keras model and nothing else.

All models take log-mel input (frames, mels, 1), end in a Dense layer named
``logits`` followed by a softmax ``Activation`` named ``probabilities``; use
:func:`logits_model` for the pre-softmax output (distillation needs it).
"""

from asc_keras.models.baseline import build_dcase_baseline
from asc_keras.models.common import logits_model
from asc_keras.models.serfr_cnn import build_serfr_cnn, rfr_block, se_block, transition_layer
from asc_keras.models.teachers import (
    TEACHERS,
    build_bcresnet_teacher,
    build_cnn_teacher,
    build_mobilenetv2_teacher,
)

BUILDERS = {
    "serfr_cnn": build_serfr_cnn,
    "serfr_cnn_32": lambda **kw: build_serfr_cnn(width=32, **kw),
    "serfr_cnn_24": lambda **kw: build_serfr_cnn(width=24, **kw),
    **TEACHERS,
    "dcase_baseline": build_dcase_baseline,
}

__all__ = [
    "BUILDERS",
    "TEACHERS",
    "build_bcresnet_teacher",
    "build_cnn_teacher",
    "build_dcase_baseline",
    "build_mobilenetv2_teacher",
    "build_serfr_cnn",
    "logits_model",
    "rfr_block",
    "se_block",
    "transition_layer",
]
