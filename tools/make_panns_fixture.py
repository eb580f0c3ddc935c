"""Write the PANNs-import test fixture with real PyTorch (run once; CI needs no torch).

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python tools/make_panns_fixture.py tests/fixtures

A width-reduced MobileNetV2 in the layout of PANNs' ``MobileNetV2`` (qiuqiangkong/
audioset_tagging_cnn, ``pytorch/models.py``: the same module names, AvgPool strides, ReLU6,
BatchNorm, the bn0-over-mels front and the max + mean pooling head; written here, not copied),
with random weights and BatchNorm statistics, saved as PANNs saves checkpoints
(``{'model': state_dict, 'iteration': ...}``) in both of torch.save's formats:

* ``panns_mobilenetv2_tiny_legacy.pth``: the pre-1.6 format of the published 2019-2020 files;
* ``panns_mobilenetv2_tiny_zip.pth``: today's zip format;
* ``panns_mobilenetv2_tiny_io.npz``: a fixed log-mel input (batch, time, mels) and PyTorch's
  ``clipwise_output`` for it (eval mode), which the Keras import must reproduce.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

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

    def forward(self, x):  # x: (batch, 1, time, mels) log-mels, as after PANNs' logmel_extractor
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        x = self.features(x).mean(dim=3)
        x = x.max(dim=2)[0] + x.mean(dim=2)
        return torch.sigmoid(self.fc_audioset(torch.relu(self.fc1(x))))


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
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = {"iteration": 0, "model": model.state_dict()}
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
    n = sum(p.numel() for p in model.state_dict().values())
    print(f"{n:,} numbers; torch {torch.__version__}; wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"))
