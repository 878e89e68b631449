"""The only code that speaks to MLflow: the run recorder, sweeps' parent runs and resume
lookups, the report's queries, and the tag names runs share. MLflow itself is imported
lazily inside functions: config checks must not pay for it.
"""
