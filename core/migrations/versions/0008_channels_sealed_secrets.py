"""Alert channels and sealed secrets: a webhook row gets a kind (webhook, wecom, dingtalk,
email, sms), a channel's settings and a severity list; secrets are sealed with SEMON_SECRET_KEY.

Existing signing secrets are sealed here, so the upgrade needs SEMON_SECRET_KEY when any
webhook exists (it stops with one line naming the variable otherwise).

Revision ID: 0008
Revises: 0010
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add kind/config/severities, widen secret, seal the secrets stored in clear."""
    conn = op.get_bind()
    # The key is checked before any change: SQLite runs DDL outside the transaction, so a stop
    # halfway would leave a schema that this revision can no longer be applied to.
    clear = [(i, s) for i, s in conn.execute(sa.text("SELECT id, secret FROM webhooks")) if not s.startswith("fernet:")]
    sealer = None
    if clear:
        from semon.config import Settings
        from semon.notify.sealed import Sealer, SecretKeyError

        # The environment first (what the running process was given), then .env like Settings.
        key = os.environ.get("SEMON_SECRET_KEY") or Settings().secret_key
        if not key:
            n = len(clear)
            raise SecretKeyError(f"SEMON_SECRET_KEY is not set: it is needed to seal the {n} stored webhook secrets")
        sealer = Sealer(key)
    with op.batch_alter_table("webhooks") as b:
        b.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="webhook"))
        b.add_column(sa.Column("config", sa.JSON(), nullable=True))
        b.add_column(sa.Column("severities", sa.JSON(), nullable=True))
        b.alter_column("secret", type_=sa.Text(), existing_type=sa.String(200), existing_nullable=False)
    if sealer is not None:
        for i, s in clear:
            conn.execute(sa.text("UPDATE webhooks SET secret = :s WHERE id = :i"), {"s": sealer.seal(s), "i": i})


def downgrade() -> None:
    """Drop the channel columns (sealed secrets stay sealed: open them with the key if needed)."""
    with op.batch_alter_table("webhooks") as b:
        b.drop_column("severities")
        b.drop_column("config")
        b.drop_column("kind")
