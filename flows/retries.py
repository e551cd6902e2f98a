"""When a Prefect task may retry: on passing faults, never on an error the user must fix."""

from __future__ import annotations

from medcls.errors import MedclsError


def retry_unless_user_error(task, task_run, state) -> bool:
    """Retry I/O and service faults; a bad param, bad data or failed validation stays failed."""
    return not isinstance(state.result(raise_on_failure=False), MedclsError)
