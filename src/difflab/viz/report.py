"""``difflab report RUN|SWEEP_DIR|EVAL_JSON --out DIR``: one static, self-contained HTML page (DIR/index.html).

It only reads result files: a training run (config.json, log.jsonl, samples/*.png, trajectories, eval JSON files
in the run folder), a sweep folder (sweep.json, table.json, heatmap_*.png, points/) or an evaluation JSON
(``difflab eval ... --json``). Images are copied beside the page (DIR/img/); training curves are inline SVG and
sweep tables are coloured HTML tables, so the page needs no server, no external URL and no plotting package.
Optionally (``samplers``) a small grid per sampler is drawn from the run's model with a fixed seed.

A few lines of inline script count, after the page has loaded, the images that failed to load
(``<body data-images=N data-broken-images=M>``), so a headless browser can check the page (tests/test_report.py).
"""

from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg")
CURVES = (("loss", "loss"), ("grad_norm", "gradient norm"), ("images_per_s", "images / s"), ("lr", "learning rate"))
MAX_GRIDS = 12

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;background:#fff}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-size:.8em;color:#555;max-width:420px}
img{image-rendering:pixelated;max-width:420px;border:1px solid #ddd}svg{background:#fcfcfc;border:1px solid #ddd}"""

CHECK_SCRIPT = """<script>window.addEventListener('load',function(){var im=document.images,b=0;
for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0)b++;}
document.body.setAttribute('data-images',im.length);document.body.setAttribute('data-broken-images',b);});</script>"""


def esc(x) -> str:
    return html.escape(str(x))


def fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


class Page:
    """An HTML page under construction whose images are copied into ``out/img``."""

    def __init__(self, out: Path, title: str):
        self.out, self.title, self.parts, self.images = out, title, [], 0
        (out / "img").mkdir(parents=True, exist_ok=True)

    def add(self, text: str):
        self.parts.append(text)

    def section(self, title: str):
        self.add(f"<h2>{esc(title)}</h2>")

    def image(self, src: Path, caption: str = ""):
        """Copy ``src`` beside the page and show it."""
        self.images += 1
        name = f"{self.images:03d}_{src.name}"
        shutil.copyfile(src, self.out / "img" / name)
        self.add(f'<figure><img src="img/{esc(name)}" alt="{esc(caption or src.name)}">'
                 f"<figcaption>{esc(caption or src.name)}</figcaption></figure>")

    def table(self, header, rows):
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(c if str(c).startswith("<td") else f"<td>{esc(fmt(c))}</td>" for c in r)
                       + "</tr>" for r in rows)
        self.add(f"<table><tr>{head}</tr>{body}</table>")

    def pre(self, text: str):
        self.add(f"<pre>{esc(text)}</pre>")

    def write(self) -> Path:
        doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
               f"<style>{CSS}</style></head><body><h1>{esc(self.title)}</h1>{''.join(self.parts)}{CHECK_SCRIPT}"
               "</body></html>")
        path = self.out / "index.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(doc, encoding="utf-8")
        tmp.replace(path)
        return path


# -- pieces ---------------------------------------------------------------------------------------------------
def svg_curve(xs, ys, label: str, width: int = 480, height: int = 220) -> str:
    """A line chart of (xs, ys) as inline SVG with min/max labels (non-finite points skipped)."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)
           if y is not None and math.isfinite(float(y)) and math.isfinite(float(x))]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (width - 70) / ((x1 - x0) or 1.0)
    sy = (height - 50) / ((y1 - y0) or 1.0)
    poly = " ".join(f"{55 + (x - x0) * sx:.1f},{height - 30 - (y - y0) * sy:.1f}" for x, y in pts)
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(label)}">'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{esc(label)}</text>'
            f'<line x1="55" y1="{height - 30}" x2="{width - 15}" y2="{height - 30}" stroke="#888"/>'
            f'<line x1="55" y1="20" x2="55" y2="{height - 30}" stroke="#888"/>'
            f'<text x="50" y="{height - 30}" text-anchor="end" font-size="10">{fmt(y0)}</text>'
            f'<text x="50" y="28" text-anchor="end" font-size="10">{fmt(y1)}</text>'
            f'<text x="55" y="{height - 14}" font-size="10">{fmt(x0)}</text>'
            f'<text x="{width - 15}" y="{height - 14}" text-anchor="end" font-size="10">step {fmt(x1)}</text>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{poly}"/>'
            + "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2" fill="#1f77b4"/>'
                      for p in (poly.split() if len(pts) <= 50 else []))
            + "</svg>")


def heat_cell(v, lo, hi) -> str:
    """A table cell coloured from white (lo) to blue (hi)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return '<td style="background:#eee">-</td>'
    t = 0.0 if hi == lo else (v - lo) / (hi - lo)
    r, g = int(255 - 200 * t), int(255 - 130 * t)
    color = "#fff" if t > 0.6 else "#000"
    return f'<td style="background:rgb({r},{g},255);color:{color}">{esc(fmt(v))}</td>'


