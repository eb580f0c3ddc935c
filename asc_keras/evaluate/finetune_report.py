"""``results.md`` of ``asc-keras finetune``: per-class accuracy and the confusion matrix of the
validation files, float and int8, and the exported model's complexity."""

from __future__ import annotations

from collections.abc import Sequence


def finetune_markdown(results: dict, classes: Sequence[str]) -> str:
    """Markdown of ``results`` (``validation`` rows 'float' and 'int8', each from
    :func:`~asc_keras.metrics.classification_metrics` on whole files, and ``export``)."""
    v, e = results["validation"], results["export"]
    lines = ["# Fine-tuning: validation files", "",
             f"Each file's prediction is the mean of its windows' probabilities, as `asc-keras predict` "
             f"makes it; {v['int8']['n']} validation files, none of whose windows were trained on.", "",
             "| model | accuracy (macro over classes) | files right (micro) | log loss |",
             "|---|---|---|---|"]  # fmt: skip
    for name, label in (("float", "fine-tuned, float"), ("int8", f"int8 ({e['method']})")):
        m = v[name]
        lines.append(f"| {label} | {100 * m['accuracy']:.1f} % | {100 * m['micro_accuracy']:.1f} % "
                     f"| {m['log_loss']:.3f} |")  # fmt: skip
    lines += ["", "## Per class (int8)", "", "| class | accuracy | files |", "|---|---|---|"]
    counts = [sum(row) for row in v["int8"]["confusion"]]
    for c, n in zip(classes, counts, strict=True):
        lines.append(f"| {c} | {100 * v['int8']['per_class'][c]:.1f} % | {n} |")
    lines += ["", "## Confusion matrix (int8; rows: true class, columns: predicted)", "",
              "| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]  # fmt: skip
    for c, row in zip(classes, v["int8"]["confusion"], strict=True):
        lines.append(f"| {c} | " + " | ".join(str(k) for k in row) + " |")
    n = e["nessi"]
    ok = "within" if n["within_dcase_limits"] else "OUTSIDE"
    lines += ["", "## Exported model", "",
              f"`student_int8.tflite`: {n['param_bytes']:,} parameter bytes, {n['macs']:,} MACs per window "
              f"(NeSsi's count): {ok} the DCASE limits.", ""]  # fmt: skip
    return "\n".join(lines)
