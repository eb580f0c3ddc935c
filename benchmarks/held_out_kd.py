"""Would a KD probe tell where live teaching pays?  A measurement, not a default.

``distill.clip_targets: auto`` runs the teachers live where their ensemble beats a CE probe
student on the clips of the training locations held out from them (``stages.teaching``).  This
script asks the question more directly on a run's stored work folder: the same probe student,
taught by the same teachers run live (as the KD student would be; the run's weights and teacher
view), trained on the same clips the teachers learned from, scored against the stored CE probe
on the held-out clips -- as recorded and through the probe's simulated devices
(``distill.probe_devices``), by location (the sign-flip test of ``metrics.grouped_lead``).

    python benchmarks/held_out_kd.py DATA WORK SEED [--set key=value ...]

DATA and WORK: the set and the work folder an ``asc-keras ablation --profile quick --data DATA
--work WORK`` of seed SEED used (its teachers, targets and probe are read back; what is missing is
trained).  Prints one line: the teachers' lead, and the KD probe's over the CE probe.
docs/probe-sets.md ("A KD probe") has what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np


def _scores(model, cfg, held, splits) -> np.ndarray:
    """(clips, 1 + D) the probability ``model`` gives each held-out clip's label, as recorded and
    through the probe's D simulated devices."""
    from asc_keras.stages.probe_devices import student_device_labels

    p = model.predict(held.inputs(), batch_size=256, verbose=0)[np.arange(len(held)), held.labels]
    dev = np.asarray(student_device_labels(model, cfg, held, splits)["p_label"], float)
    return np.column_stack([p, dev])


def main(argv=None) -> None:
    from asc_keras.metrics import grouped_lead
    from asc_keras.orchestration.run import prepare_shared
    from asc_keras.presets import parse_overrides, system_config
    from asc_keras.stages.probe import clip_lead, held_out_split
    from asc_keras.stages.shared import RunPlace
    from asc_keras.stages.teachers import clip_location
    from asc_keras.stages.teaching import live_teachers
    from asc_keras.training.student import train_student

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("data")
    ap.add_argument("work")
    ap.add_argument("seed", type=int)
    ap.add_argument("--set", nargs="*", default=[], dest="overrides")
    a = ap.parse_args(argv)
    cfg = system_config(1, "quick", parse_overrides(a.overrides))
    cfg = dataclasses.replace(cfg, seed=a.seed)
    if not cfg.distill.probe_devices:
        raise SystemExit("held_out_kd.py scores through the probe's devices: keep "
                         "distill.probe_devices above 0")  # fmt: skip
    live = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, clip_targets="live"))
    with tempfile.TemporaryDirectory() as tmp:
        place = RunPlace(Path(tmp), Path(a.work), Path(a.data), verbose=0)
        prep = prepare_shared(cfg, place, log=lambda s: None)
        lead = clip_lead(cfg, prep.targets, prep.splits)
        if lead is None:
            raise SystemExit(f"{a.data}: its targets are not clip-level, so no probe ran")
        learn, held = held_out_split(cfg, prep.splits)
        t = live_teachers(live, prep.targets, prep.teacher_folders, prep.splits)
        if t is None:  # a teacher of weight above 0 on its own front end (PANNs'): cannot run live
            raise SystemExit(f"{a.data}: the teachers cannot run on the student's log-mels")
        kd = train_student(live, learn, held, None, run_dir=Path(tmp) / "kd-probe",
                           teachers=list(t.models), teacher_weights=t.weights, verbose=0)  # fmt: skip
        probe = prep.targets.meta["probe"]
        ce = np.column_stack([probe["p_label"], probe["devices"]["p_label"]])
        ours = _scores(kd, cfg, held, prep.splits)
    at = [clip_location(n) for n in held.names]
    own, both = grouped_lead(ours[:, 0], ce[:, 0], at), grouped_lead(ours.mean(1), ce.mean(1), at)
    print(json.dumps({
        "data": a.data, "seed": a.seed, "teachers_lead": lead["lead"], "teachers_p": lead["p_value"],
        "kd_probe_lead_as_recorded": own["lead"], "p_as_recorded": own["p_value"],
        "kd_probe_lead_with_devices": both["lead"], "p_with_devices": both["p_value"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
