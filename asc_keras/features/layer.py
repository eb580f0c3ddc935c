"""Keras layer computing the report's log-mel in-graph with TensorFlow ops."""

from __future__ import annotations

import dataclasses

import numpy as np

from asc_keras._runtime import keras, tf
from asc_keras.config import FeatureConfig
from asc_keras.features.logmel import filterbank


@keras.saving.register_keras_serializable(package="asc_keras")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform (batch, samples) at ``sample_rate`` -> log-mel (batch, frames, n_mels).

    Same STFT (periodic Hann, no centring), filter bank and log offset as
    :func:`asc_keras.features.logmel.logmel`; the filter bank is that module's
    NumPy matrix, held as a constant, so both implementations share it exactly.
    Not trainable.  Use it to put feature extraction inside a model (e.g. for
    on-device pipelines that feed raw audio); the DCASE complexity counts exclude it.
    """

    def __init__(self, feature_config: FeatureConfig | dict | None = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(feature_config, dict):
            feature_config = FeatureConfig(**feature_config)
        self.feature_config = feature_config or FeatureConfig()
        c = self.feature_config
        if c.win_length not in (None, c.n_fft) or c.window != "hann" or c.center or c.power != 2.0:
            raise ValueError(
                "LogMelSpectrogram computes the report's framing only (Hann window of n_fft samples, "
                "no centring, power); use asc_keras.features.logmel.logmel for other settings"
            )
        self._fb = np.ascontiguousarray(filterbank(self.feature_config).T)  # (bins, mels)

    def call(self, waveform):
        cfg = self.feature_config
        stft = tf.signal.stft(
            tf.cast(waveform, "float32"),
            frame_length=cfg.n_fft,
            frame_step=cfg.hop_length,
            fft_length=cfg.n_fft,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )
        power = tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))
        mel = tf.tensordot(power, tf.constant(self._fb), axes=1)
        return tf.math.log(mel + cfg.log_offset)

    def compute_output_shape(self, input_shape):
        cfg = self.feature_config
        n = input_shape[-1]
        frames = None if n is None else 1 + (n - cfg.n_fft) // cfg.hop_length
        return tuple(input_shape[:-1]) + (frames, cfg.n_mels)

    def get_config(self):
        return {**super().get_config(), "feature_config": dataclasses.asdict(self.feature_config)}
