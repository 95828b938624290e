"""The ``defectsynth`` command line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .generator import ParamSpace, describe_range, param_fields, param_info
from .plugins import PluginHost

SHEET_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _host(ctx: click.Context, extra_dirs: Sequence[str] = ()) -> PluginHost:
    obj = ctx.ensure_object(dict)
    dirs = list(obj.get("plugin_dirs", ())) + list(extra_dirs)
    key = tuple(dirs)
    if obj.get("_host_key") != key:
        obj["host"] = PluginHost(dirs, trace=obj.get("trace") or None)
        obj["_host_key"] = key
    host: PluginHost = obj["host"]
    return host


def _report_plugin_errors(host: PluginHost, verbose: bool) -> None:
    for p in host.plugins:
        for i, err in enumerate(p.errors):
            click.echo(f"warning: plugin {p.name!r} ({p.source}): {err}", err=True)
            if verbose and i < len(p.tracebacks):
                click.echo(p.tracebacks[i], err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="defectsynth")
@click.option(
    "--plugin-dir",
    "plugin_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Load every *.py file in this folder as a plugin (repeatable). "
    "Also: DEFECTSYNTH_PLUGIN_DIRS (os.pathsep-separated).",
)
@click.option(
    "--trace-plugins",
    "trace",
    is_flag=True,
    help="Print every plugin hook call to stderr (also DEFECTSYNTH_TRACE_PLUGINS=1).",
)
@click.option(
    "--allow-path",
    "allow_paths",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Let recipes read from this folder too (repeatable; '/' allows any path). By "
    "default a recipe's paths must stay inside its own folder or the working directory. "
    "Also: DEFECTSYNTH_ALLOW_PATHS (os.pathsep-separated).",
)
@click.option(
    "-v", "--verbose", is_flag=True,
    help="Show full tracebacks of plugin errors and of unexpected errors reading a source.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    plugin_dirs: tuple[str, ...],
    trace: bool,
    allow_paths: tuple[str, ...],
    verbose: bool,
) -> None:
    """defectsynth: labeled synthetic defect images for visual-inspection models.

    \b
    Typical session:
      defectsynth init photos/ -o recipe.yaml  # a commented starter recipe
      defectsynth plugins                      # what generators and formats exist
      defectsynth describe scratch             # a generator's parameters
      defectsynth preview recipe.yaml -o sheet.png   # look before a long run
      defectsynth generate recipe.yaml -o out/ # write a labeled dataset
      defectsynth validate out/                # check every format against the images
    """
    ctx.ensure_object(dict)
    ctx.obj["plugin_dirs"] = plugin_dirs
    ctx.obj["trace"] = trace
    ctx.obj["verbose"] = verbose
    ctx.obj["allow_paths"] = allow_paths


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins: source, version, generators, writers and load errors.

    Sources are 'builtin', 'entry point' (an installed distribution) or the path of a
    plugin file. A plugin that failed to load is listed with its error; the others
    still load. Exit status is 0 even then: use --json and read "errors".
    """
    verbose = ctx.obj.get("verbose", False)
    host = _host(ctx)
    if as_json:
        click.echo(json.dumps([p.to_dict(verbose) for p in host.plugins], indent=2))
        return
    for p in host.plugins:
        version = f" {p.version}" if p.version else ""
        click.echo(f"{p.name}{version}  [{p.source}]")
        if p.generators:
            click.echo(f"    generators: {', '.join(p.generators)}")
        if p.writers:
            click.echo(f"    writers:    {', '.join(p.writers)}")
        for i, err in enumerate(p.errors):
            click.echo(f"    ERROR: {err}")
            if verbose and i < len(p.tracebacks):
                click.echo("      " + p.tracebacks[i].rstrip().replace("\n", "\n      "))


