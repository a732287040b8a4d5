"""Alembic migrations of the concentrator's store (run by :class:`osgp.concentrator.Store`)."""
