"""Alembic environment: the URL comes from the Config object built by neuronav.db.session."""

from __future__ import annotations

from alembic import context

from neuronav.db.models import Base
from neuronav.db.session import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),  # SQLite cannot ALTER most things: copy-and-move
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