@cli.command("describe")
@click.argument("generator")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def describe_cmd(ctx: click.Context, generator: str, as_json: bool) -> None:
    """Show a generator's parameters: type, default, allowed range, default variation.

    In a recipe, give each parameter a fixed value, a [lo, hi] range (drawn uniformly
    per instance; integers stay integers) or a list of choices.
    """
    host = _host(ctx)
    try:
        cls = host.generator(generator)
    except KeyError as exc:
        try:
            writer = host.writer(generator)
        except KeyError:
            raise click.ClickException(str(exc)) from None
        raise click.ClickException(
            f"{generator!r} is an output format (a writer: {writer.description}), not a "
            "generator; describe shows a generator's parameters, and a recipe lists formats "
            "under output.formats. `defectsynth plugins` lists both; formats are described "
            "in docs/formats.md"
        ) from None
    owner = host.provider("generator", cls.name)
    rows: list[dict[str, Any]] = []
    for f in param_fields(cls.Params):
        info = param_info(f)
        rows.append(
            {
                "name": f.name,
                "type": type(f.default).__name__,
                "default": f.default,
                "allowed": describe_range(f),
                "varies": list(info.vary) if info.vary is not None else None,
                "doc": info.doc,
                "size": info.size,
            }
        )
    doc = (cls.__doc__ or "").strip()
    try:  # with default parameters; a generator like transplant names several categories
        categories = list(cls().categories(ParamSpace(cls).describe()))
    except Exception:  # noqa: BLE001 - describing must not fail on a plugin's quirk
        categories = [cls.label()]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": cls.name,
                    "category": cls.label(),
                    "categories": categories,
                    "version": cls.version,
                    "blend": cls.blend,
                    "plugin": owner.name if owner else None,
                    "source": owner.source if owner else None,
                    "doc": doc,
                    "params": rows,
                },
                indent=2,
            )
        )
        return
    where = f" (plugin {owner.name!r}, {owner.source})" if owner else ""
    click.echo(f"{cls.name} v{cls.version}{where}")
    label = "categories" if len(categories) > 1 else "category"
    click.echo(f"{label}: {', '.join(categories)}    blend: {cls.blend}")
    if doc:
        click.echo("")
        click.echo(doc)
    click.echo("")
    click.echo("parameters:")
    if not rows:
        click.echo("  (none)")
    for r in rows:
        varies = f"; varies {r['varies']} by default" if r["varies"] is not None else ""
        if r["size"]:
            varies += f"; a size, scaled by the recipe's scale (tuned for {cls.reference_size} px)"
        click.echo(
            f"  {r['name']} ({r['type']}, default {r['default']!r}, allowed {r['allowed']}{varies})"
        )
        if r["doc"]:
            click.echo(f"      {r['doc']}")


