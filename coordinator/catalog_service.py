"""PromptCatalog: admin over backbones, prompts, versions and aliases (one session per RPC)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf.struct_pb2 import Struct

import promptbank_kinds as kinds
from bank import catalog, outcomes
from bank.codec import encode_prompt
from bank.peft_format import ImportedPrompt, export_peft, import_peft
from bank.writer import BankDB, Tx
from coordinator import auth
from coordinator import convert as cv
from coordinator.backbone_lifecycle import deregister, record_backbone
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from coordinator.live_convert import live_stats_to_proto
from coordinator.pool import ReplicaPool
from coordinator.scheduler import JobScheduler
from promptbank_api.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from promptbank_api.names import (
    check_name,
    from_timestamp,
    movable_alias,
    strip_collection,
    version_name,
)
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import catalog_pb2_grpc as cat_grpc
from promptbank_domain.catalog import BackboneRecord
from promptbank_domain.precision import check_dtype

UPDATABLE = {"tags", "owner", "task.description"}


def version_ref(name: str) -> str:
    """Accept `prompts/p/versions/n` and the short reference forms."""
    return strip_collection(name, "prompts")


def check_adapter_fits(imported: ImportedPrompt, bb: BackboneRecord) -> None:
    """FAILED_PRECONDITION naming the mismatch when a PEFT adapter was made for another shape of model."""
    uncarried = kinds.uncarried(imported.kind, bb.geometry, bb.name)
    if uncarried:
        raise FailedPrecondition(uncarried)
    kind = kinds.get(imported.kind)
    has = kind.peft_dims_of(kind.width(bb.geometry), bb.geometry)
    says = kinds.PeftDims(imported.token_dim, imported.num_layers, imported.num_attention_heads)
    if has != says:
        raise FailedPrecondition(f"the {kind.peft_type} adapter is for {says}; backbone {bb.name!r} has {has}")


def check_prompt_fields(limits: Limits, tags: Sequence[str], owner: str) -> None:
    """A prompt's free-text fields within their limits (the task's are checked with it)."""
    limits.check_tags(tags, "prompt")
    limits.check_chars("owner_chars", owner, "owner")


class CatalogService(cat_grpc.PromptCatalogServicer):
    def __init__(self, db: BankDB, pool: ReplicaPool, config: ServerConfig, scheduler: JobScheduler):
        self.db, self.pool, self.config, self.scheduler = db, pool, config, scheduler
        self.page_bytes = cv.page_bytes(config.limits)  # list pages are bounded in bytes as well as rows

    def _replicas(self, name: str) -> list[cat.BackboneReplica]:
        bb = self.pool.backbones.get(name)
        return [cat.BackboneReplica(index=r.index, state=r.state, node_id=r.node_id) for r in bb.replicas] if bb else []

    def _proto(self, bb: BackboneRecord) -> cat.Backbone:
        """The record with this coordinator's replicas of it and their serving dtype."""
        served = self.pool.backbones.get(bb.name)
        return cv.backbone_to_proto(bb, self._replicas(bb.name), served.info.dtype if served else "")

    async def ListBackbones(self, request: cat.ListBackbonesRequest, context: grpc.aio.ServicerContext) -> cat.ListBackbonesResponse:
        offset, limit = cv.page(request.page_size, request.page_token, {})

        def q(s: Tx) -> cat.ListBackbonesResponse:
            rows = catalog.list_backbones(s, offset, limit)
            out, token = cv.fill_page(rows, self._proto, offset, limit, {}, self.page_bytes)
            return cat.ListBackbonesResponse(backbones=out, next_page_token=token)

        return await self.db.read(q)

    async def GetBackbone(self, request: cat.GetBackboneRequest, context: grpc.aio.ServicerContext) -> cat.Backbone:
        name = strip_collection(request.name, "backbones")
        return await self.db.read(lambda s: self._proto(catalog.get_backbone(s, name)))

    async def RegisterBackbone(self, request: cat.RegisterBackboneRequest, context: grpc.aio.ServicerContext) -> cat.Backbone:
        """Load a backbone on new Ray replicas and record it; repeating the same registration is a no-op."""
        name = check_name("backbone", request.backbone_id)
        self.config.limits.check_chars("model_chars", request.model, "model")
        self.config.limits.check_chars("field_chars", request.revision, "revision")
        if not request.model:
            raise InvalidArgument("model is required: a Hugging Face model id or a path on the workers")
        try:
            dtype = check_dtype(request.dtype, "dtype")
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        served = self.pool.backbones.get(name)
        if served is not None:
            if (served.spec.model, served.spec.revision) != (request.model, request.revision):
                raise AlreadyExists(f"backbone {name!r} is already served from {served.spec.model!r}")
            if dtype not in ("auto", served.info.dtype):
                raise AlreadyExists(f"backbone {name!r} is already served in {served.info.dtype}, not {dtype}")
        else:
            try:
                spec = BackboneSpec(name, request.model, request.revision,
                                    request.replicas if request.HasField("replicas") else 1, dtype)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            self.config.check_model(spec.model)  # PERMISSION_DENIED before anything is read or downloaded
            info = await self.pool.add(spec)
            await self.db.run(lambda s: record_backbone(s, spec, info))
        return await self.db.run(lambda s: self._proto(catalog.get_backbone(s, name)))

    async def DeregisterBackbone(self, request: cat.DeregisterBackboneRequest, context: grpc.aio.ServicerContext
                                 ) -> cat.DeregisterBackboneResponse:
        """Stop this coordinator's replicas of a backbone (coordinator/backbone_lifecycle.py); calls still on them
        get --grace to finish."""
        name = check_name("backbone", strip_collection(request.name, "backbones"))
        return await deregister(self.db, self.pool, self.scheduler, name, force=request.force,
                                who=auth.current().name, wait_s=self.config.grace_seconds)

    async def CreatePrompt(self, request: cat.CreatePromptRequest, context: grpc.aio.ServicerContext) -> cat.Prompt:
        name = check_name("prompt", request.prompt_id)
        limits, who = self.config.limits, auth.current().name
        task = cv.task_from_proto(request.prompt.task, limits)
        check_prompt_fields(limits, request.prompt.tags, request.prompt.owner)
        limits.check_chars("field_chars", request.request_id, "request_id")
        digest = cv.request_digest(request)

        def q(s: Tx) -> cat.Prompt:
            earlier = catalog.seen_request(s, request.request_id, "CreatePrompt", digest, principal=who)
            if earlier:
                return cv.prompt_to_proto(catalog.get_prompt(s, strip_collection(earlier, "prompts")))
            p = catalog.create_prompt(s, name, task, list(request.prompt.tags), request.prompt.owner, created_by=who)
            catalog.remember_request(s, request.request_id, "CreatePrompt", digest, f"prompts/{name}", principal=who)
            return cv.prompt_to_proto(p)

        return await self.db.run(q)

    async def GetPrompt(self, request: cat.GetPromptRequest, context: grpc.aio.ServicerContext) -> cat.Prompt:
        name = strip_collection(request.name, "prompts")
        return await self.db.read(lambda s: cv.prompt_to_proto(catalog.get_prompt(s, name)))

    async def ListPrompts(self, request: cat.ListPromptsRequest, context: grpc.aio.ServicerContext) -> cat.ListPromptsResponse:
        after = from_timestamp(request.create_after)
        query = {"tag": request.tag, "backbone": strip_collection(request.backbone, "backbones"),
                 "label": request.label, "after": str(after or "")}
        offset, limit = cv.page(request.page_size, request.page_token, query)

        def q(s: Tx) -> cat.ListPromptsResponse:
            rows = catalog.list_prompts(s, offset, limit, tag=query["tag"], backbone=query["backbone"],
                                      label=request.label, created_after=after)
            out, token = cv.fill_page(rows, cv.prompt_to_proto, offset, limit, query, self.page_bytes)
            return cat.ListPromptsResponse(prompts=out, next_page_token=token)

        return await self.db.read(q)

    async def UpdatePrompt(self, request: cat.UpdatePromptRequest, context: grpc.aio.ServicerContext) -> cat.Prompt:
        name = strip_collection(request.prompt.name, "prompts")
        paths = list(request.update_mask.paths)
        bad = sorted(set(paths) - UPDATABLE)
        if not paths or bad:
            raise InvalidArgument(f"update_mask paths {bad or paths} are not updatable; use some of {sorted(UPDATABLE)}")

        msg = request.prompt
        check_prompt_fields(self.config.limits, msg.tags if "tags" in paths else (),
                            msg.owner if "owner" in paths else "")
        self.config.limits.check_chars("description_chars", msg.task.description, "task.description")

        def q(s: Tx) -> cat.Prompt:
            p = catalog.update_prompt(
                s, name, tags=list(msg.tags) if "tags" in paths else None,
                owner=msg.owner if "owner" in paths else None,
                description=msg.task.description if "task.description" in paths else None)
            return cv.prompt_to_proto(p)

        return await self.db.run(q)

    async def DeletePrompt(self, request: cat.DeletePromptRequest, context: grpc.aio.ServicerContext) -> cat.DeletePromptResponse:
        name = strip_collection(request.name, "prompts")
        await self.db.run(lambda s: catalog.delete_prompt(s, name, request.force))
        return cat.DeletePromptResponse()

    async def GetPromptVersion(self, request: cat.GetPromptVersionRequest, context: grpc.aio.ServicerContext) -> cat.PromptVersion:
        ref = version_ref(request.name)
        window = self.config.outcome_window_hours * 3600

        def q(s: Tx) -> cat.PromptVersion:
            v = catalog.resolve(s, ref, tensor=request.include_tensor)
            msg = cv.version_to_proto(v)
            msg.live.CopyFrom(live_stats_to_proto(outcomes.live_stats(s, v.prompt, v.version, window)))
            return msg

        return await self.db.read(q)

    async def ListPromptVersions(
        self, request: cat.ListPromptVersionsRequest, context: grpc.aio.ServicerContext
    ) -> cat.ListPromptVersionsResponse:
        name = strip_collection(request.parent, "prompts")
        after = from_timestamp(request.create_after)
        backbone = strip_collection(request.backbone, "backbones")
        query = {"parent": name, "backbone": backbone, "tag": request.tag, "after": str(after or "")}
        offset, limit = cv.page(request.page_size, request.page_token, query)

        def q(s: Tx) -> cat.ListPromptVersionsResponse:
            rows = catalog.list_versions(s, name, offset, limit, backbone=backbone, tag=request.tag,
                                         created_after=after)
            out, token = cv.fill_page(rows, cv.version_to_proto, offset, limit, query, self.page_bytes)
            return cat.ListPromptVersionsResponse(versions=out, next_page_token=token)

        return await self.db.read(q)

    async def UpdatePromptVersion(
        self, request: cat.UpdatePromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.PromptVersion:
        paths = list(request.update_mask.paths)
        if paths != ["tags"]:
            raise InvalidArgument(f"update_mask paths {paths} are not updatable; a version is immutable except 'tags'")
        ref = version_ref(request.version.name)
        self.config.limits.check_tags(request.version.tags, "version")

        def q(s: Tx) -> cat.PromptVersion:
            return cv.version_to_proto(catalog.set_version_tags(s, ref, list(request.version.tags)))

        return await self.db.run(q)

    async def DeletePromptVersion(
        self, request: cat.DeletePromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.DeletePromptVersionResponse:
        ref = version_ref(request.name)
        await self.db.run(lambda s: catalog.delete_version(s, ref, request.force))
        return cat.DeletePromptVersionResponse()

    async def ImportPromptVersion(
        self, request: cat.ImportPromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.PromptVersion:
        """A PEFT prompt-tuning adapter (its two files) becomes a new version; the prompt is created if new."""
        name = check_name("prompt", strip_collection(request.parent, "prompts"))
        backbone = strip_collection(request.backbone, "backbones")
        limits, who = self.config.limits, auth.current().name
        limits.check_chars("field_chars", request.request_id, "request_id")
        imported = import_peft(request.adapter_config, request.adapter_model)
        limits.check_chars("model_chars", imported.base_model, "the adapter's base_model_name_or_path")
        requested = cv.task_from_proto(request.task, limits) if request.task.labels else None
        digest = cv.request_digest(request)

        def q(s: Tx) -> cat.PromptVersion:
            earlier = catalog.seen_request(s, request.request_id, "ImportPromptVersion", digest, principal=who)
            if earlier:
                return cv.version_to_proto(catalog.resolve(s, version_ref(earlier)))
            bb = catalog.get_backbone(s, backbone)
            check_adapter_fits(imported, bb)
            arch = "encoder" if bb.architecture == "masked_lm" else bb.architecture
            if imported.architecture and imported.architecture != arch:
                raise FailedPrecondition(f"adapter task type {imported.task_type} does not fit backbone {backbone!r} "
                                         f"({bb.architecture})")
            p = catalog.find_prompt(s, name)
            if p is None:
                if not requested and not imported.task:
                    raise InvalidArgument(f"prompt {name!r} does not exist: give its task (labels) to create it")
                task = requested or cv.task_from_dict(imported.task or {}, limits)
                catalog.create_prompt(s, name, task, created_by=who)
            elif requested and requested.labels != p.task.labels:
                raise FailedPrecondition(f"prompt {name!r} has labels {list(p.task.labels)}, the import asks for "
                                         f"{list(requested.labels)}")
            lineage = {"imported_from": f"peft:{imported.base_model or 'unknown base'}", "init": "import"}
            v = catalog.add_version(s, name, backbone, encode_prompt(imported.tensor, kind=imported.kind),
                                    lineage=lineage, principal=who)
            catalog.remember_request(s, request.request_id, "ImportPromptVersion", digest,
                                     version_name(name, v.version), principal=who)
            return cv.version_to_proto(v)

        return await self.db.run(q)

    async def ExportPromptVersion(
        self, request: cat.ExportPromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.ExportPromptVersionResponse:
        ref = version_ref(request.name)

        def q(s: Tx) -> cat.ExportPromptVersionResponse:
            v = catalog.resolve(s, ref, tensor=True)
            bb, task = catalog.get_backbone(s, v.backbone), catalog.get_prompt(s, v.prompt).task.to_dict()
            extra: dict[str, str | dict[str, float]] = {"version": v.name, "sha256": v.sha256,
                     "backbone": bb.name, "fingerprint": v.backbone_fingerprint, "metrics": v.metrics}
            dims = kinds.get(v.kind).peft_dims_of(int(v.shape[1]), bb.geometry)  # e.g. a prefix's key/value width
            config, weights = export_peft(
                v.tensor, base_model=bb.model, revision=bb.revision, architecture=bb.architecture,
                num_virtual_tokens=int(v.shape[0]), token_dim=dims.token_dim, task=task, extra=extra,
                num_layers=dims.num_layers, num_attention_heads=dims.num_attention_heads,
            )
            meta = Struct()
            meta.update({"task": task, **extra})
            return cat.ExportPromptVersionResponse(adapter_config=config, adapter_model=weights, metadata=meta)

        return await self.db.read(q)

    async def SetAlias(self, request: cat.SetAliasRequest, context: grpc.aio.ServicerContext) -> cat.Alias:
        name = strip_collection(request.parent, "prompts")
        who = auth.current().name
        movable_alias(request.alias)
        if request.version < 1:
            raise InvalidArgument(f"version={request.version}: version numbers start at 1")

        def q(s: Tx) -> cat.Alias:
            v = catalog.set_alias(s, name, request.alias, request.version, who)
            return cat.Alias(name=f"prompts/{name}/aliases/{request.alias}", version=v.name)

        return await self.db.run(q)

    async def DeleteAlias(self, request: cat.DeleteAliasRequest, context: grpc.aio.ServicerContext) -> cat.DeleteAliasResponse:
        parts = strip_collection(request.name, "prompts").split("/aliases/")
        if len(parts) != 2:
            raise InvalidArgument(f"alias name {request.name!r} must look like prompts/{{prompt}}/aliases/{{alias}}")
        who = auth.current().name
        movable_alias(parts[1])
        await self.db.run(lambda s: catalog.delete_alias(s, parts[0], parts[1], who))
        return cat.DeleteAliasResponse()

    async def ListAliasHistory(
        self, request: cat.ListAliasHistoryRequest, context: grpc.aio.ServicerContext
    ) -> cat.ListAliasHistoryResponse:
        name = strip_collection(request.parent, "prompts")
        offset, limit = cv.page(request.page_size, request.page_token, {"parent": name})

        def q(s: Tx) -> cat.ListAliasHistoryResponse:
            rows = catalog.alias_history(s, name, offset, limit)
            out, token = cv.fill_page(rows, cv.alias_event_to_proto, offset, limit, {"parent": name}, self.page_bytes)
            return cat.ListAliasHistoryResponse(events=out, next_page_token=token)

        return await self.db.read(q)
