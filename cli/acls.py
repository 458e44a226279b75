"""`multichannel acls`: the least-privilege ACLs of the service for the current settings, printed or applied."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cli.ready import one_line_errors, ready_settings
from config.settings import Settings


def register(app: typer.Typer) -> None:
    """Attach `acls` to the main app."""

    @app.command("acls")
    def acls_command(
        principal: Annotated[
            str | None,
            typer.Option(help="Who gets the rights, e.g. User:classifier (default: User:<MULTICHANNEL_SASL_USERNAME>)"),
        ] = None,
        json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per ACL instead of a table.")] = False,
        apply: Annotated[
            bool,
            typer.Option(
                "--apply",
                help="Create them on the brokers, logged in with the MULTICHANNEL_SASL_* credentials of this command "
                "(an administrator's); existing ones are kept.",
            ),
        ] = False,
    ) -> None:
        """The ACLs `multichannel run` needs with these settings (topics, group, transactional ids), and no more."""
        from deploy.acls import apply_acls, service_acls, service_principal

        settings = ready_settings(brokers=True, registry=False) if apply else Settings()
        who = principal or service_principal(settings)
        if not who.startswith("User:") or who == "User:":
            typer.echo("acls: a principal is needed: --principal User:<name> or MULTICHANNEL_SASL_USERNAME", err=True)
            raise typer.Exit(2)
        acls = service_acls(settings, who)
        if json_lines:
            for a in acls:
                print(orjson.dumps(a.as_dict()).decode())
        else:
            table = Table(title=f"ALLOW {who} from any host (--json says why each is needed)")
            for column in ("resource", "name", "pattern", "operation"):
                table.add_column(column, no_wrap=True)
            for a in acls:
                table.add_row(a.resource_type, a.resource_name, a.pattern_type, a.operation)
            Console(width=max(Console().width, 120)).print(table)  # names are never cut short
        if apply:
            with one_line_errors():
                apply_acls(settings.kafka_client_config(), acls)
            typer.echo(f"applied {len(acls)} ACLs for {who}", err=True)
