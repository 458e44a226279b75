"""`multichannel run` whose clock runs ahead of (or behind) UTC wall time by `CLOCKED_SERVICE_OFFSET_S` seconds.

The service's clock is wall time, and a cancellation window ends at a midnight: a test that must see a window
close while the service runs (and across its SIGKILL) starts it this way, with midnight a few seconds ahead.
The clock still moves at wall speed and never backwards, so the service sees time as a deployment does."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from config.endpoints import resolve
from config.logs import configure_logging
from config.settings import Settings
from consumers.runtime import tune_gc
from consumers.service import ClassifierService, utc_now

OFFSET_VARIABLE = "CLOCKED_SERVICE_OFFSET_S"


def main() -> int:
    offset = timedelta(seconds=float(os.environ[OFFSET_VARIABLE]))

    def clock() -> datetime:
        return utc_now() + offset

    tune_gc()
    settings = Settings()
    configure_logging(settings.log_level)
    service = ClassifierService(resolve(settings), clock=clock)
    service.install_signal_handlers()
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
