"""The ``defectsynth`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .generator import describe_range, param_fields, param_info
from .plugins import PluginHost


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
@click.option("-v", "--verbose", is_flag=True, help="Show full tracebacks of plugin errors.")
@click.pass_context
def cli(ctx: click.Context, plugin_dirs: tuple[str, ...], trace: bool, verbose: bool) -> None:
    """defectsynth: labeled synthetic defect images for visual-inspection models.

    \b
    Typical session:
      defectsynth plugins                      # what generators and formats exist
      defectsynth describe scratch             # a generator's parameters
      defectsynth generate recipe.yaml -o out/ # write a labeled dataset
    """
    ctx.ensure_object(dict)
    ctx.obj["plugin_dirs"] = plugin_dirs
    ctx.obj["trace"] = trace
    ctx.obj["verbose"] = verbose


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
        raise click.ClickException(str(exc)) from None
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
            }
        )
    doc = (cls.__doc__ or "").strip()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": cls.name,
                    "category": cls.label(),
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
    click.echo(f"category: {cls.label()}    blend: {cls.blend}")
    if doc:
        click.echo("")
        click.echo(doc)
    click.echo("")
    click.echo("parameters:")
    if not rows:
        click.echo("  (none)")
    for r in rows:
        varies = f"; varies {r['varies']} by default" if r["varies"] is not None else ""
        click.echo(
            f"  {r['name']} ({r['type']}, default {r['default']!r}, allowed {r['allowed']}{varies})"
        )
        if r["doc"]:
            click.echo(f"      {r['doc']}")


def main(argv: Sequence[str] | None = None) -> Any:
    return cli.main(args=list(argv) if argv is not None else None, prog_name="defectsynth")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
