"""`evaluate.py`'s body: what is evaluated (a run dir or a model), on which tasks, records."""
