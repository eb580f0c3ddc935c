"""results.md: a readable summary of results.json."""
from __future__ import annotations

from pathlib import Path


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def write_results_md(results: dict, path: str | Path) -> Path:
    r = results
    lines = [f"# {r['system_name']} (system {r['system']}, profile {r['profile']})", "",
             f"Data: `{r['data']}`  ", f"Wall time: {r.get('wall_time_s', 0):.0f} s", ""]
    for w in r.get("warnings") or []:
        lines += [f"> **WARNING:** {w}", ""]
    teachers = r.get("teachers") or {}
    if teachers:
        lines += ["## Teachers on 10 s fold-1 evaluation recordings (report Table 2)", "",
                  "| model | accuracy (%) | log loss | last-epoch val. acc. (%) |", "|---|---|---|---|"]
        for name, m in teachers.items():
            lines.append(f"| {name} | {_pct(m['accuracy'])} | {m['log_loss']:.3f} | "
                         f"{_pct(m.get('last_epoch_val_accuracy'))} |")
        lines.append("")
    s = r.get("student", {})
    lines += ["## Students on 1 s fold-1 evaluation clips (report Table 3)", "",
              "| model | accuracy (%) | macro acc. (%) | log loss | last-epoch val. acc. (%) |",
              "|---|---|---|---|---|"]
    rows = [((r.get("baseline") or {}).get("float"), "DCASE baseline (CE, its own features)"),
            (s.get("ce_control"), "CE control (same student, no teachers)"),
            (s.get("float"), "KD student, float Keras"), (s.get("int8"), "KD student, int8 TFLite (LiteRT)")]
    for m, label in rows:
        if m:
            lines.append(f"| {label} | {_pct(m['accuracy'])} | {_pct(m['macro_accuracy'])} | {m['log_loss']:.3f} | "
                         f"{_pct(m.get('last_epoch_val_accuracy'))} |")
    if s.get("kd_gain_points") is not None:
        lines += ["", f"Distillation gain over the CE control: {s['kd_gain_points']:+.1f} points (float)."]
    gap = s.get("int8_gap_points")
    if gap is not None:
        lines += ["", f"int8 vs float accuracy gap: {gap:+.2f} points."]
    devs = sorted({d for k in ("float", "int8") for d in (r.get("student", {}).get(k) or {}).get("per_device", {})},
                  key=lambda d: (d.startswith("s"), d))
    if devs:
        lines += ["", "### Per device (%)", "", "| model | " + " | ".join(devs) + " |",
                  "|---|" + "---|" * len(devs)]
        for key in ("float", "int8"):
            m = r["student"].get(key)
            if m:
                lines.append(f"| {key} | " + " | ".join(_pct(m["per_device"].get(d)) for d in devs) + " |")
    m = r.get("student", {}).get("int8") or r.get("student", {}).get("float")
    if m:
        classes = list(m["per_class"])
        lines += ["", "### Per class (%)", "", "| " + " | ".join(classes) + " |", "|" + "---|" * len(classes),
                  "| " + " | ".join(_pct(m["per_class"][c]) for c in classes) + " |"]
    c = r.get("complexity", {})
    if c:
        lines += ["", "## Complexity (per 1 s input, DCASE rules)", "", "| model | params | MACs | int8 KB |",
                  "|---|---|---|---|"]
        for key, label in (("keras", "Keras student"), ("tflite", "int8 TFLite")):
            if key in c:
                lines.append(f"| {label} | {c[key]['params']:,} | {c[key]['macs'] / 1e6:.2f} M | {c[key]['int8_kb']:.1f} |")
        if "sparsity" in c:
            lines.append(f"\nWeight sparsity after pruning: {100 * c['sparsity']:.1f} %.")
    lines += ["", "Plots: `plots/`.  Resolved configuration: `config.yaml`.  Submission files: `submission/`.", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
