"""``shlax sbom IMAGE``: added to the CLI through ``shlax_register_commands``; imported only when
it runs (``shlax --help`` lists it from its entry-point name)."""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Optional

import click

from shlax_core.hookspecs import hookimpl


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image")
@click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
              help="Write the document to FILE instead of standard output.")
@click.option("--path", "show_path", is_flag=True, help="Print where the document is kept, not the document.")
def sbom(image: str, output: Optional[str], show_path: bool) -> None:
    """The CycloneDX 1.5 SBOM of IMAGE (a local image): every package that dpkg, pip and npm
    recorded in it. Computed once per image ID, then kept (docs/sbom.md)."""
    from shlax_sbom.image import sbom as make

    try:
        version = metadata.version("shlax-plugin-sbom")
    except metadata.PackageNotFoundError:
        version = "0"
    text, path = make(image, version)  # a ShlaxError is the CLI's: exit 2, no traceback
    if show_path:
        click.echo(str(path))
    elif output:
        with open(output, "w") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


@hookimpl
def shlax_register_commands(register: Callable[[Any], None]) -> None:
    register(sbom)