def _allow_path_option(f: Any) -> Any:
    """``--allow-path`` on a subcommand too (``generate r.yaml -o out --allow-path /x``),
    added to the group's."""

    def remember(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        obj = ctx.ensure_object(dict)
        obj["allow_paths"] = tuple(obj.get("allow_paths", ())) + tuple(value)

    return click.option(
        "--allow-path",
        "allow_paths_here",
        multiple=True,
        type=click.Path(file_okay=False),
        expose_value=False,
        callback=remember,
        help="Let the recipe read from this folder too (repeatable); the same as "
        "defectsynth --allow-path DIR before the subcommand.",
    )(f)


def _load_recipe(
    ctx: click.Context,
    path: str | None,
    seed: int | None,
    overrides: Sequence[str] = (),
    flags: Sequence[tuple[str, Any]] = (),
    images: str | None = None,
    defects: Sequence[str] = (),
) -> tuple[Any, PluginHost]:
    """Read and fully validate a recipe (a file, or made from flags when ``path`` is None)
    with ``flags`` (key path, value) and then ``overrides`` (KEY=VALUE texts) set first; on
    a recipe error print it and exit 2."""
    from .build import check_recipe
    from .errors import RecipeError
    from .recipe import parse_override, read_recipe, recipe_from_flags

    allow = ctx.obj.get("allow_paths", ())
    try:
        where = path or "command line"
        pairs = [*flags, *(parse_override(o, where) for o in overrides)]
        if path is None:
            recipe = recipe_from_flags(
                images=images, defects=defects, overrides=pairs, allow_paths=allow
            ).with_seed(seed)
        else:
            recipe = read_recipe(path, allow_paths=allow, overrides=pairs).with_seed(seed)
        host = _host(ctx, [str(p) for p in recipe.plugin_paths()])
        check_recipe(recipe, host)
    except RecipeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    _report_plugin_errors(host, ctx.obj.get("verbose", False))
    return recipe, host


def _resume_command(
    ctx: click.Context,
    recipe: str | None,
    out: str,
    seed: int | None,
    on_dask: str,
    more: Sequence[str] = (),
) -> str:
    """The command that finishes this run: the same plugin folders, allowed paths, seed,
    backend, flags and overrides (``more``), with --resume."""
    import shlex

    q = shlex.quote
    glob_opts = "".join(f" --plugin-dir {q(d)}" for d in ctx.obj.get("plugin_dirs", ()))
    glob_opts += "".join(f" --allow-path {q(d)}" for d in ctx.obj.get("allow_paths", ()))
    seed_opt = f" --seed {seed}" if seed is not None else ""
    what = f" {q(recipe)}" if recipe else ""
    extra = "".join(f" {q(m)}" for m in more)
    return (f"  defectsynth{glob_opts} generate{what}{extra} -o {q(out)} --resume"
            f"{seed_opt}{on_dask}")


def _summary(result: Any, out: str, verbose: bool = False) -> None:
    rep = result.report
    secs = max(result.seconds, 1e-9)
    rate = result.new_samples / secs
    if result.new_samples == 0 and result.resumed:
        speed = f"nothing left to do: all {result.resumed} were done; index files rewritten"
    else:
        speed = f"{rate:.1f} images/s" + (
            f"; {result.resumed} resumed" if result.resumed else ""
        )
    click.echo(
        f"wrote {rep['samples']} samples ({rep['samples_with_defects']} with defects, "
        f"{rep['negatives']} negatives) to {out} in {result.seconds:.1f} s ({speed})"
    )
    click.echo("  splits:    " + ", ".join(f"{k} {v}" for k, v in rep["splits"].items()))
    empty = [k for k, v in rep["splits"].items() if not v]
    if empty and rep["samples"]:
        click.echo(
            f"  warning: no samples in split {', '.join(empty)} (too few sources for the "
            "split fractions, or a --limit); YOLO's data.yaml points it at another split. "
            "Add sources or variants, or change 'split' in the recipe"
        )
    inst = ", ".join(f"{k} {v}" for k, v in rep["instances"].items()) or "(none)"
    click.echo(f"  instances: {inst}")
    if rep.get("quotas"):
        met = ", ".join(f"{k} {v['instances']}/{v['quota']}" for k, v in rep["quotas"].items())
        click.echo(f"  quotas:    {met} (met after {rep['tasks']} samples)")
    d = rep["dropped"]
    click.echo(
        f"  dropped for visibility: {d['visibility']} "
        f"(overlap {d['overlap']}, no room {d['no_room']})"
    )
    good = os.path.join(out, "anomaly", "train", "good")
    if os.path.isdir(good) and not os.listdir(good):
        click.echo(
            "  warning: anomaly/train/good is empty (no sample in the train split): an "
            "anomaly model has no clean images to train on"
        )
    folders = rep.get("skipped_input_folders") or []
    if folders:
        click.echo(
            f"  not read as inputs (defectsynth output: the output folder or a folder "
            f"with manifest.jsonl): {', '.join(folders)}"
        )
    skipped = rep["skipped_sources"]
    if skipped:
        click.echo(f"  skipped {len(skipped)} source(s):")
        for s in skipped:
            click.echo(f"    {s['source']}: {s['reason']}")
            if verbose and s.get("traceback"):
                click.echo(str(s["traceback"]).rstrip())
    for f in rep["failed_tasks"]:
        click.echo(f"  failed task {f['task']} ({f['source']}): {f['error']}")
    for name, g in rep.get("generator_failures", {}).items():
        click.echo(
            f"  generator {name!r}: {g['rejected_instances']} instance(s) rejected; "
            f"last error: {g['last_error']}"
        )
    report = os.path.join(out, "report.json")
    click.echo(f"  details: {report}; check it with: defectsynth validate {out}")


@cli.command("generate")
@click.argument("args", nargs=-1, metavar="[RECIPE] [KEY=VALUE]...")
@_allow_path_option
@click.option(
    "--images", type=click.Path(file_okay=True), default=None,
    help="Clean images (a folder, a glob or a file): with --defects, generate without a "
    "recipe file; with a recipe, replaces inputs.images.",
)
@click.option(
    "--defects", default=None, metavar="A,B,...",
    help="Generators to use, comma-separated (defectsynth plugins lists them).",
)
@click.option(
    "--samples", "total", type=click.IntRange(min=1), default=None,
    help="Samples in all, spread evenly over the images (the recipe key samples).",
)
@click.option(
    "--formats", default=None, metavar="A,B,...",
    help="Output formats, comma-separated (coco, yolo, yolo-seg, voc, anomaly).",
)
@click.option(
    "--scale", "scale", default=None, metavar="auto|FLOAT",
    help="Scale the generators' sizes (the recipe key scale): auto = by the image's "
    "shorter side over the size they were tuned for (512 px).",
)
@click.option(
    "-o", "--out", required=True, type=click.Path(file_okay=False), help="Dataset folder."
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: the number of cores). Output is identical for any N.",
)
@click.option("--resume", is_flag=True, help="Finish a dataset started in OUT (same recipe, seed).")
@click.option("--overwrite", is_flag=True, help="Delete the dataset in OUT and start again.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only N samples, cut from every split in proportion, for a quick look.",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=None, help="Override the recipe's seed."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--max-generator-failures",
    "max_failures",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Stop when one generator fails K times in a row (default: the recipe's "
    "max_generator_failures, 10). Its failed instances are rejected, never written.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="Run on a dask cluster (tcp://HOST:8786). Inputs, plugin folders and OUT must be "
    "at the same path on every worker: docs/cluster.md.",
)
@click.option(
    "--dask-local",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run on a local dask cluster of N worker processes started for this run.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per dask task (default: whole sources, 8 to 16 samples).",
)
@click.option(
    "--report", "with_report", is_flag=True,
    help="At the end, write OUT/report.html (defectsynth report; needs the report extra).",
)
# (long on purpose: one parameter per click option and the --help text, which teaches
# the command, are most of it; the body reads the flags in the order --help lists them)
@click.pass_context
def generate_cmd(
    ctx: click.Context,
    args: tuple[str, ...],
    images: str | None,
    defects: str | None,
    total: int | None,
    formats: str | None,
    scale: str | None,
    out: str,
    workers: int | None,
    resume: bool,
    overwrite: bool,
    limit: int | None,
    seed: int | None,
    no_progress: bool,
    max_failures: int | None,
    scheduler: str | None,
    dask_local: int | None,
    chunk_size: int | None,
    with_report: bool,
) -> None:
    """Write a labeled dataset: every image of the recipe's inputs, VARIANTS times.

    KEY=VALUE after the recipe overrides any recipe key (the value is YAML), checked
    like the recipe itself: variants=10, defects[0].params.width=[1,3], split.val=0.3.
    Without a recipe, --images and --defects make one.

    \b
    OUT gets images/{split}/, masks/{split}/ (one PNG per instance), the formats the
    recipe lists (COCO annotations/, YOLO labels/ + data.yaml, voc/, anomaly/),
    manifest.jsonl (one line per sample), dataset.json and report.json.
    Same recipe + seed => the same bytes, for any --workers.

    \b
    Examples:
      defectsynth generate fixtures/recipes/demo.yaml -o out/demo
      defectsynth generate --images photos/ --defects scratch,dent --samples 50 \\
          --formats yolo -o out/quick
      defectsynth generate recipe.yaml variants=10 instances=[1,2] -o out/ds
      defectsynth generate recipe.yaml -o out/ds --limit 20 --workers 2
      defectsynth generate recipe.yaml -o out/ds --resume     # after a crash or Ctrl-C
      defectsynth generate recipe.yaml -o /shared/ds --scheduler tcp://head:8786

    Bad source images are skipped with their reason (summary, report.json); the exit
    status is non-zero only when no sample could be written. Recipe errors exit with 2.
    Recipe keys: docs/recipes.md. Output layout and formats: docs/formats.md.
    """
    import dataclasses

    from tqdm import tqdm

    from .errors import RecipeError, RunError, RunStopped
    from .run import generate

    recipe, overrides = _split_args(args)
    names = [d.strip() for d in (defects or "").split(",") if d.strip()]
    flags: list[tuple[str, Any]] = []
    more: list[str] = list(overrides)
    if recipe is None and (images is None or not names):
        raise click.UsageError(
            "give a RECIPE file, or --images DIR and --defects A,B to generate without one "
            "(defectsynth init writes a starter recipe)"
        )
    if recipe is not None:
        if images is not None:
            flags.append(("inputs.images", images))
        if names:
            flags.append(("defects", names))
    if total is not None:
        flags.append(("samples", total))
    if formats is not None:
        flags.append(("output.formats", [f.strip() for f in formats.split(",") if f.strip()]))
    if scale is not None:
        flags.append(("scale", _scale_value(scale)))
    for flag, value in (("--images", images), ("--defects", defects), ("--formats", formats),
                        ("--samples", total), ("--scale", scale)):
        if value is not None:
            more[:0] = [flag, str(value)]
    rec, host = _load_recipe(ctx, recipe, seed, overrides, flags, images, names)
    if max_failures is not None:
        rec = dataclasses.replace(rec, max_generator_failures=max_failures)
    bar: Any = None
    backend: Any = None
    on_dask = ""
    if scheduler is not None and dask_local is not None:
        raise click.UsageError("--scheduler and --dask-local exclude each other")
    if scheduler is not None or dask_local is not None:
        if workers is not None:
            raise click.UsageError("--workers is for local runs; on dask the cluster's workers run")
        on_dask = f" --scheduler {scheduler}" if scheduler else f" --dask-local {dask_local}"
    elif chunk_size is not None:
        raise click.UsageError("--chunk-size applies to --scheduler or --dask-local")

    def progress(done: int, todo: int) -> None:
        nonlocal bar
        if no_progress:
            return
        if bar is None:
            tqdm.monitor_interval = 0
            bar = tqdm(total=todo, unit="img", desc="generate", dynamic_ncols=True)
        bar.update(1)

    try:
        if on_dask:
            from .backends.dask import dask_backend, default_chunksize

            backend = dask_backend(
                scheduler, dask_local, chunk_size or default_chunksize(rec.variants)
            ).start()
            link = f"; dashboard {backend.dashboard_link}" if backend.dashboard_link else ""
            click.echo(f"running on {backend.describe()}{link}")
        result = generate(
            rec,
            out,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            limit=limit,
            host=host,
            backend=backend,
            progress=progress,
            extra_plugin_dirs=ctx.obj.get("plugin_dirs", ()),
        )
    except RecipeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    except RunStopped as exc:
        if bar is not None:
            bar.close()
            bar = None
        click.echo(f"\nerror: {exc}:", err=True)
        click.echo(_resume_command(ctx, recipe, out, seed, on_dask, more), err=True)
        ctx.exit(1)
    except RunError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(1)
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
            bar = None
        how = (
            "stopped after the samples in flight"
            if getattr(exc, "signum", None) is not None
            else "interrupted"
        )
        click.echo(
            f"\n{how}; every sample in {os.path.join(out, 'manifest.jsonl')} is complete."
            " Finish with:\n" + _resume_command(ctx, recipe, out, seed, on_dask, more),
            err=True,
        )
        ctx.exit(128 + int(getattr(exc, "signum", 2)))
    finally:
        if bar is not None:
            bar.close()
        if backend is not None:
            backend.close()
    _summary(result, out, ctx.obj.get("verbose", False))
    if with_report and result.samples:
        _write_report_page(ctx, out, None, sources=str(rec.input_root()), host=host)
    if result.samples == 0:
        click.echo("error: no sample could be written (see the skipped sources above)", err=True)
        ctx.exit(1)


def _scale_value(text: str) -> Any:
    """``--scale``: "auto" or a number, checked later like the recipe key."""
    try:
        return float(text)
    except ValueError:
        return text


def _split_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """(recipe file or None, KEY=VALUE overrides) from generate's arguments."""
    rest = list(args)
    recipe = None
    if rest and ("=" not in rest[0] or os.path.isfile(rest[0])):
        recipe = rest.pop(0)
    for a in rest:
        if "=" not in a:
            raise click.UsageError(
                f"unexpected argument {a!r}: after the recipe come KEY=VALUE overrides "
                "(variants=10, defects[0].params.width=[1,3])"
            )
    return recipe, rest


@cli.command("preview")
@click.argument("recipe", metavar="RECIPE|IMAGE", type=click.Path(dir_okay=False))
@_allow_path_option
@click.option(
    "-o", "--out", default="preview.png", show_default=True,
    help="Contact sheet to write; .png, .jpg/.jpeg, .bmp, .tif/.tiff or .webp.",
)
@click.option(
    "-n", "count", type=click.IntRange(min=1), default=None,
    help="Samples on the sheet (spread over the source images first)  [default: 16, or 6 "
    "with --generator]",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=None, help="Override the recipe's seed."
)
@click.option(
    "--cell", type=click.IntRange(min=32), default=384, show_default=True,
    help="Tile width in px (each tile adds zoomed crops below the image).",
)
@click.option(
    "--scale", "scale", default=None, metavar="auto|FLOAT",
    help="Scale the generators' sizes (the recipe key scale).",
)
@click.option(
    "--generator", default=None, metavar="NAME",
    help="Try one generator on the image IMAGE, without a recipe.",
)
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE",
    help="A parameter of --generator (repeatable; VALUE is YAML: 3, [2, 5], oxidation).",
)
@click.pass_context
def preview_cmd(
    ctx: click.Context,
    recipe: str,
    out: str,
    count: int | None,
    seed: int | None,
    cell: int,
    scale: str | None,
    generator: str | None,
    params: tuple[str, ...],
) -> None:
    """Draw a contact sheet of N samples; no dataset is written.

    Each tile shows the image with boxes in its category's colour (a legend on top),
    says whether it is a negative or had every defect dropped by the visibility gate,
    and below it a zoomed before | after crop of each defect with its category.
    Samples are the same ones `generate` would make (same seeds), spread over the
    source images first. Use it to tune a recipe's params before a long run:

    \b
      defectsynth preview fixtures/recipes/demo.yaml -o sheet.png -n 16
      defectsynth preview --generator scratch --param width=3 fixtures/images/pcb.png
    """
    ext = os.path.splitext(out)[1].lower()
    if ext not in SHEET_EXTENSIONS:
        click.echo(
            f"error: cannot write a contact sheet as {out!r}: the name must end in "
            f"{', '.join(SHEET_EXTENSIONS)} (the extension picks the image format)",
            err=True,
        )
        ctx.exit(2)
    if generator is not None:
        sheet = _tryout(ctx, recipe, generator, params, count or 6, cell, seed or 0)
    elif params:
        raise click.UsageError("--param goes with --generator (in a recipe, set params there)")
    else:
        sheet = _recipe_sheet(ctx, recipe, count or 16, seed, cell, scale)
    _write_sheet(sheet, out, ext)


def _recipe_sheet(
    ctx: click.Context, path: str, count: int, seed: int | None, cell: int, scale: str | None
) -> Any:
    from .errors import RecipeError
    from .run import contact_sheet

    flags = [("scale", _scale_value(scale))] if scale is not None else []
    rec, host = _load_recipe(ctx, path, seed, flags=flags)
    try:
        sheet, skipped = contact_sheet(rec, count, host=host, cell=cell)
    except RecipeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    for src, reason in skipped:
        click.echo(f"skipped {src}: {reason}", err=True)
    return sheet


def _tryout(
    ctx: click.Context, image: str, generator: str, params: Sequence[str], count: int,
    cell: int, seed: int,
) -> Any:
    import yaml

    from .errors import InputImageError, RecipeError
    from .report.preview import tryout_sheet

    values: dict[str, Any] = {}
    for p in params:
        key, sep, text = p.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{p!r} is not KEY=VALUE", param_hint="--param")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{p!r}: {exc}", param_hint="--param") from None
    host = _host(ctx)
    try:
        host.generator(generator)
        return tryout_sheet(image, generator, values, count, cell=cell, seed=seed, host=host)
    except KeyError as exc:
        click.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
    except InputImageError as exc:  # before ValueError, which it is
        click.echo(f"error: {image}: {exc}", err=True)
    except (RecipeError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
    ctx.exit(2)


def _write_sheet(sheet: Any, out: str, ext: str) -> None:
    import cv2

    from .writing import atomic_write_bytes

    ok, buf = cv2.imencode(ext, sheet)
    if not ok:
        raise click.ClickException("could not encode the contact sheet")
    atomic_write_bytes(out, buf.tobytes())
    click.echo(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]} px)")


