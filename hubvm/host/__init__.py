"""This machine, as the tasks need it: what each task needs (tools.py), how each need is judged and which answers
are remembered (probes.py), and `hubvm check`, which prints them all (check.py)."""