def read_jsonl(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def sampling_flags(sampling: dict) -> str:
    """CLI flags that replay a SamplingSpec dict (only fields that differ from the defaults)."""
    from difflab.recipe import SamplingSpec

    default = SamplingSpec().to_dict()
    flags = []
    for k, v in sampling.items():
        if k not in default or v == default[k] or v is None:
            continue
        flag = "--" + k.replace("_", "-")
        flags.append(flag if v is True else f"{flag} {v}")
    return " ".join(flags)


def metric_rows(res: dict) -> list:
    skip = {"seed", "n", "seconds", "sampling"}
    return [(k, v) for k, v in sorted(res.items()) if k not in skip and isinstance(v, (int, float))
            and not isinstance(v, bool)]


# -- the three kinds of source --------------------------------------------------------------------------------
def _eval_sections(page: Page, res: dict, source: Path):
    page.section(f"Evaluation: {source.name}")
    page.add(f"<p>n = {esc(res.get('n'))}, seed = {esc(res.get('seed'))}, reference = {esc(res.get('ref', '-'))}, "
             f"source = {esc(res.get('model', res.get('real', '-')))}</p>")
    page.table(("metric", "value"), metric_rows(res))
    if isinstance(res.get("seconds"), dict):
        page.table(("stage", "seconds"), sorted(res["seconds"].items()))
    if isinstance(res.get("class_hist"), list):
        page.table(["class"] + list(range(len(res["class_hist"]))), [["count"] + list(res["class_hist"])])
    if isinstance(res.get("sampling"), dict):
        page.pre(json.dumps(res["sampling"], indent=2, sort_keys=True))
    if res.get("model"):
        asked = res.get("metrics")  # recorded since issue 21; older files: the result keys, which may need editing
        metrics = ",".join(asked) if isinstance(asked, list) else ",".join(k for k, _ in metric_rows(res))
        cmd = f"difflab eval {res['model']} --n {res.get('n')} --metrics {metrics}"
        if isinstance(res.get("sampling"), dict):
            cmd += " " + sampling_flags(res["sampling"])
        page.add("<p>Reproduce:</p>")
        page.pre(cmd.strip() + (f" --json {source.name}" if source.suffix == ".json" else ""))


def _images_under(folder: Path, skip: Path, exclude=()) -> list[Path]:
    """Images under ``folder`` (not in the folders named in ``exclude``, nor in the report folder ``skip``)."""
    skip = skip.resolve()
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part in exclude for part in p.relative_to(folder).parts)
                  and skip not in p.resolve().parents)