@cli.command("init")
@click.argument("images", default=".", type=click.Path(file_okay=False, exists=True))
@click.option(
    "-o", "--out", default="recipe.yaml", show_default=True, type=click.Path(dir_okay=False),
    help="Recipe file to write.",
)
@click.option("--force", is_flag=True, help="Replace the recipe file if it exists.")
@click.pass_context
def init_cmd(ctx: click.Context, images: str, out: str, force: bool) -> None:
    """Write a commented starter recipe for the images in IMAGES (default: here).

    It looks at a few of the images to guess the product mask (auto when the product
    stands on a plain background, else full), the defect sizes (scale: auto when the
    images are far from the 512 px the generators were tuned for), the number of samples
    and the splits, proposes defect types, and prints the next three commands:

    \b
      defectsynth init photos/ -o recipe.yaml
    """
    from pathlib import Path

    from .build import load_recipe
    from .errors import RecipeError
    from .starter import starter_recipe
    from .writing import atomic_write_text

    if Path(out).exists() and not force:
        click.echo(f"error: {out} exists; pass --force to replace it, or -o another file",
                   err=True)
        ctx.exit(1)
    host = _host(ctx)
    try:
        start = starter_recipe(images, out, host)
    except RecipeError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        ctx.exit(2)
    atomic_write_text(out, start.text)
    load_recipe(out, host=host)  # what init writes must be a valid recipe
    click.echo(
        f"wrote {out} for {start.images} image(s) (looked at {start.looked_at}: about "
        f"{start.shorter_side} px on the shorter side; product_mask {start.product_mask}; "
        f"{'scale auto; ' if start.scale else ''}{start.samples} samples; defects "
        f"{', '.join(start.generators)})"
    )
    folder = Path(images).absolute()
    inside = folder == Path(out).absolute().parent or folder in Path(out).absolute().parents
    sheet = "../sheet.png" if inside else "sheet.png"
    click.echo("next:")
    for command, why in (
        (f"defectsynth preview {out} -o {sheet}", "look before a long run"),
        (f"defectsynth generate {out} -o out/", "the dataset"),
        ("defectsynth validate out/", "check every format"),
    ):
        click.echo(f"  {command:<48} # {why}")


