"""The dashboard and JSON API of perf-guardrail (FastAPI + Jinja2, assets served locally)."""
