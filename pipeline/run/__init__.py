"""Run wiring: prepare inputs (shared by plan mode and real runs), run the stages, price a run;
the stage cache and the cost model.
"""
