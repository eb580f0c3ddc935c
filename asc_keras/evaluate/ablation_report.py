"""The ablation's table and plot (written by :mod:`asc_keras.orchestration.ablation`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc_keras.evaluate.target_words import heard_words


def _mean_std(v) -> str:
    a = 100 * np.asarray(v, float)
    return f"{a.mean():.1f} ± {a.std():.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def _recordings(result: dict, key: str) -> str:
    v = [a for a in (result.get("students_recordings") or {}).get(key, []) if a is not None]
    return _mean_std(v) if v else "–"


# The paired lines: (row, baseline row, what their difference measures).
PAIRED = (
    # The line for sparse events: the control at least as good as the student trained plainly.
    ("ce_only", "plain", "The recipe's augmentation (CE only − trained plainly, no augmentation"),
    ("kd_ensemble", "ce_only", "Distillation gain (KD from the ensemble − CE only"),
    ("kd_control", "ce_only", "Soft targets as such (KD from the CE control − CE only"),
    ("kd_ensemble", "kd_control", "What the teachers know (KD from the ensemble − from the CE control"),
    ("kd_control_live", "kd_control",
     "The stored targets' inconsistency (born-again from the control run live − stored"),
    ("kd_control_share_0.5", "ce_only", "Mixed targets (½ teachers stored, ½ control live − CE only"),
    ("kd_control_share_0.5", "kd_ensemble", "A fixed half against the base row (½ control live − base"),
    ("kd_control_confidence", "ce_only", "Shares by confidence (per example, CA-MKD − CE only"),
    ("kd_control_confidence", "kd_control_share_0.5",
     "Shares by confidence against a fixed half (per example − ½ on every one"),
    ("kd_ensemble", "kd_control_share_0", "The control's live part (base with it − the teachers' alone"),
    ("kd_control_share_0", "ce_only", "The teachers' target alone (KD without the control − CE only"),
    ("kd_clip_live", "kd_clip_stored",
     "Live teachers (clip-level targets of each augmented batch − of the clean clip, stored"),
    ("kd_clip_live", "ce_only", "Live teachers against the control (clip-level, live − CE only"),
)  # fmt: skip


def _paired_lines(result: dict) -> list[str]:
    """The paired differences of :data:`PAIRED` whose rows both ran, seed by seed (the rows share
    each seed's data and teachers)."""
    s, lines = result["students"], []
    for row, base, what in PAIRED:
        if not (row in s and base in s):
            continue
        d = [100 * (k - c) for k, c in zip(s[row], s[base], strict=False)]
        spread = f" ± {np.std(d):.1f}" if len(d) > 1 else ""
        lines += ["", f"{what}, paired by seed): {np.mean(d):+.1f}{spread} points "
                      f"(per seed: {', '.join(f'{x:+.1f}' for x in d)})."]  # fmt: skip
    return lines


def _base_line(result: dict) -> list[str]:
    """What the base row's KD target is, seed by seed, where the seed's CE control co-teaches or
    the teachers run live (else nothing)."""
    share = result.get("control_share") or 0.0
    seeds, targets = result.get("seeds", []), [t or {} for t in result.get("soft_targets") or []]
    live = [bool(t.get("live")) for t in targets]
    # 'auto' without a lead (distill.live_lead_p), control_share_no_lead: the control's share there.
    alone = [s for s, t in zip(seeds, targets) if t.get("lead") and not t.get("live")
             and (t.get("control_share") or 0.0) != share]  # fmt: skip
    leads = [(seed, t["lead"]) for seed, t in zip(seeds, targets) if t.get("lead")]
    heard = next((heard_words(d) for _, d in leads if d.get("devices")), "")
    said = [("The teachers' lead over the probe student on the clips held out from them"
             f"{heard}, the label's probability (distill.clip_targets 'auto': live on a lead of p below "
             "distill.live_lead_p), per seed: "
             + "; ".join(f"{seed}: {100 * d['teachers_label']:.1f} % against "
                         f"{100 * d['student_label']:.1f} %, {100 * d['lead']:+.1f} points by "
                         f"location, p = {d['p_value']:.3f}" for seed, d in leads) + "."), ""] \
        if leads else []  # fmt: skip
    if alone:  # the share distill.control_share_no_lead gave those seeds
        s = targets[seeds.index(alone[0])].get("control_share") or 0.0
        whom = ("from the seed's CE control (row ce_only) alone, run live on each augmented batch: "
                "born-again" if s == 1 else "from the teachers' stored targets alone" if s == 0
                else f"{100 * s:.0f} % of each target from the seed's CE control run live, the "
                "rest from the teachers' stored targets")  # fmt: skip
        said = [f"On seed{'s' if len(alone) > 1 else ''} {', '.join(map(str, alone))} the teachers "
                f"showed no lead to run live on: the KD rows learn {whom} there "
                "(distill.control_share_no_lead).", "", *said]  # fmt: skip
    if any(live):  # stages.teaching: the control's share is for stored targets only
        where = "" if all(live) else (
            " on seeds " + ", ".join(str(s) for s, on in zip(seeds, live) if on)
            + f" (on the others from stored targets{' and the control' if share else ''})")  # fmt: skip
        heard = any(t.get("teacher_view") == "parallel" for t in targets)
        heard = (", hearing each clip through a device drawn from those that recorded its sound "
                 "(distill.teacher_view)") if heard else ""  # fmt: skip
        return [f"The KD rows learn from the teachers run live on each augmented batch{where} "
                "(distill.clip_targets; without the control's share, which is for stored "
                f"targets){heard}.", "", *said]  # fmt: skip
    if not share or len(alone) == len(seeds):
        return said
    teachers = "the teachers' stored targets"
    if result.get("control_share_by") == "confidence":
        how = (f"a share of each target set per example by confidence (a prior {share:g}, scaled by "
               "how much each side gives the label: distill.control_share_by) from the seed's CE "
               f"control (row ce_only) run live on each augmented batch, the rest from {teachers}")  # fmt: skip
    else:
        how = (f"{100 * (1 - share):.0f} % of each target from {teachers} and "
               f"{100 * share:.0f} % from the seed's CE control (row ce_only) run live on each "
               "augmented batch")  # fmt: skip
    return [f"The KD rows learn {how} (distill.control_share); kd_control_share_0 is the teachers' "
            "alone.", "", *said]  # fmt: skip


def write_ablation_md(result: dict, path: Path) -> Path:
    """Markdown table: accuracy (%) mean ± std over seeds, teachers then students."""
    n, teachers = len(result.get("seeds_done", result["seeds"])), result["teachers"]
    lines = [
        f"# Ablation: system {result['system']}, profile {result['profile']}, {n} seed(s)",
        "",
        "Accuracy (%) on fold-1 evaluation, mean ± std over seeds (std of the seeds, not of the mean).",
        "",
        *(_base_line(result) if teachers else []),  # what the KD rows learn: none without teachers
        "## Teachers on 10 s recordings",
        "",
    ]
    if teachers:
        lines += ["| teacher | accuracy (%) |", "|---|---|"]
        lines += [f"| {k} | {_mean_std(v)} |" for k, v in teachers.items()]
    else:  # orchestration.ablation: rows that learn from no teacher train none
        lines += ["None trained: no row of this table learns from the teachers (`plain`, "
                  "`ce_only` and the born-again rows need none)."]  # fmt: skip
    lines += [
        "",
        "## Students on 1 s clips (float Keras)",
        "",
        "| row | accuracy (%) | per seed | on 10 s recordings (%) |",
        "|---|---|---|---|",
    ]
    for k, v in result["students"].items():
        lines.append(
            f"| {result['labels'].get(k, k)} | {_mean_std(v)} | "
            f"{', '.join(f'{100 * a:.1f}' for a in v)} | {_recordings(result, k)} |"
        )
    lines += _paired_lines(result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_ablation(result: dict, path: Path) -> Path:
    """Horizontal bars with the seeds' standard deviation as error bars."""
    from asc_keras.evaluate.plots import _save, plt

    items = [(f"teacher: {k}", v) for k, v in result["teachers"].items()]
    items += [(result["labels"].get(k, k), v) for k, v in result["students"].items()]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(items) + 1.2))
    means = [100 * np.mean(v) for _, v in items]
    stds = [100 * np.std(v) for _, v in items]
    colours = ["tab:orange" if lab.startswith("teacher") else "tab:blue" for lab, _ in items]
    ax.barh(range(len(items)), means, xerr=stds, color=colours, capsize=3)
    ax.set_yticks(range(len(items)), [lab for lab, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%)")
    ax.set_xlim(0, 100)
    ax.axvline(10, color="grey", lw=0.8, ls="--")  # chance
    ax.set_title(
        f"Ablation, system {result['system']} ({len(result.get('seeds_done', result['seeds']))} seeds)"
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
