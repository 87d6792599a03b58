"""The run store: one folder per run, atomic records, the one rule for a run's state, and
`collect` into one tidy DataFrame. See ``study/store/runs.py`` for the layout on disk."""
from study.store.runs import *  # noqa: F401,F403
from study.store.runs import (_locked, _cell)  # noqa: F401
