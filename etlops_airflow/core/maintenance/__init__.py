"""Maintenance decisions: scan plans, selection by age and size, rotation plans, rollup
windows and health verdicts. Plain Python; the operators only carry them out."""
