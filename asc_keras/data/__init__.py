"""Data layer: TAU Urban Acoustic Scenes 2022 Mobile reader, audio loading, generated dataset."""

from asc_keras.data.audio import AudioFixes, load_audio
from asc_keras.data.errors import AudioError, DataError
from asc_keras.data.tau import TauDataset, parse_clip_name, read_tau, rebuild_recordings

__all__ = [
    "AudioError",
    "AudioFixes",
    "DataError",
    "TauDataset",
    "load_audio",
    "parse_clip_name",
    "read_tau",
    "rebuild_recordings",
]
