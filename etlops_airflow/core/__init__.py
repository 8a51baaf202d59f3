"""The engine: plain Python that decides. Nothing below this package imports Airflow
(tests/unit/test_layering.py checks it), so every decision is unit-testable in microseconds."""
