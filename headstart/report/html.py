"""The advisor's report as one HTML file that reads well in a browser and needs nothing else:
the plots are inline SVG drawn with matplotlib, the styles are in the page."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2733; max-width: 960px;
       margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #dde3ea; }
.sub { color: #5b6b7c; margin-top: 0; }
.verdict { background: #eef6ee; border-left: 5px solid #3c9a3c; padding: .8em 1.2em; margin: 1.2em 0; }
.verdict.warn { background: #fdf5e6; border-color: #d99a1c; } .verdict.bad { background: #fbecec; border-color: #c64545; }
table { border-collapse: collapse; margin: .6em 0; } th, td { padding: .3em .8em; text-align: right; }
th { background: #f3f6f9; } td:first-child, th:first-child { text-align: left; } tr:nth-child(even) td { background: #fafbfc; }
code { background: #f3f6f9; padding: .1em .35em; border-radius: 3px; }
.plot svg { max-width: 100%; height: auto; } .notes li { color: #5b6b7c; }
"""


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


COLORS = ("#2f7ed8", "#c64545", "#8a8a8a")


def learning_curve_svg(curve: list[dict[str, Any]], labels: dict[str, str]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [row["per_class"] for row in curve]
    for (key, label), color in zip(labels.items(), COLORS):
        pts = [(x, row[key]["mean"], row[key]["std"]) for x, row in zip(xs, curve) if row[key]["mean"] is not None]
        if not pts:
            continue
        x, m, s = (list(v) for v in zip(*pts))
        ax.plot(x, m, "o-", color=color, label=label)
        ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=color, alpha=0.18)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("labelled examples per class")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", frameon=False)
    ax.grid(alpha=0.3)
    return _svg(fig)


def ranking_svg(ranking: list[dict[str, Any]], metric: str) -> str:
    plt = _plt()
    rows = [r for r in ranking if r.get(metric) is not None][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1))
    ax.barh([r["model"] for r in rows], [r[metric] for r in rows], color="#2f7ed8")
    ax.set_xlabel(f"{metric} (higher is better)")
    for i, r in enumerate(rows):
        ax.text(r[metric], i, f" {r[metric]:.3f}", va="center", fontsize=9)
    return _svg(fig)


