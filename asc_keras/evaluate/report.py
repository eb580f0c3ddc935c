"""results.md: a readable summary of results.json, one short function per section."""

from __future__ import annotations

from pathlib import Path

from asc_keras.files import write_text


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _header(r: dict) -> list[str]:
    lines = [
        f"# {r['system_name']} (system {r['system']}, profile {r['profile']})",
        "",
        f"Data: `{r['data']}`  ",
        f"Wall time: {r.get('wall_time_s', 0):.0f} s",
        "",
    ]
    for w in r.get("warnings") or []:
        lines += [f"> **WARNING:** {w}", ""]
    return lines


def _teachers(r: dict) -> list[str]:
    teachers = r.get("teachers") or {}
    if not teachers:
        return []
    lines = [
        "## Teachers on 10 s fold-1 evaluation recordings (report Table 2)",
        "",
        "| model | accuracy (%) | log loss | last-epoch val. acc. (%) |",
        "|---|---|---|---|",
    ]
    for name, m in teachers.items():
        lines.append(
            f"| {name} | {_pct(m['accuracy'])} | {m['log_loss']:.3f} | "
            f"{_pct(m.get('last_epoch_val_accuracy'))} |"
        )
    return lines + [""]


def _students(r: dict) -> list[str]:
    s = r.get("student", {})
    lines = [
        "## Students on 1 s fold-1 evaluation clips (report Table 3)",
        "",
        "| model | accuracy (%) | macro acc. (%) | log loss | last-epoch val. acc. (%) |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ((r.get("baseline") or {}).get("float"), "DCASE baseline (CE, its own features)"),
        (s.get("ce_control"), "CE control (same student, no teachers)"),
        (s.get("float"), "KD student, float Keras"),
        (s.get("int8"), "KD student, int8 TFLite (LiteRT)"),
    ]
    for m, label in rows:
        if m:
            lines.append(
                f"| {label} | {_pct(m['accuracy'])} | {_pct(m['macro_accuracy'])} | "
                f"{m['log_loss']:.3f} | {_pct(m.get('last_epoch_val_accuracy'))} |"
            )
    if s.get("kd_gain_points") is not None:
        lines += [
            "",
            f"Distillation gain over the CE control: {s['kd_gain_points']:+.1f} points (float).",
        ]
    if s.get("int8_gap_points") is not None:
        lines += ["", f"int8 vs float accuracy gap: {s['int8_gap_points']:+.2f} points."]
    return lines


def _per_device_and_class(r: dict) -> list[str]:
    s, lines = r.get("student", {}), []
    devs = sorted(
        {d for k in ("float", "int8") for d in (s.get(k) or {}).get("per_device", {})},
        key=lambda d: (d.startswith("s"), d),
    )
    if devs:
        rows = [
            [key] + [_pct(s[key]["per_device"].get(d)) for d in devs]
            for key in ("float", "int8")
            if s.get(key)
        ]
        lines += ["", "### Per device (%)", ""] + _table(["model", *devs], rows)
    m = s.get("int8") or s.get("float")
    if m:
        classes = list(m["per_class"])
        lines += ["", "### Per class (%)", ""] + _table(
            classes, [[_pct(m["per_class"][c]) for c in classes]]
        )
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def _complexity(r: dict) -> list[str]:
    c = r.get("complexity", {})
    if not c:
        return []
    lines = [
        "",
        "## Complexity (per 1 s input, DCASE rules)",
        "",
        "| model | params | MACs | int8 KB |",
        "|---|---|---|---|",
    ]
    for key, label in (("keras", "Keras student"), ("tflite", "int8 TFLite")):
        if key in c:
            lines.append(
                f"| {label} | {c[key]['params']:,} | {c[key]['macs'] / 1e6:.2f} M | "
                f"{c[key]['int8_kb']:.1f} |"
            )
    if "sparsity" in c:
        lines.append(f"\nWeight sparsity after pruning: {100 * c['sparsity']:.1f} %.")
    return lines


def write_results_md(results: dict, path: str | Path) -> Path:
    """Write the markdown summary of ``results`` (the dict of ``results.json``) to ``path``."""
    lines = (
        _header(results)
        + _teachers(results)
        + _students(results)
        + _per_device_and_class(results)
        + _complexity(results)
    )
    lines += [
        "",
        "Plots: `plots/`.  Resolved configuration: `config.yaml`.  Submission files: `submission/`.",
        "",
    ]
    return write_text(path, "\n".join(lines))
