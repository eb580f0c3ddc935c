"""The ``asc-keras`` command.

    asc-keras predict MODEL AUDIO... [--hop 1.0] [--format table|csv|json] [--output FILE] [--windows]

MODEL is a .tflite (run with LiteRT) or .keras file (loaded in safe mode).  AUDIO files
may have any length, sample rate and channel count (WAV, FLAC, OGG).  Files that cannot be
read are reported on stderr and skipped; exit status 1 if any was skipped, 2 on a usage
or model error, 0 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from asc_keras.config import SCENE_CLASSES


def _render(results, fmt: str, windows: bool) -> str:
    ok = [r for r in results if r.error is None]
    if fmt == "json":
        return json.dumps([{"file": r.path, "scene": r.scene, "probabilities": dict(zip(SCENE_CLASSES, r.probabilities)),
                            **({"windows": r.windows} if windows else {})} for r in ok], indent=1)
    rows = []
    for r in ok:
        rows.append([r.path, "all", r.scene] + [f"{p:.4f}" for p in r.probabilities])
        if windows:
            rows += [[r.path, f"{w['start_s']:.2f}", w["scene"]] + [f"{p:.4f}" for p in w["probabilities"]]
                     for w in r.windows]
    header = ["file", "window_start_s", "scene"] + list(SCENE_CLASSES)
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([header] + rows)
        return buf.getvalue()
    short = [h[:8] for h in header[3:]]
    width = max([len(r[0]) for r in rows] + [4])
    lines = [f"{'file':<{width}} {'window':>7} {'scene':<17} " + " ".join(f"{s:>8}" for s in short)]
    lines += [f"{r[0]:<{width}} {r[1]:>7} {r[2]:<17} " + " ".join(f"{v:>8}" for v in r[3:]) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="asc-keras", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify audio files with a trained model")
    p.add_argument("model", help=".tflite or .keras model")
    p.add_argument("audio", nargs="+", help="audio files (WAV/FLAC/OGG, any rate/length/channels)")
    p.add_argument("--hop", type=float, default=1.0, help="hop between 1 s windows, seconds (default 1.0)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", help="write to this file instead of the screen")
    p.add_argument("--windows", action="store_true", help="also list per-window predictions")
    args = ap.parse_args(argv)

    from asc_keras.evaluate.predict import predict_files

    try:
        results = predict_files(args.model, args.audio, hop_seconds=args.hop)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        if r.error:
            print(f"skipped: {r.error}", file=sys.stderr)
    text = _render(results, args.format, args.windows)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + ("\n" if not text.endswith("\n") else ""))
    else:
        print(text)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
