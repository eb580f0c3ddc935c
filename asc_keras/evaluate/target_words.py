"""The KD student's soft targets in words, for ``results.md``, the log and the ablation's table:
where they came from (:func:`describe_targets`) and what the probe found (:func:`lead_words`,
:func:`heard_words`), read from ``results.json``'s 'soft_targets' record."""

from __future__ import annotations


def learned_from_control_alone(t: dict | None) -> bool:
    """Whether ``results.json``'s 'soft_targets' ``t`` says the KD student learned from its CE
    control alone (a share of 1, the teachers not live: distill.control_share_no_lead)."""
    return bool(t) and t.get("control_share") == 1 and not t.get("live")


def lead_words(lead: dict | None) -> str:
    """The probe's lead (``clip_lead``'s record) in words: a clear one, one the teachers were
    run live on though not clear (``distill.live_lead_p``), one too small for that, or none."""
    if not lead or lead["lead"] <= 0:
        return "no lead"
    if lead["clear"]:  # a limit under the clear lead's may still keep the teachers out
        return (
            "a clear lead"
            if lead.get("live", True)
            else "a clear lead, its p not below distill.live_lead_p"
        )
    return "a lead, not a clear one" + (" (distill.live_lead_p)" if lead.get("live") else "")


def heard_words(lead: dict | None) -> str:
    """How the probe heard the held-out clips (``clip_lead``'s record), where not only as
    recorded: ', each heard as recorded and through D simulated devices (...)'; else ''."""
    d = (lead or {}).get("devices")
    return (f", each heard as recorded and through {d} simulated devices (distill.probe_devices)"
            if d else "")  # fmt: skip


def describe_targets(t: dict | None) -> str:
    """Where the soft targets came from (``results.json``'s 'soft_targets'), and why where
    ``distill.target_source`` 'auto' chose."""
    if not t:
        return "none"
    clip = ("the teachers' output on each augmented batch the student trains on, run live (distill."
            "clip_targets)") if t.get("live") else "the teachers' output on each 1 s clip"  # fmt: skip
    if t.get("teacher_view") == "parallel":
        clip += (", each clip heard through a device drawn at every step from those that recorded "
                 "its sound, its own included (distill.teacher_view)")  # fmt: skip
    where = {"recording": "the teachers' output on each clip's whole 10 s recording",
             "clip": clip}.get(t.get("source"), str(t.get("source")))  # fmt: skip
    a, share = t.get("auto"), t.get("control_share")
    if a and a.get("label_probability") is not None:
        where += (
            f" (target_source 'auto': on the {a['recordings']} training recordings the "
            f"teachers learned from, their ensemble gives the label {a['label_probability']:.2f} on "
            f"average, {'at least' if a['source'] == 'clip' else 'below'} {a['limit']:.2f})"
        )
    lead = t.get("lead")
    if lead:  # distill.clip_targets 'auto': who was ahead on the clips held out from the teachers
        heard = heard_words(lead)
        heard += "," if heard else ""  # the clause closes before "their ensemble"
        where += (
            f"; {'live' if t.get('live') else 'unused' if share == 1 else 'stored'} because on "
            f"the {lead['clips']} training clips "
            f"of {lead['locations']} locations held out from the teachers{heard} their "
            "ensemble gave the "
            f"label {100 * lead['teachers_label']:.1f} % of its probability against "
            f"{100 * lead['student_label']:.1f} % for the same student trained with CE on the other "
            f"clips (accuracy {100 * lead['teachers']:.1f} against {100 * lead['student']:.1f} %), "
            f"{lead_words(lead)} (by location "
            f"{100 * lead['lead']:+.1f} points, p = {lead['p_value']:.3f}; distill.clip_targets 'auto')"
        )
    live = "the CE control's output on each augmented batch the student trains on, run live"
    if share and t.get("control_share_by") == "confidence":  # per example, by the label's share
        where = (f"{where} and {live}, mixed per example: the control's share {share:g} scaled by how "
                 "much each gives the label, s·p_control[label] / ((1 − s)·p_teachers[label] + "
                 "s·p_control[label]) (distill.control_share, control_share_by 'confidence')")  # fmt: skip
    elif share == 1:  # 'auto' without a lead, distill.control_share_no_lead 1: born-again
        where = f"{live}, alone (born-again; distill.control_share_no_lead), in place of {where}"
    elif share:  # the rest of each target: the CE control on the very batch the student saw
        where = (f"{100 * (1 - share):.0f} % {where}, {100 * share:.0f} % {live} "
                 "(distill.control_share)")  # fmt: skip
    if t.get("temperature") is not None:  # the KD term's T (live_temperature: no part stored)
        where += f"; T = {t['temperature']:g}"
    if t.get("alpha") is not None:  # the labels' weight (recording_alpha: recording-level targets)
        where += f", the labels' weight α = {t['alpha']:g}"
    return where