def confusion_svg(classes: list[str], matrix: list[list[int]]) -> str:
    plt = _plt()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(min(9, 1.2 + 0.45 * k), min(8, 1 + 0.42 * k)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(r) for r in matrix) or 1
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if matrix[i][j]:
                    ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=8,
                            color="white" if matrix[i][j] > top / 2 else "#1d2733")
    return _svg(fig)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def render(r: dict[str, Any]) -> str:
    e = html.escape
    gain = r.get("transfer_gain")
    cls = {"transfer": "verdict", "train without transfer": "verdict bad"}.get(r["verdict"], "verdict warn")
    spread = r.get("gain_spread")
    gain_text = (f"{100 * gain:+.1f}" + (f" ± {100 * spread:.1f}" if spread is not None else "")
                 + f" points over no transfer: {r['gain_note']}" if gain is not None else "not measured")
    if r.get("probe_gain"):
        pg = r["probe_gain"]
        gain_text += (f"; the linear probe alone: {100 * pg['gain']:+.1f} ± {100 * pg['spread']:.1f} points on all "
                      f"{pg['examples']} {r['modality']}s")
    data_q = e(r["data"])
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>headstart advice: {data_q}</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>Should you transfer here?</h1>",
             f"<p class='sub'>{data_q}: {r['n']} {r['modality']}s, {len(r['classes'])} classes "
             f"(smallest class {min(r['per_class'].values())}), {r['seeds']} seeds, {r['seconds']} s</p>",
             f"<div class='{cls}'><b>{e(r['verdict'].capitalize())}.</b> Start from <b>{e(r['recommended_model'])}</b> "
             f"with <b>{e(r['recommended_strategy'])}</b>: {e(r['strategy_reason'])}.<br>"
             f"Expected gain: {e(gain_text)}.<br><code>{e(r['recommended_command'])}</code></div>"]

    parts.append("<h2>1. The same kind of input?</h2><table><tr><th>model</th><th>verdict</th><th>notes</th></tr>")
    for c in r["conditions"]:
        s = c["same_input"]
        parts.append(f"<tr><td>{e(c['model'])}</td><td>{e(s['verdict'])}</td>"
                     f"<td style='text-align:left'>{e('; '.join(s['notes']) or '–')}</td></tr>")
    im = r["inputs"]
    if r["modality"] == "image":
        parts.append(f"</table><p>DATA's images: median {im['median_width']}×{im['median_height']} px, "
                     f"{_pct(im['greyscale_share'])} greyscale (modes {e(', '.join(im['modes']))}).</p>")
    else:
        parts.append(f"</table><p>DATA's texts: median {im['median_words']} words (longest {im['max_words']}), "
                     f"median {im['median_tokens']} tokens for {e(r['recommended_model'])}.</p>")

    parts.append("<h2>2. Far more source data?</h2><table><tr><th>model</th><th>source</th><th>source size</th>"
                 "<th>here</th><th>verdict</th></tr>")
    for c in r["conditions"]:
        m = c["more_source_data"]
        here = sum(r["per_class"].values())
        parts.append(f"<tr><td>{e(c['model'])}</td><td>{e(m['source_dataset'] or '–')}</td>"
                     f"<td>{m['source_size']:,}</td><td>{here:,}</td><td>{e(m['verdict'])}</td></tr>")
    parts.append("</table>")

    metric = r["ranking_metric"]
    keys = [k for k in ("logme", "leep", "nce", "hscore", "knn", "linear") if any(k in row for row in r["ranking"])]
    parts.append("<h2>3. Do the pretrained features help?</h2><h3>Ranking without fine-tuning</h3>"
                 "<table><tr><th>rank</th><th>model</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>")
    for row in r["ranking"]:
        parts.append(f"<tr><td>{row.get('rank') or '–'}</td><td>{e(row['model'])}</td>"
                     + "".join(f"<td>{_fmt(row.get(k))}</td>" for k in keys) + "</tr>")
    parts.append(f"</table><div class='plot'>{ranking_svg(r['ranking'], metric)}</div>"
                 "<p class='sub'>LogME: evidence of a linear model on the features; LEEP, NCE: how well the source "
                 "head's classes predict yours; H-score: class separation; knn: cross-validated accuracy.</p>")
    parts.append(f"<h3>Learning curve ({e(r['recommended_model'])})</h3>"
                 f"<div class='plot'>{learning_curve_svg(r['learning_curve'], r['curve_labels'])}</div>"
                 "<table><tr><th>per class</th>" + "".join(f"<th>{e(v)}</th>" for v in r["curve_labels"].values())
                 + "</tr>")
    for row in r["learning_curve"]:
        cells = "".join(
            f"<td>{_pct(row[k]['mean'])} ± {_pct(row[k]['std'])}</td>" if row[k]["mean"] is not None else "<td>–</td>"
            for k in r["curve_labels"])
        parts.append(f"<tr><td>{row['per_class']}</td>{cells}</tr>")
    parts.append(f"</table><p class='sub'>Mean ± standard deviation over {r['seeds']} seeds; each seed holds out "
                 f"{_pct(r['test_fraction'])} of every class for testing.</p>")
    g = r["gain_measured"]
    names = {"transfer": g["strategy"]} | {k: v for k, v in r["curve_labels"].items() if k != "transfer"}
    parts.append("<h3>Measured at your size</h3><table><tr>"
                 + "".join(f"<th>{e(names[k])}</th>" for k in g["balanced_accuracy"]) + "</tr><tr>"
                 + "".join(f"<td>{_pct(v)}</td>" for v in g["balanced_accuracy"].values())
                 + f"</tr></table><p class='sub'>Balanced accuracy on {g['examples']} of your {r['modality']}s, each "
                 f"scored by runs trained on the other folds ({g['per_class']} per class): where the expected gain "
                 "comes from.</p>")
    un = r.get("unlabelled")
    if un:
        gap, hist = un.get("domain") or {}, un["confidence"]["histogram"]
        parts.append(
            f"<h3>Unlabelled examples</h3><p>{e(un['verdict'])}</p><table><tr><th>used</th><th>left out (the "
            f"labelled ones, repeats)</th><th>domain classifier</th><th>proxy A-distance</th><th>mean confidence"
            f"</th></tr><tr><td>{un['unlabelled']['used']}</td><td>{un['unlabelled']['duplicates_left_out']}</td>"
            f"<td>{_fmt(gap.get('classifier_balanced_accuracy'))}</td><td>{_fmt(gap.get('proxy_a_distance'))}</td>"
            f"<td>{_pct(un['confidence']['mean'])}</td></tr></table><p class='sub'>The head's confidence on them "
            "(its highest class probability), in tenths from 0 to 1: " + ", ".join(str(v) for v in hist) + ". A "
            "domain classifier near 50% cannot tell them from your labelled examples (the same domain).</p>")
    conf = r["confusion"]
    parts.append(f"<h2>The recommended model's errors</h2><p>A linear probe on {e(r['recommended_model'])}'s "
                 f"features, trained on the first seed's training part: {_pct(conf['accuracy'])} held-out accuracy."
                 f"</p><div class='plot'>{confusion_svg(conf['classes'], conf['matrix'])}</div>")
    if r["notes"]:
        parts.append("<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in r["notes"]) + "</ul>")
    parts.append("<p class='sub'>Made by headstart advise. The same content is in the JSON (--json).</p></body></html>")
    return "\n".join(parts)


def write_html(report: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, render(report).encode("utf-8"))
    return path
