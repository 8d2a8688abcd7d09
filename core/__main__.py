"""``python -m semon`` is the ``semon`` command."""

from semon.cli import app

app()
