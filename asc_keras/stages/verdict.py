"""The run's verdict on the report's two claims, and the warnings that go with it.

The KD student against the CE control (1 s clips, and location by location), the teachers'
ensemble against the control on the same 10 s recordings (paired, per recording), the int8 gap;
then the plain-words warnings ``results.md`` and the run's log carry: teachers that know no more
than the student, a lead too small to resolve, a training still learning (with the setting that
sets its length, :func:`length_settings`).  Read from ``results.json``'s rows only, so a stored
results file can be judged again.
"""

from __future__ import annotations

from asc_keras.config import SystemConfig
from asc_keras.evaluate.target_words import learned_from_control_alone
from asc_keras.metrics import clear_lead, grouped_lead, paired_lead
from asc_keras.stages.teachers import clip_location
from asc_keras.training.length import floor_sets_length


def kd_lead(kd: dict, ce: dict, names) -> dict | None:
    """The KD student against the CE control on the same evaluation clips, location by location:
    whether one run's gain is more than what a location or two decides.

    Args: the two models' metrics with their 'clip_right' (:func:`~asc_keras.stages.results.score`;
    taken out here: results.json keeps counts, not one entry per clip), the clips' file ``names``
    in the same order.

    Returns :func:`~asc_keras.metrics.grouped_lead` of "KD no better" over the recording locations
    (their clips are right or wrong together), with 'clear' (a lead at p < metrics.CLEAR_LEAD_P) and
    'by_location': {location: [KD right, control right, clips]}; None without both lists."""
    a, b = kd.pop("clip_right", None), ce.pop("clip_right", None)
    if a is None or b is None or not len(a) == len(b) == len(names):
        return None
    groups, by = [clip_location(n) for n in names], {}
    for g, x, y in zip(groups, a, b, strict=True):
        by[g] = [u + v for u, v in zip(by.get(g, [0, 0, 0]), (x, y, 1), strict=True)]
    lead = grouped_lead(a, b, groups)
    return {**lead, "clear": clear_lead(lead["lead"], lead["p_value"]), "by_location": by}


def length_settings(cfg: SystemConfig, train_clips: int | None = None) -> dict:
    """The setting that sets each trained row's length (what a "still learning" warning names):
    the students' ``optim`` budget -- steps where set, else epochs, and ``optim.min_passes`` where
    its floor over the ``train_clips`` training clips is the longer -- the baseline's own in
    ``controls``."""
    o, c = cfg.optim, cfg.controls
    students = "optim.steps" if o.steps is not None else "optim.epochs"
    if train_clips and floor_sets_length(
        train_clips, o.batch_size, o.steps, o.rounds, o.min_passes
    ):
        students = "optim.min_passes"  # more optim.steps would not lengthen the students' training
    base = "controls.baseline_steps" if c.baseline_steps is not None else "controls.baseline_epochs"
    return {"student": students, "control": students, "baseline": base}


def verdict(results: dict, kd: dict | None = None) -> dict:
    """The run's answer to the report's two claims, in points: the KD student against the CE
    control (1 s clips; ``kd``: :func:`kd_lead`, location by location), and the teacher ensemble
    against the CE control on the same 10 s recordings (the control's clip probabilities averaged
    per recording), with whether that lead is clear (``ensemble_lead``: the paired counts,
    ``clear``; None where either model's per-recording results are missing)."""
    s = results["student"]
    ce = s.get("ce_control") or {}
    ens = (results.get("teachers") or {}).get("ensemble")
    own = ce.get("recording_accuracy")
    ahead = 100 * (ens["accuracy"] - own) if ens is not None and own is not None else None
    lead = None
    e_right, c_right = (ens or {}).get("recording_right"), ce.get("recording_right")
    if ahead is not None and e_right is not None and c_right is not None \
            and len(e_right) == len(c_right):  # fmt: skip
        lead = paired_lead(e_right, c_right)
        lead["clear"] = clear_lead(ahead, lead["p_value"])
    return {
        "kd_gain_points": s.get("kd_gain_points"),
        "kd_lead": kd,
        "ensemble_over_ce_recordings_points": ahead,
        "ensemble_lead": lead,
        "int8_gap_points": s["int8_gap_points"],
    }


def run_warnings(results: dict) -> list[str]:
    """The run's warnings in plain words, from ``results`` with its verdict and learning checks."""
    out, v = [], results["verdict"]
    ahead, lead = v["ensemble_over_ce_recordings_points"], v.get("ensemble_lead")
    kept_out = learned_from_control_alone(results.get("soft_targets"))
    if ahead is not None and ahead <= 0:
        out.append(
            f"the teacher ensemble is not ahead of the CE-only student on the same 10 s recordings "
            f"({ahead:+.1f} points; the student's clip probabilities averaged): the teachers know no "
            + ("more than the student learns alone (the probe found so before the KD student "
               "trained, which learned from its CE control alone). " if kept_out else
               "more than the student learns alone, and distilling from them may not pay: read "
               "the KD row over several seeds or sets (asc-keras ablation). ")
            + "Train the teachers longer or larger (teachers.steps, teachers.*_width), or give them "
            "knowledge from elsewhere: pretrained weights (teachers.pretrained_mobilenetv2), another "
            "TAU-layout set to train MobileNetV2 on first (teachers.pretrain_data, pretrain_epochs)."
        )  # fmt: skip
    elif ahead is not None and lead is not None and not lead["clear"]:
        out.append(
            f"the teacher ensemble is only {ahead:+.1f} points ahead of the CE-only student on the "
            f"same 10 s recordings: right on {lead['only_first_right']} the student gets wrong, wrong "
            f"on {lead['only_second_right']} it gets right, a lead that {lead['items']} recordings do "
            f"not resolve (one-sided sign test p = {lead['p_value']:.2f}). The teachers may know no "
            "more than the student learns alone, and distilling from them may not pay: read the KD "
            "row over several seeds (asc-keras ablation), or train the teachers longer or larger."
        )
    settings = results.get("length_settings") or {}  # absent in a results.json from before
    for stage, check in results["learning"].items():
        if check["ended"] is False:
            setting = settings.get(stage, "optim.steps")
            unit = next((u for u in ("epochs", "passes") if setting.endswith(u)), "steps")
            out.append(
                f"the {stage} was still learning when its training ended (validation accuracy "
                f"{check['last_quarter_gain_points']:+.1f} points over its last quarter): give it "
                f"more {unit} ({setting}) before reading its row."
            )
    return out
