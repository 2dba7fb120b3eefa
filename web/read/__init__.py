"""Read models for the dashboard and the API, one module per resource: plain JSON-ready dicts built from the
store with bounded queries. Every function takes an open session; pages and API endpoints share them, so what a
page shows is exactly what the API returns. A missing thing raises guardrail.errors.NotFound (the app answers
404)."""
