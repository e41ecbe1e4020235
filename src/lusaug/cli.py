"""The ``lusaug`` command line. Each concern registers its own commands (``<pkg>/commands.py``).

Heavy libraries (torch, mlflow, great_expectations) are imported inside the commands, so
``lusaug --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from lusaug.cluster import commands as cluster_commands
from lusaug.data import commands as data_commands
from lusaug.reporting import commands as reporting_commands
from lusaug.serving import commands as serving_commands
from lusaug.tracking import commands as tracking_commands

app = typer.Typer(
    name="lusaug",
    help="Lung-ultrasound augmentation study: phantom, import, pipeline helpers, registry, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for module in (
    cluster_commands,
    data_commands,
    reporting_commands,
    serving_commands,
    tracking_commands,
):
    module.register(app)


@app.command("profile")
def profile(
    name: str = typer.Argument(..., help="default | micro | pocus | paper"),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Switch params.yaml to a named profile (comments kept); `default` restores the defaults."""
    from lusaug.profiles import apply_profile

    apply_profile(name, params_file)
    typer.echo(f"params.yaml now uses profile {name!r}; run `dvc repro` to rebuild what changed")


if __name__ == "__main__":
    app()
