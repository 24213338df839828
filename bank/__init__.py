"""The prompt bank: SQL catalog (SQLAlchemy 2) of backbones, prompts, versions, aliases and jobs.

Imports none of promptbank's other packages. Workers may use only the leaf modules :mod:`bank.codec` and :mod:`bank.errors`.
"""