@cli.command("validate")
@click.argument("out", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.option("--max-problems", type=click.IntRange(min=1), default=200, show_default=True)
def validate_cmd(out: str, as_json: bool, max_problems: int) -> None:
    """Re-read a dataset and check every format against the images and each other.

    Checks what readers accept silently: duplicate ids, zero or negative box sizes,
    unknown category ids, boxes outside the image, RLE counts that do not add up to
    h*w, odd-length polygons, YOLO labels in pixel units, a label without an image and
    the reverse, and counts that disagree between COCO, YOLO, VOC, anomaly and the
    manifest. Exits 1 with the list of problems, 0 when the dataset is clean.
    """
    from .validate import validate_dataset

    report = validate_dataset(out)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for w in report.warnings:
            click.echo(f"warning: {w}")
        for p in report.problems[:max_problems] if report.is_dataset else ():
            click.echo(p)
        if len(report.problems) > max_problems:
            click.echo(f"... and {len(report.problems) - max_problems} more")
        status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        if not report.is_dataset:
            status = "not a defectsynth dataset (no manifest.jsonl)"
        click.echo(
            f"{out}: {report.samples} samples, formats {', '.join(report.formats)}: {status}"
        )
    if not report.ok:
        sys.exit(1)

def _write_report_page(
    ctx: click.Context, out: str, html: str | None, *, real: str | None = None,
    real_format: str = "auto", sources: str | None = None, score: bool = True,
    host: Any = None,
) -> None:
    try:
        from .report.page import write_report

        path, data = write_report(
            out, html, real=real, real_format=real_format, sources=sources, score=score,
            host=host,
        )
    except (ImportError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    click.echo(
        f"wrote {path} ({data['samples']} samples, {len(data['categories'])} categories)"
    )


@cli.command("report")
@click.argument("out", type=click.Path(file_okay=False, exists=True))
@click.option(
    "-o", "--html", default=None, type=click.Path(dir_okay=False),
    help="Page to write  [default: OUT/report.html]",
)
@click.option(
    "--real", type=click.Path(file_okay=False, exists=True), default=None,
    help="Labeled real defects (COCO, YOLO, VOC or images/ + masks/): overlay their "
    "distributions and show the realism score.",
)
@click.option(
    "--format", "real_format", type=click.Choice(["auto", "coco", "yolo", "voc", "masks"]),
    default="auto", show_default=True, help="Label format of --real.",
)
@click.option(
    "--sources", type=click.Path(file_okay=False, exists=True), default=None,
    help="The clean images the dataset was made from (the recipe's input folder), for the "
    "examples' before crops.",
)
@click.option("--no-score", is_flag=True, help="With --real, skip the realism score.")
@click.pass_context
def report_cmd(
    ctx: click.Context, out: str, html: str | None, real: str | None, real_format: str,
    sources: str | None, no_score: bool,
) -> None:
    """Write one self-contained HTML page about the dataset in OUT.

    Per category and split: instances and the images holding them; box size, area,
    aspect and orientation; where defects fall; how subtle they are (the visibility
    gate's measure); what was dropped and why; the parameter values drawn against their
    ranges; zoomed before | after examples; quotas against counts. With --real, the
    real defects' distributions overlaid and the realism score (needs the fit extra).

    \b
      defectsynth report out/demo --sources fixtures/images
      defectsynth report out/demo --real real_defects/ -o demo.html

    Needs the report extra: pip install 'defectsynth[report]'.
    """
    _write_report_page(
        ctx, out, html, real=real, real_format=real_format, sources=sources,
        score=not no_score, host=_host(ctx),
    )


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            raise click.BadParameter(f"{v!r} is not REAL=NAME", param_hint=option)
        k, _, n = v.partition("=")
        out[k.strip()] = n.strip()
    return out


@cli.command("score")
@click.argument("real", type=click.Path(file_okay=False, exists=True))
@click.argument("synthetic", type=click.Path(exists=True))
@click.option(
    "--clean",
    type=click.Path(file_okay=False, exists=True),
    help="Render a recipe on these clean images instead of the recipe's own inputs.",
)
@click.option(
    "--samples", type=click.IntRange(min=8), default=200, show_default=True,
    help="Synthetic defects to render when SYNTHETIC is a recipe.",
)
@click.option(
    "--map", "mapping", multiple=True, metavar="REAL=SYNTHETIC",
    help="Compare real category REAL with synthetic category SYNTHETIC (repeatable).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "coco", "yolo", "voc", "masks"]),
    default="auto", show_default=True, help="Label format of REAL.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def score_cmd(
    ctx: click.Context,
    real: str,
    synthetic: str,
    clean: str | None,
    samples: int,
    mapping: tuple[str, ...],
    fmt: str,
    seed: int,
    as_json: bool,
) -> None:
    """How far synthetic defects are from real ones (0.5 = indistinguishable).

    REAL is a folder of labeled real defects (COCO, YOLO, VOC, or images/ + masks/ or
    the MVTec ground_truth/ layout). SYNTHETIC is a dataset folder written by
    `generate`, or a recipe (rendered in memory, nothing written). A classifier learns
    to tell the two apart from crops of each defect with its surroundings; the score
    is its cross-validated AUC, with a 95% interval, per category where both sides
    have it, and the differences that give the synthetic ones away:

    \b
      defectsynth score real_defects/ fixtures/recipes/demo.yaml
      defectsynth score real_defects/ out/ --map scratches=scratch

    Needs the fit extra: pip install 'defectsynth[fit]'.
    """
    from .realism.crops import RealismError
    from .realism.score import score

    host = _host(ctx)
    try:
        result = score(
            real, synthetic, clean=clean, samples=samples, seed=seed,
            mapping=_pairs(mapping, "--map"), fmt=fmt, host=host,
        )
    except (RealismError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    except Exception as exc:  # a recipe error names its file and key
        from .errors import RecipeError

        if isinstance(exc, RecipeError):
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        raise
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))


@cli.command("fit")
@click.option(
    "--real", required=True, type=click.Path(file_okay=False, exists=True),
    help="Folder of labeled real defects (as for score).",
)
@click.option(
    "--clean", required=True, type=click.Path(file_okay=False, exists=True),
    help="Folder of clean product images to render on.",
)
@click.option(
    "-o", "--out", required=True, type=click.Path(dir_okay=False),
    help="Recipe to write (YAML that generate accepts).",
)
@click.option(
    "--product-mask", default="full", show_default=True,
    help="full, auto, or a file pattern such as masks/{stem}.png (relative to the working "
    "directory).",
)
@click.option(
    "--map", "mapping", multiple=True, metavar="CATEGORY=GENERATOR",
    help="Use GENERATOR for real CATEGORY instead of choosing (repeatable).",
)
@click.option(
    "--generators", default=None, metavar="A,B,...",
    help="Candidate generators (default: every registered one but transplant).",
)
@click.option(
    "--rounds", type=click.IntRange(min=0), default=3, show_default=True,
    help="Search rounds per category and fold (each renders a few hundred defects).",
)
@click.option(
    "--budget", "budget", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
    help="Also stop searching after this long in all (the result then depends on the "
    "machine's speed).",
)
@click.option(
    "--folds", type=click.IntRange(min=2), default=3, show_default=True,
    help="Held-out folds over the real defects' images.",
)
@click.option(
    "-j", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
    help="Processes: the folds' searches run side by side (same recipe for any number).",
)
@click.option(
    "--transplant-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
    help="Share of the recipe's defects that are transplants of the real ones.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--report", "report", type=click.Path(dir_okay=False), default=None,
    help="HTML page of real and fitted crops (default: OUT with .html).",
)
# (long on purpose: one parameter per click option and the --help text are most of it)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def fit_cmd(
    ctx: click.Context,
    real: str,
    clean: str,
    out: str,
    product_mask: str,
    mapping: tuple[str, ...],
    generators: str | None,
    rounds: int,
    budget: float | None,
    folds: int,
    workers: int,
    transplant_share: float,
    seed: int,
    report: str | None,
    no_progress: bool,
) -> None:
    """Fit generators to real defects and write a recipe that mixes them with
    transplants of the same defects.

    For each real category it picks the generator whose defects score closest to the
    real ones, then searches its parameter ranges so that their defects look like the
    real ones; the score before and after is measured on real defects the search did
    not see (k-fold over the images). Same seed, same recipe.

    \b
      defectsynth fit --real real_defects/ --clean clean/ -o fitted.yaml
      defectsynth generate fitted.yaml -o out/
      defectsynth validate out/

    Needs the fit extra: pip install 'defectsynth[fit]'. See docs/fit.md.
    """
    from pathlib import Path

    from .realism.crops import RealismError
    from .realism.fit import fit
    from .realism.report import write_fit_report

    host = _host(ctx)
    bar: Any = None
    if not no_progress:
        from tqdm import tqdm

        bar = tqdm(total=1, unit="step", desc="fit", leave=False, dynamic_ncols=True)

    def progress(what: str, done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_description(what[:40])
            bar.refresh()

    cands = [g.strip() for g in generators.split(",") if g.strip()] if generators else None
    try:
        result = fit(
            real, clean, generators=cands, mapping=_pairs(mapping, "--map"), rounds=rounds,
            budget_seconds=budget, seed=seed, product_mask=product_mask, folds=folds,
            transplant_share=transplant_share, host=host, progress=progress,
            recipe_dir=Path(out).absolute().parent, workers=workers,
        )
    except (RealismError, OSError) as exc:
        if bar is not None:
            bar.close()
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    except Exception as exc:
        from .errors import UnknownNameError

        if bar is not None:
            bar.close()
        if isinstance(exc, UnknownNameError):
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        raise
    if bar is not None:
        bar.close()
    path = result.recipe.save(out)
    page = report or str(Path(out).with_suffix(".html"))
    write_fit_report(result, page)
    click.echo(result.summary())
    click.echo(f"wrote {path} and {page}")
    click.echo(f"next: defectsynth generate {path} -o out/ && defectsynth validate out/")


@cli.command("studio")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False, exists=True))
@click.option("--images", type=click.Path(file_okay=False, exists=True),
              help="A folder of clean images (instead of, or replacing, the recipe's).")