def _run_sections(page: Page, run: Path, samplers=(), n: int = 16, device: str = "cpu"):
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else None
    page.section("Config")
    page.pre(json.dumps(cfg, indent=2, sort_keys=True) if cfg is not None else "(no config.json)")
    records = read_jsonl(run / "log.jsonl")
    steps = [r for r in records if "step" in r and "event" not in r]
    done = [r for r in records if r.get("event") == "done"]
    page.section("Training curves")
    if steps:
        for key, label in CURVES:
            svg = svg_curve([r["step"] for r in steps if key in r], [r[key] for r in steps if key in r], label)
            if svg:
                page.add(svg)
    else:
        page.add("<p>No step records in log.jsonl.</p>")
    if done:
        page.table(("summary", "value"), [(k, v) for k, v in done[-1].items() if k not in ("event", "time", "grid")])
    events = [r for r in records if r.get("event") not in (None, "done")]
    if events:
        page.table(("event", "step", "details"), [(r.get("event"), r.get("step"), json.dumps(
            {k: v for k, v in r.items() if k not in ("event", "step", "time")})) for r in events[-20:]])
    grids = sorted((run / "samples").glob("*.png")) if (run / "samples").is_dir() else []
    page.section("Sample grids")
    if not grids and not samplers:
        page.add("<p>No sample grids (train with sample_every > 0, or pass samplers).</p>")
    for g in grids[-MAX_GRIDS:]:
        page.image(g, f"{g.stem} (sampler {cfg['sample']['sampler'] if cfg else '?'})")
    if samplers:
        _draw_samplers(page, run, samplers, n, device)
    others = [p for p in _images_under(run, page.out, exclude=("samples", "checkpoints", "tensorboard"))]
    if others:
        page.section("Trajectories and other figures")
        for p in others[:MAX_GRIDS * 2]:
            page.image(p, str(p.relative_to(run)))
    for ev in sorted(run.glob("*.json")):
        if ev.name == "config.json":
            continue
        try:
            res = json.loads(ev.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(res, dict) and "n" in res:
            _eval_sections(page, res, ev)
    page.section("Reproduce")
    page.pre(f"difflab train {run / 'config.json'} out={run}\ndifflab sample {run} --n 16 --out samples.png "
             f"--trajectory trajectory/\ndifflab report {run} --out report/")


def _draw_samplers(page: Page, run: Path, samplers, n: int, device: str):
    """A grid of ``n`` samples per sampler (seed 0, the samplers' default steps) from the run's EMA weights."""
    from difflab.models import load
    from difflab.recipe import SamplingSpec, sample
    from difflab.viz.grids import save_grid

    D = load(run, device=device)
    channels = D.difflab_config.model.channels
    for name in samplers:
        spec = SamplingSpec(sampler=name, seed=0, device=device)
        x, _ = sample(D, spec, n)
        path = save_grid(x[:, :channels], page.out / "drawn" / f"{name}.png")
        page.image(path, f"{name}, {spec.steps} steps, seed 0, n={n}")


def _sweep_sections(page: Page, sweep: Path):
    spec = json.loads((sweep / "sweep.json").read_text()) if (sweep / "sweep.json").exists() else {}
    table = json.loads((sweep / "table.json").read_text()) if (sweep / "table.json").exists() else {}
    page.section("Sweep")
    page.pre(json.dumps(spec, indent=2, sort_keys=True))
    if table:
        page.add(f"<p>{esc(table.get('done'))}/{esc(table.get('total'))} points; seed {esc(spec.get('seed'))}, "
                 f"{esc(spec.get('batches'))} batches of {esc(spec.get('batch_size'))} samples per point.</p>")
    names = table.get("axis_names") or list(spec.get("grid", {}))
    axes = table.get("axes", {})
    for key, values in sorted((table.get("tables") or {}).items()):
        page.section(f"{key}")
        if len(names) == 2 and isinstance(values, list) and values and isinstance(values[0], list):
            flat = [v for row in values for v in row if isinstance(v, (int, float)) and not isinstance(v, bool)]
            lo, hi = (min(flat), max(flat)) if flat else (0, 0)
            ys, xs = axes.get(names[0], []), axes.get(names[1], [])
            rows = [[f"<td><b>{esc(fmt(y))}</b></td>"] + [heat_cell(v, lo, hi) for v in row]
                    for y, row in zip(ys, values, strict=False)]
            page.table([f"{names[0]} \\ {names[1]}"] + [fmt(x) for x in xs], rows)
        elif isinstance(values, list):
            page.table((names[0] if names else "point", key), zip(axes.get(names[0], []) if names else
                                                                   range(len(values)), values, strict=False))
        png = sweep / f"heatmap_{key}.png"
        if png.exists():
            page.image(png, f"heatmap of {key}")
    rest = [p for p in _images_under(sweep, page.out) if not p.name.startswith("heatmap_")]
    if rest:
        page.section("Other figures")
        for p in rest[:MAX_GRIDS * 2]:
            page.image(p, str(p.relative_to(sweep)))
    page.section("Reproduce")
    page.pre(f"difflab sweep {sweep / 'sweep.json'} --out {sweep}\ndifflab report {sweep} --out report/")


def source_kind(source: str | Path) -> str:
    """'run', 'sweep' or 'eval' for a path (a one-line ValueError if it is none of them)."""
    p = Path(source)
    if p.is_file() and p.suffix == ".json":
        return "eval"
    if p.is_dir():
        if (p / "table.json").exists() or (p / "sweep.json").exists() or (p / "points").is_dir():
            return "sweep"
        if (p / "config.json").exists() or (p / "log.jsonl").exists() or (p / "checkpoints").is_dir():
            return "run"
        raise ValueError(f"{p}: not a run folder (config.json, log.jsonl), a sweep folder (table.json) or an eval JSON")
    if not p.exists():
        raise ValueError(f"{p}: does not exist")
    raise ValueError(f"{p}: give a run folder, a sweep folder or an eval JSON file")


def build_report(source: str | Path, out: str | Path, *, samplers=(), n: int = 16, device: str = "cpu",
                 title: str | None = None) -> Path:
    """Write ``out/index.html`` (and ``out/img/``) for a run folder, a sweep folder or an eval JSON; returns the
    page's path. ``samplers`` (run folders only): also draw ``n`` samples per named sampler."""
    src = Path(source)
    kind = source_kind(src)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file; give a folder")
    page = Page(out, title or f"difflab report: {src.name} ({kind})")
    if kind == "eval":
        try:
            res = json.loads(src.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{src}: not valid JSON ({e})") from None
        if not isinstance(res, dict):
            raise ValueError(f"{src}: expected a JSON object of metrics")
        _eval_sections(page, res, src)
    elif kind == "sweep":
        _sweep_sections(page, src)
    else:
        if samplers and not (src / "checkpoints").is_dir():
            raise ValueError(f"{src}: no checkpoints to draw samples from")
        _run_sections(page, src, samplers=samplers, n=n, device=device)
    return page.write()


__all__ = ["build_report", "source_kind", "svg_curve"]
