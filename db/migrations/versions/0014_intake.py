"""intake: HL7 v2 and FHIR messages as received (accepted or refused), the candidates they raise
(at most one open per patient, pathway and subject) and the candidates' audit trail

Revision ID: 0014_intake
Revises: 0013_measures
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_intake"
down_revision: str | None = "0013_measures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    _messages()
    _candidates()
    _candidate_audit()


def _messages() -> None:
    op.create_table(
        "intake_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("control_id", sa.String(length=200), nullable=True),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("patient_ref", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_intake_messages_patient_ref", "intake_messages", ["patient_ref"])
    op.create_index("ix_intake_messages_status", "intake_messages", ["status"])


def _candidates() -> None:
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("pathway_id", sa.String(length=64), nullable=False),
        sa.Column("patient_ref", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("sentence", sa.Text(), nullable=False),
        sa.Column("spans", sa.JSON(), nullable=False),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("noted", sa.JSON(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("reported_on", sa.Date(), nullable=True),
        sa.Column("modality", sa.String(length=40), nullable=True),
        sa.Column("event", sa.JSON(), nullable=True),
        sa.Column("episode_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["intake_messages.id"]),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_candidates_patient_ref", "candidates", ["patient_ref"])
    op.create_index("ix_candidates_status", "candidates", ["status"])
    op.create_index(
        "uq_candidates_open",
        "candidates",
        ["patient_ref", "pathway_id", "subject"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def _candidate_audit() -> None:
    op.create_table(
        "candidate_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_candidate_audit_candidate_id", "candidate_audit", ["candidate_id"])


def downgrade() -> None:
    op.drop_table("candidate_audit")
    op.drop_index("uq_candidates_open", table_name="candidates")
    op.drop_table("candidates")
    op.drop_table("intake_messages")
