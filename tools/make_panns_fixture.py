"""Write the PANNs-import test fixture with real PyTorch and torchlibrosa (run once; CI needs neither).

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.14.1 torchlibrosa==0.1.0 librosa numpy
    /tmp/torchenv/bin/python tools/make_panns_fixture.py tests/fixtures

A width-reduced MobileNetV2 in the layout of PANNs' ``MobileNetV2`` (qiuqiangkong/
audioset_tagging_cnn, ``pytorch/models.py``: the same module names, AvgPool strides, ReLU6,
BatchNorm, the bn0-over-mels front and the max + mean pooling head; written here, not copied),
with random weights and BatchNorm statistics, saved as PANNs saves checkpoints
(``{'model': state_dict, 'iteration': ...}``) in both of torch.save's formats:

* ``panns_mobilenetv2_tiny_legacy.pth``: the pre-1.6 format of the published 2019-2020 files;
* ``panns_mobilenetv2_tiny_zip.pth``: today's zip format;
* ``panns_mobilenetv2_tiny_io.npz``: a fixed log-mel input (batch, time, mels) and PyTorch's
  ``clipwise_output`` for it (eval mode), which the Keras import must reproduce;
* ``panns_mobilenetv2_tiny_audio.npz``: a fixed 32 kHz waveform (batch, samples) and what the
  model gives for it with PANNs' own front end in front, as PANNs' ``MobileNetV2.forward`` runs
  it: torchlibrosa's ``Spectrogram`` (window 1024, hop 320, periodic Hann, centred, reflect
  padding, power) and ``LogmelFilterBank`` (64 Slaney mel bands from 50 to 14,000 Hz, power in dB:
  ref 1.0, amin 1e-10, no top_db) -- the log-mels, ``embedding`` (``fc1`` after ReLU) and
  ``clipwise_output``.  asc_keras' NumPy front end and the Keras model must reproduce them.

The front end's tensors (the STFT's DFT matrices and the mel filters: fixed constants, 4 MB here)
are left out of the saved checkpoints to keep the fixture small; the import drops them anyway.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchlibrosa.stft import LogmelFilterBank, Spectrogram

SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 2),
    (6, 160, 3, 1),
    (6, 320, 1, 1),
]
WIDTH, LAST, FC1, CLASSES, MELS = 0.0625, 32, 16, 527, 64
# PANNs' front end (pytorch/main.py's defaults for the AudioSet models).
SAMPLE_RATE, WINDOW, HOP, FMIN, FMAX = 32000, 1024, 320, 50, 14000


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = round(inp * t)
        self.use_res = stride == 1 and inp == oup
        dw = [
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
            nn.AvgPool2d(stride),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        expand = [
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        ]
        self.conv = nn.Sequential(*(dw if t == 1 else expand + dw))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class TinyPannsMobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(MELS)
        c = int(32 * WIDTH)
        layers = [
            nn.Sequential(
                nn.Conv2d(1, c, 3, 1, 1, bias=False),
                nn.AvgPool2d(2),
                nn.BatchNorm2d(c),
                nn.ReLU6(inplace=True),
            )
        ]
        for t, ch, n, s in SETTING:
            for i in range(n):
                layers.append(InvertedResidual(c, int(ch * WIDTH), s if i == 0 else 1, t))
                c = int(ch * WIDTH)
        layers.append(
            nn.Sequential(
                nn.Conv2d(c, LAST, 1, 1, 0, bias=False),
                nn.BatchNorm2d(LAST),
                nn.ReLU6(inplace=True),
            )
        )
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(LAST, FC1)
        self.fc_audioset = nn.Linear(FC1, CLASSES)
        # Made last, so the random weights above are those of the earlier fixture.
        self.spectrogram_extractor = Spectrogram(
            n_fft=WINDOW,
            hop_length=HOP,
            win_length=WINDOW,
            window="hann",
            center=True,
            pad_mode="reflect",
            freeze_parameters=True,
        )
        self.logmel_extractor = LogmelFilterBank(
            sr=SAMPLE_RATE,
            n_fft=WINDOW,
            n_mels=MELS,
            fmin=FMIN,
            fmax=FMAX,
            ref=1.0,
            amin=1e-10,
            top_db=None,
            freeze_parameters=True,
        )

    def logmel(self, waveform):  # (batch, samples) -> (batch, 1, time, mels), PANNs' front end
        return self.logmel_extractor(self.spectrogram_extractor(waveform))

    def embedding(self, x):  # x: (batch, 1, time, mels) log-mels, as after PANNs' logmel_extractor
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        x = self.features(x).mean(dim=3)
        x = x.max(dim=2)[0] + x.mean(dim=2)
        return torch.relu(self.fc1(x))

    def forward(self, x):
        return torch.sigmoid(self.fc_audioset(self.embedding(x)))


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = TinyPannsMobileNetV2()
    with torch.no_grad():  # statistics and affine parameters away from their defaults
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 64, MELS)).astype(np.float32))
    with torch.no_grad():
        y = model(x).numpy()
        # 1 s of noise with a tone and a chirp, loud enough that no band is near amin.
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        rng = np.random.default_rng(1)
        wave = np.stack(
            [
                0.05 * rng.normal(size=t.size) + 0.3 * np.sin(2 * np.pi * f0 * t + 900 * t**2)
                for f0 in (440.0, 2500.0)
            ]
        ).astype(np.float32)
        mels = model.logmel(torch.from_numpy(wave))
        audio_io = {
            "waveform": wave,
            "logmel": mels.numpy()[:, 0],
            "embedding": model.embedding(mels).numpy(),
            "clipwise_output": model(mels).numpy(),
        }
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(("spectrogram_extractor.", "logmel_extractor."))
    }
    checkpoint = {"iteration": 0, "model": state}
    torch.save(
        checkpoint, out / "panns_mobilenetv2_tiny_legacy.pth", _use_new_zipfile_serialization=False
    )
    torch.save(checkpoint, out / "panns_mobilenetv2_tiny_zip.pth")
    np.savez(
        out / "panns_mobilenetv2_tiny_io.npz",
        logmel=x.numpy()[:, 0],
        clipwise_output=y,
        width_mult=WIDTH,
        last_channel=LAST,
        fc1_units=FC1,
        audioset_classes=CLASSES,
    )
    np.savez(out / "panns_mobilenetv2_tiny_audio.npz", sample_rate=SAMPLE_RATE, **audio_io)
    n = sum(p.numel() for p in state.values())
    print(f"{n:,} numbers; torch {torch.__version__}; wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"))
