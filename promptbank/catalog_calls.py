"""The catalog calls of the Python SDK's `Client`: backbones, prompts, versions, aliases, PEFT export and import.

A mixin: `Client` (promptbank/client.py) gives it its stubs and deadline; `_all_pages` comes from AdminCalls.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask

from promptbank.checks import INT64, integer, strings
from promptbank_api.names import strip_collection, to_timestamp
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import catalog_pb2_grpc as cat_grpc


def task_spec(labels: Sequence[str], label_texts: Sequence[str] = (), label_words: Sequence[str] = (),
              description: str = "", pooling: str = "") -> cat.TaskSpec:
    """A classification task; empty fields take the server's defaults (label texts/words = labels)."""
    labels, label_texts = strings(labels, "labels"), strings(label_texts, "label_texts")
    label_words = strings(label_words, "label_words")
    return cat.TaskSpec(kind="classification", labels=labels, label_texts=label_texts, label_words=label_words,
                        description=description, pooling=pooling)


class CatalogCalls:
    """Reads need the reader role; creates, updates and deletes the admin role (the server decides)."""

    catalog: cat_grpc.PromptCatalogStub
    timeout: float

    _all_pages: Callable[..., list[Any]]  # AdminCalls' (Client mixes both in)

    def get_backbone(self, name: str) -> cat.Backbone:
        """A backbone, with the answering coordinator's replicas of it (`serving`: state and Ray node)."""
        return self.catalog.GetBackbone(cat.GetBackboneRequest(name=f"backbones/{strip_collection(name, 'backbones')}"),
                                        timeout=self.timeout)

    def list_backbones(self) -> list[cat.Backbone]:
        return list(self.catalog.ListBackbones(cat.ListBackbonesRequest(page_size=1000), timeout=self.timeout).backbones)

    def list_prompts(self, tag: str = "", backbone: str = "", label: str = "",
                     created_after: datetime | None = None) -> list[cat.Prompt]:
        """Every prompt matching the filters (follows page tokens)."""
        req = cat.ListPromptsRequest(tag=tag, backbone=backbone, label=label, create_after=to_timestamp(created_after, "created_after"))
        return self._all_pages(self.catalog.ListPrompts, req, "prompts")

    def get_prompt(self, name: str) -> cat.Prompt:
        return self.catalog.GetPrompt(cat.GetPromptRequest(name=name), timeout=self.timeout)

    def get_version(self, ref: str, include_tensor: bool = False) -> cat.PromptVersion:
        return self.catalog.GetPromptVersion(
            cat.GetPromptVersionRequest(name=ref, include_tensor=include_tensor), timeout=self.timeout
        )

    def list_versions(self, prompt: str, backbone: str = "", tag: str = "",
                      created_after: datetime | None = None) -> list[cat.PromptVersion]:
        """Every version of a prompt matching the filters, newest first."""
        req = cat.ListPromptVersionsRequest(parent=f"prompts/{prompt}", backbone=backbone, tag=tag,
                                            create_after=to_timestamp(created_after, "created_after"))
        return self._all_pages(self.catalog.ListPromptVersions, req, "versions")

    def update_prompt(self, prompt: str, *, tags: Sequence[str] | None = None, owner: str | None = None,
                      description: str | None = None) -> cat.Prompt:
        if tags is None and owner is None and description is None:  # the server would say "update_mask paths []"
            raise ValueError("update_prompt: give tags, owner and/or description")
        msg, paths = cat.Prompt(name=f"prompts/{prompt}"), []
        if tags is not None:
            msg.tags.extend(strings(tags, "tags"))
            paths.append("tags")
        if owner is not None:
            msg.owner = owner
            paths.append("owner")
        if description is not None:
            msg.task.description = description
            paths.append("task.description")
        req = cat.UpdatePromptRequest(prompt=msg, update_mask=FieldMask(paths=paths))
        return self.catalog.UpdatePrompt(req, timeout=self.timeout)

    def create_prompt(self, prompt: str, labels: Sequence[str], *, label_texts: Sequence[str] = (),
                      label_words: Sequence[str] = (), description: str = "", tags: Sequence[str] = (),
                      owner: str = "", pooling: str = "", request_id: str | None = None) -> cat.Prompt:
        task = task_spec(labels, label_texts, label_words, description, pooling)
        req = cat.CreatePromptRequest(prompt_id=prompt, prompt=cat.Prompt(task=task, tags=strings(tags, "tags"), owner=owner),
                                      request_id=request_id or uuid.uuid4().hex)
        return self.catalog.CreatePrompt(req, timeout=self.timeout)

    def delete_prompt(self, prompt: str, force: bool = False) -> None:
        self.catalog.DeletePrompt(cat.DeletePromptRequest(name=f"prompts/{prompt}", force=force), timeout=self.timeout)

    def delete_version(self, ref: str, force: bool = False) -> None:
        self.catalog.DeletePromptVersion(cat.DeletePromptVersionRequest(name=ref, force=force), timeout=self.timeout)

    def tag_version(self, ref: str, tags: Sequence[str]) -> cat.PromptVersion:
        req = cat.UpdatePromptVersionRequest(version=cat.PromptVersion(name=ref, tags=strings(tags, "tags")),
                                             update_mask=FieldMask(paths=["tags"]))
        return self.catalog.UpdatePromptVersion(req, timeout=self.timeout)

    def delete_alias(self, prompt: str, alias: str) -> None:
        self.catalog.DeleteAlias(cat.DeleteAliasRequest(name=f"prompts/{prompt}/aliases/{alias}"), timeout=self.timeout)

    def alias_history(self, prompt: str) -> list[cat.AliasEvent]:
        req = cat.ListAliasHistoryRequest(parent=f"prompts/{prompt}", page_size=1000)
        return list(self.catalog.ListAliasHistory(req, timeout=self.timeout).events)

    def export_version(self, ref: str) -> cat.ExportPromptVersionResponse:
        """The two files of a PEFT prompt-tuning adapter (adapter_config.json, adapter_model.safetensors)."""
        return self.catalog.ExportPromptVersion(cat.ExportPromptVersionRequest(name=ref), timeout=self.timeout)

    def import_version(self, prompt: str, backbone: str, adapter_config: bytes, adapter_model: bytes, *,
                       labels: Sequence[str] = (), label_texts: Sequence[str] = (), label_words: Sequence[str] = (),
                       pooling: str = "", request_id: str | None = None) -> cat.PromptVersion:
        req = cat.ImportPromptVersionRequest(
            parent=f"prompts/{prompt}", backbone=backbone if backbone.startswith("backbones/") else f"backbones/{backbone}",
            adapter_config=adapter_config, adapter_model=adapter_model,
            task=task_spec(labels, label_texts, label_words, pooling=pooling),
            request_id=request_id or uuid.uuid4().hex,
        )
        return self.catalog.ImportPromptVersion(req, timeout=self.timeout)

    def set_alias(self, prompt: str, alias: str, version: int) -> cat.Alias:
        req = cat.SetAliasRequest(parent=f"prompts/{prompt}", alias=alias, version=integer(version, "version", -INT64 - 1, INT64))
        return self.catalog.SetAlias(req, timeout=self.timeout)
