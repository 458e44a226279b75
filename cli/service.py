"""`multichannel run`: the exactly-once classifier service."""

from __future__ import annotations

import typer

from config.endpoints import EndpointsUnavailable, resolve
from config.logs import configure_logging, get_logger
from config.settings import Settings


def register(app: typer.Typer) -> None:
    """Attach `run` to the main app."""

    @app.command("run")
    def run_command() -> None:
        """Consume billing and partner events and emit decisions exactly once (config: MULTICHANNEL_* env)."""
        from consumers.commit import ABANDONED_PRODUCERS
        from consumers.runtime import tune_gc
        from consumers.service import ClassifierService
        from consumers.watchdog import exit_now

        tune_gc()

        settings = Settings()
        configure_logging(settings.log_level)
        log = get_logger("multichannel.run")
        try:
            settings = resolve(settings)
        except EndpointsUnavailable as exc:
            log.error("no_broker", error=str(exc))
            raise typer.Exit(2) from exc
        service = ClassifierService(settings)
        service.install_signal_handlers()
        log.info(
            "starting",
            application_id=settings.application_id,
            transactional_id=settings.transactional_id,
            input_topic=settings.subscription_topic,
        )
        code = service.run()
        log.info("stopped", exit_code=code)
        if ABANDONED_PRODUCERS:  # freeing one at interpreter shutdown would wait for its blocked call
            exit_now(code)
        raise typer.Exit(code)
