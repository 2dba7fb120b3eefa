"""The store: SQLAlchemy models, sessions and migrations, the rows results share, and read-side queries."""
