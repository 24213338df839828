"""The prompt bank: SQL catalog (SQLAlchemy 2) of backbones, prompts, versions, aliases and jobs.

Imports only the shared leaves `promptbank_api`, `promptbank_domain` and `promptbank_kinds`; its functions return
the domain's read models, never ORM rows. Workers may use only the leaf module :mod:`bank.codec`.
"""
