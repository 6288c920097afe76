"""Alembic environment: runs migrations on the engine mailmanager hands over."""

from __future__ import annotations

from alembic import context

from mailmanager.db import models, searchindex

config = context.config
target_metadata = models.Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from mailmanager.db import store

        url = config.get_main_option("sqlalchemy.url")
        assert url, "set sqlalchemy.url or pass an engine"
        engine = store.make_engine(url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=searchindex.include_name,
        )
        context.run_migrations()


run_migrations_online()
