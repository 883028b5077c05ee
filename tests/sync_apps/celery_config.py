"""The Celery app of celery_shop.py, made the same way by the worker and by the test that
sends it tasks: kombu's ``filesystem://`` broker and the ``file://`` result backend in
one folder, so the two processes meet without a server."""

from __future__ import annotations

from celery import Celery


def make_app(folder: str) -> Celery:
    app = Celery("celery_shop", broker="filesystem://", backend=f"file://{folder}/results")
    app.conf.update(
        broker_transport_options={
            "data_folder_in": f"{folder}/queue",
            "data_folder_out": f"{folder}/queue",
            "control_folder": f"{folder}/control",  # else ./control, wherever it runs
            "polling_interval": 0.05,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
    )
    return app
