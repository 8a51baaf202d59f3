"""Pipeline migrations: model, loader, planner, runner, target database (plain Python)."""
