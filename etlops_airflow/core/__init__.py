"""The engine: plain Python that decides. Nothing below this package imports Airflow."""
