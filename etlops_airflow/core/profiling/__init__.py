"""Profiling engine: sessions, stages, the sampler, findings and reports. Plain Python with an
injectable clock and reader; the Airflow side (store, listener, XCom, Stats) is an adapter."""
