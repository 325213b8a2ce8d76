"""The paper table's pieces: ``settings`` (profiles, variants, the invocation's values), ``subsets`` (the
seeded data), ``runs`` (running and tuning), ``stats`` and ``diagnostics`` (what the runs measured),
``collect`` (the results) and ``render`` (the markdown). ``benchmarks/paper_table.py`` is the command."""
