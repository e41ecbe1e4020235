"""The ``lusaug`` command line. Each concern registers its own commands (``<pkg>/commands.py``).

Heavy libraries (torch, mlflow, great_expectations) are imported inside the commands, so
``lusaug --help`` stays fast. Help text is plain (no Rich markup): docstrings and option help
name things like ``/health[/live|/ready]`` and ``[serve.model]``, which markup would misread.
An error the user can fix (:class:`lusaug.core.errors.LusaugError`, a missing file, unreadable YAML)
prints one ``error: ...`` line and exits 2, from every command; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from typer.core import TyperGroup

from lusaug.cluster import commands as cluster_commands
from lusaug.core.errors import LusaugError
from lusaug.data import commands as data_commands
from lusaug.reporting import commands as reporting_commands
from lusaug.serving import commands as serving_commands
from lusaug.tracking import commands as tracking_commands
from lusaug.workspace import commands as workspace_commands

EXIT_BAD_INPUT = 2  # as the commands' own `error: ...` exits
USER_ERRORS = (LusaugError, FileNotFoundError, yaml.YAMLError)


class _OneLineErrors(TyperGroup):
    """Turns a user-fixable error from any command into one ``error: ...`` line."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


app = typer.Typer(
    name="lusaug",
    cls=_OneLineErrors,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

for module in (
    cluster_commands,
    data_commands,
    reporting_commands,
    serving_commands,
    tracking_commands,
    workspace_commands,
):
    module.register(app)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context) -> None:
    """Lung-ultrasound augmentation study: phantom, import, pipeline helpers, registry, serving."""
    if ctx.invoked_subcommand is None:  # bare `lusaug`: the help, and success
        typer.echo(ctx.get_help())


@app.command("profile")
def profile(
    name: str = typer.Argument(
        ..., help="A profiles/<name>.yaml: default | micro | pocus | paper."
    ),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Switch params.yaml to a named profile (comments kept); `default` restores the defaults."""
    from lusaug.core.profiles import apply_profile

    apply_profile(name, params_file)
    typer.echo(f"params.yaml now uses profile {name!r}; run `dvc repro` to rebuild what changed")


if __name__ == "__main__":
    app()
