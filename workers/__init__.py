"""Pure compute: frozen backbones, soft-prompt application, batched classification and prompt training.

Workers never open the database and never import the coordinator; tensors arrive and leave as
safetensors bytes through Ray (see :mod:`bank.codec`, the only part of the bank used here).
"""
