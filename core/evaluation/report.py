"""The evaluation report: `scores.csv` (one row per image), `summary.csv` (one row per method: means with
95% intervals, FID, KID), `report.html` (grid of images per method, table of means, which metrics ran)
and `grid.png`. Columns are documented in docs/evaluation.md."""
import csv
import html
import math
import os
from pathlib import Path

from .grid import cell_source, column_key, grid_layout, write_grid_png
from .manifest import EvalRow
from .scoring import LOWER_IS_BETTER
from .stats import mean_ci95
from .weights import Availability

ROW_COLUMNS = ["method", "case", "seed", "prompt", "image", "reference", "content"]
SET_COLUMNS = ["fid", "kid", "kid_std"]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_scores_csv(rows: list[EvalRow], scores: list[dict], columns: list[str], path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ROW_COLUMNS + columns)
        for row, s in zip(rows, scores):
            info = [row.method, row.case, row.seed, row.prompt, row.image, row.reference, row.content]
            writer.writerow([_cell(v) for v in info] + [_cell(s[c]) for c in columns])
    return Path(path)


def summarise(rows: list[EvalRow], scores: list[dict], columns: list[str], sets: dict) -> list[dict]:
    """One dict per method (first-seen order): n, <col>_mean/_ci_low/_ci_high/_n, and fid/kid/kid_std when run."""
    methods = list(dict.fromkeys(r.method for r in rows))
    summary = []
    for method in methods:
        mine = [s for r, s in zip(rows, scores) if r.method == method]
        entry = {"method": method, "n": len(mine)}
        for column in columns:
            mean, low, high, n = mean_ci95(s[column] for s in mine)
            entry.update({f"{column}_mean": mean, f"{column}_ci_low": low, f"{column}_ci_high": high, f"{column}_n": n})
        if sets:
            entry.update({k: sets[method][k] for k in SET_COLUMNS})
        summary.append(entry)
    return summary


def write_summary_csv(summary: list[dict], path) -> Path:
    keys = list(summary[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        writer.writerows([_cell(entry[k]) for k in keys] for entry in summary)
    return Path(path)


def _interval(entry: dict, column: str) -> str:
    mean, low, high = (entry[f"{column}_{k}"] for k in ("mean", "ci_low", "ci_high"))
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if math.isnan(low) else f"{mean:.4g} [{low:.4g}, {high:.4g}]"


def markdown_table(summary: list[dict], columns: list[str]) -> str:
    """The means table as Markdown (for a README or an issue)."""
    sets = [c for c in ("fid", "kid") if c in summary[0]]
    head = ["method", "n"] + [f"{c} {'↓' if c in LOWER_IS_BETTER else '↑'}" for c in columns + sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        values = [_interval(e, c) for c in columns] + _set_values(e, sets)
        lines.append("| " + " | ".join([e["method"], str(e["n"])] + values) + " |")
    return "\n".join(lines)


def _set_values(entry: dict, sets: list[str]) -> list[str]:
    values = {"fid": _cell(entry.get("fid")) or "–",
              "kid": "–" if math.isnan(entry.get("kid", math.nan)) else f"{entry['kid']:.4g} ± {entry['kid_std']:.2g}"}
    return [values[c] for c in sets]


def write_html(rows: list[EvalRow], summary: list[dict], columns: list[str], availability: list[Availability],
               out_dir: Path, grid_png: str, notes: list[str]) -> Path:
    out_dir = Path(out_dir)
    esc = html.escape
    grid_columns, methods, cells = grid_layout(rows, max_columns=50)
    first = {key: next(r for r in rows if column_key(r) == key) for key in grid_columns}
    sets = [c for c in ("fid", "kid") if c in summary[0]]
    parts = ["<!doctype html><meta charset='utf-8'><title>StyleSmith evaluation</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:center}img{width:128px;height:128px;"
             "object-fit:cover}.note{background:#fff4d6;padding:.5em 1em}</style>",
             "<h1>StyleSmith evaluation</h1>"]
    parts += [f"<p class='note'>{esc(n)}</p>" for n in notes]
    parts.append("<h2>Means with 95% intervals</h2><table><tr><th>method</th><th>n</th>")
    parts += [f"<th>{esc(c)} {'↓' if c in LOWER_IS_BETTER else '↑'}</th>" for c in columns + sets] + ["</tr>"]
    for e in summary:
        values = [_interval(e, c) for c in columns] + _set_values(e, sets)
        parts.append(f"<tr><td>{esc(e['method'])}</td><td>{e['n']}</td>"
                     + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>")
    parts.append("</table><h2>Metrics</h2><ul>")
    parts += [f"<li><b>{esc(a.metric)}</b>: {esc(a.status)}: {esc(a.detail)}</li>" for a in availability]
    parts.append(f"</ul><h2>Images</h2><p><a href='{esc(grid_png)}'>{esc(grid_png)}</a></p><table><tr><th></th>")
    for key in grid_columns:
        seed = "–" if key[1] == -1 else str(key[1])
        parts.append(f"<th title='{esc(first[key].prompt)}'>{esc(first[key].prompt[:40])}<br>seed {seed}</th>")
    parts.append("</tr>")
    for label in ["reference", "content"] + methods:
        parts.append(f"<tr><th>{esc(label)}</th>")
        for key in grid_columns:
            path = cell_source(label, key, first, cells)
            src = esc(Path(os.path.relpath(path, out_dir)).as_posix()) if path is not None else None
            parts.append(f"<td><img src='{src}' alt='{esc(label)}'></td>" if src else "<td>–</td>")
        parts.append("</tr>")
    parts.append("</table>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_report(rows, scores, columns, sets, availability, out_dir, notes=()) -> dict[str, Path]:
    """Write every report file into out_dir; return {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, scores, columns, sets)
    files = {"scores": write_scores_csv(rows, scores, columns, out_dir / "scores.csv"),
             "summary": write_summary_csv(summary, out_dir / "summary.csv"),
             "grid": write_grid_png(rows, out_dir / "grid.png")}
    files["html"] = write_html(rows, summary, columns, availability, out_dir, "grid.png", list(notes))
    (out_dir / "summary.md").write_text(markdown_table(summary, columns) + "\n", encoding="utf-8")
    files["markdown"] = out_dir / "summary.md"
    return files
