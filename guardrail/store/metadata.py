"""The complete schema: every model module's tables on one metadata (what Alembic compares migrations with).

The JUnit tables declare on the same ``Base`` as the core tables, in a module of their own that the core models
do not import; importing both here is what makes the metadata whole.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from guardrail.store import junit_models, models

MODEL_MODULES = (models, junit_models)
METADATA: MetaData = models.Base.metadata
