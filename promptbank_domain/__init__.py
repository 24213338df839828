"""Domain types: what a task, a training run, a job and the catalog's records are, in plain dataclasses.

A leaf: it imports the standard library and `promptbank_api`'s errors and names, nothing else of ours, so the
SDK, the coordinator, the workers and the bank all speak these types (tests/test_structure.py holds that).
"""
