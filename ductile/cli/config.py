"""The ``config`` noun (config.md §6, §9, §10): the integrity lock; more verbs join here."""

from __future__ import annotations

from cyclopts import App

from ductile.cli.config_lock import lock

app = App(name="config", help="The configuration: lock.")
app.command(lock, name="lock")