@click.option("--real", type=click.Path(file_okay=False, exists=True),
              help="A folder of labeled real defects: crops beside synthetic ones, and the "
              "realism score on demand.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--save", "save_to", type=click.Path(dir_okay=False),
              help="Where Save writes [default: RECIPE's folder, STEM.studio.yaml; without a "
              "recipe ./studio.yaml].")
@_allow_path_option
@click.pass_context
def studio_cmd(ctx: click.Context, recipe: str | None, images: str | None, real: str | None,
               port: int, save_to: str | None) -> None:
    """Tune a recipe in your browser: live preview, then save it (docs/studio.md).

    Serves a page on 127.0.0.1 only, behind a random token in the printed address. It
    reads only the folders it was started with (the recipe's, those it reads, --images,
    --real, --allow-path). Needs the studio extra: pip install 'defectsynth[studio]'.
    """
    from .errors import RecipeError

    try:
        from .studio.app import main as serve
    except ImportError as exc:
        raise click.ClickException(
            f"the studio needs its extra: pip install 'defectsynth[studio]' ({exc})"
        ) from None
    from .studio import Studio, StudioError

    if recipe is None and images is None:
        raise click.UsageError("give a RECIPE, or --images DIR to start from clean images")
    try:
        studio = Studio(recipe, images=images, real=real, save_to=save_to,
                        allow_paths=ctx.obj.get("allow_paths", ()), host=_host(ctx))
    except (RecipeError, StudioError) as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    try:
        serve(studio, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> Any:
    return cli.main(args=list(argv) if argv is not None else None, prog_name="defectsynth")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
