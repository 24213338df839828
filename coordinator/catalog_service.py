"""PromptCatalog: admin over backbones, prompts, versions and aliases (one session per RPC)."""

from __future__ import annotations

import hashlib

import grpc
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.orm import Session

from bank import store
from bank.codec import encode_prompt
from bank.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from bank.peft_format import export_peft, import_peft
from bank.refs import check_name, strip_collection
from coordinator import convert as cv
from coordinator.config import BackboneSpec
from coordinator.db import BankDB
from coordinator.pool import ReplicaPool
from promptbank.v1 import catalog_pb2 as cat
from promptbank.v1 import catalog_pb2_grpc as cat_grpc
from workers.task import POOLINGS, TaskSpec

UPDATABLE = {"tags", "owner", "task.description"}


def task_dict(spec: cat.TaskSpec) -> dict:
    """Validate a TaskSpec message into the stored dict form."""
    return TaskSpec(
        labels=tuple(spec.labels), label_words=tuple(spec.label_words), label_texts=tuple(spec.label_texts),
        kind=spec.kind or "classification", description=spec.description, pooling=spec.pooling or POOLINGS[0],
    ).to_dict()


def request_digest(request: Message) -> str:
    """Hash of a create request without its request_id: the same id must come with the same payload."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")  # type: ignore[arg-type]
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def version_ref(name: str) -> str:
    """Accept `prompts/p/versions/n` and the short reference forms."""
    return strip_collection(name, "prompts")


class CatalogService(cat_grpc.PromptCatalogServicer):
    def __init__(self, db: BankDB, pool: ReplicaPool):
        self.db, self.pool = db, pool

    def _replicas(self, name: str) -> int:
        bb = self.pool.backbones.get(name)
        return len(bb.replicas) if bb else 0

    async def ListBackbones(self, request: cat.ListBackbonesRequest, context: grpc.aio.ServicerContext) -> cat.ListBackbonesResponse:
        offset, limit = cv.page(request.page_size, request.page_token, {})

        def q(s: Session) -> cat.ListBackbonesResponse:
            rows = store.list_backbones(s, offset, limit)
            return cat.ListBackbonesResponse(
                backbones=[cv.backbone_to_proto(b, self._replicas(b.name)) for b in rows],
                next_page_token=cv.next_token(offset, limit, len(rows), {}),
            )

        return await self.db.run(q)

    async def GetBackbone(self, request: cat.GetBackboneRequest, context: grpc.aio.ServicerContext) -> cat.Backbone:
        name = strip_collection(request.name, "backbones")
        return await self.db.run(lambda s: cv.backbone_to_proto(store.get_backbone(s, name), self._replicas(name)))

    async def RegisterBackbone(self, request: cat.RegisterBackboneRequest, context: grpc.aio.ServicerContext) -> cat.Backbone:
        """Load a backbone on new Ray replicas and record it; repeating the same registration is a no-op."""
        name = check_name("backbone", request.backbone_id)
        if not request.model:
            raise InvalidArgument("model is required: a Hugging Face model id or a path on the workers")
        served = self.pool.backbones.get(name)
        if served is not None:
            if (served.spec.model, served.spec.revision) != (request.model, request.revision):
                raise AlreadyExists(f"backbone {name!r} is already served from {served.spec.model!r}")
        else:
            try:
                spec = BackboneSpec(name, request.model, request.revision, request.replicas or 1)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            info = await self.pool.add(spec)
            await self.db.run(lambda s: store.upsert_backbone(
                s, name, model=spec.model, revision=spec.revision, architecture=info["architecture"],
                hidden_size=info["hidden_size"], fingerprint=info["fingerprint"]))
        return await self.db.run(lambda s: cv.backbone_to_proto(store.get_backbone(s, name), self._replicas(name)))

    async def CreatePrompt(self, request: cat.CreatePromptRequest, context: grpc.aio.ServicerContext) -> cat.Prompt:
        name = check_name("prompt", request.prompt_id)
        task = task_dict(request.prompt.task)
        digest = request_digest(request)

        def q(s: Session) -> cat.Prompt:
            earlier = store.seen_request(s, request.request_id, "CreatePrompt", digest)
            if earlier:
                return cv.prompt_to_proto(s, store.get_prompt(s, strip_collection(earlier, "prompts")))
            p = store.create_prompt(s, name, task, list(request.prompt.tags), request.prompt.owner)
            store.remember_request(s, request.request_id, "CreatePrompt", digest, f"prompts/{name}")
            return cv.prompt_to_proto(s, p)

        return await self.db.run(q)

    async def GetPrompt(self, request: cat.GetPromptRequest, context: grpc.aio.ServicerContext) -> cat.Prompt:
        name = strip_collection(request.name, "prompts")
        return await self.db.run(lambda s: cv.prompt_to_proto(s, store.get_prompt(s, name)))

    async def ListPrompts(self, request: cat.ListPromptsRequest, context: grpc.aio.ServicerContext) -> cat.ListPromptsResponse:
        after = cv.from_ts(request.create_after)
        query = {"tag": request.tag, "backbone": strip_collection(request.backbone, "backbones"),
                 "label": request.label, "after": str(after or "")}
        offset, limit = cv.page(request.page_size, request.page_token, query)

        def q(s: Session) -> cat.ListPromptsResponse:
            rows = store.list_prompts(s, offset, limit, tag=query["tag"], backbone=query["backbone"],
                                      label=request.label, created_after=after)
            return cat.ListPromptsResponse(
                prompts=[cv.prompt_to_proto(s, p) for p in rows],
                next_page_token=cv.next_token(offset, limit, len(rows), query),
            )

        return await self.db.run(q)

    async def UpdatePrompt(self, request: cat.UpdatePromptRequest, context: grpc.aio.ServicerContext) -> cat.Prompt:
        name = strip_collection(request.prompt.name, "prompts")
        paths = list(request.update_mask.paths)
        bad = sorted(set(paths) - UPDATABLE)
        if not paths or bad:
            raise InvalidArgument(f"update_mask paths {bad or paths} are not updatable; use some of {sorted(UPDATABLE)}")

        def q(s: Session) -> cat.Prompt:
            p = store.get_prompt(s, name)
            if "tags" in paths:
                p.tags = sorted(set(request.prompt.tags))
            if "owner" in paths:
                p.owner = request.prompt.owner
            if "task.description" in paths:
                p.task = {**p.task, "description": request.prompt.task.description}
            s.flush()
            return cv.prompt_to_proto(s, p)

        return await self.db.run(q)

    async def DeletePrompt(self, request: cat.DeletePromptRequest, context: grpc.aio.ServicerContext) -> cat.DeletePromptResponse:
        name = strip_collection(request.name, "prompts")
        await self.db.run(lambda s: store.delete_prompt(s, name, request.force))
        return cat.DeletePromptResponse()

    async def GetPromptVersion(self, request: cat.GetPromptVersionRequest, context: grpc.aio.ServicerContext) -> cat.PromptVersion:
        ref = version_ref(request.name)
        return await self.db.run(lambda s: cv.version_to_proto(s, store.resolve(s, ref), request.include_tensor))

    async def ListPromptVersions(
        self, request: cat.ListPromptVersionsRequest, context: grpc.aio.ServicerContext
    ) -> cat.ListPromptVersionsResponse:
        name = strip_collection(request.parent, "prompts")
        after = cv.from_ts(request.create_after)
        backbone = strip_collection(request.backbone, "backbones")
        query = {"parent": name, "backbone": backbone, "tag": request.tag, "after": str(after or "")}
        offset, limit = cv.page(request.page_size, request.page_token, query)

        def q(s: Session) -> cat.ListPromptVersionsResponse:
            rows = store.list_versions(s, store.get_prompt(s, name), offset, limit, backbone=backbone,
                                       tag=request.tag, created_after=after)
            return cat.ListPromptVersionsResponse(
                versions=[cv.version_to_proto(s, v) for v in rows],
                next_page_token=cv.next_token(offset, limit, len(rows), query),
            )

        return await self.db.run(q)

    async def UpdatePromptVersion(
        self, request: cat.UpdatePromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.PromptVersion:
        paths = list(request.update_mask.paths)
        if paths != ["tags"]:
            raise InvalidArgument(f"update_mask paths {paths} are not updatable; a version is immutable except 'tags'")
        ref = version_ref(request.version.name)

        def q(s: Session) -> cat.PromptVersion:
            v = store.resolve(s, ref)
            v.tags = sorted(set(request.version.tags))
            s.flush()
            return cv.version_to_proto(s, v)

        return await self.db.run(q)

    async def DeletePromptVersion(
        self, request: cat.DeletePromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.DeletePromptVersionResponse:
        ref = version_ref(request.name)
        await self.db.run(lambda s: store.delete_version(s, store.resolve(s, ref), request.force))
        return cat.DeletePromptVersionResponse()

    async def ImportPromptVersion(
        self, request: cat.ImportPromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.PromptVersion:
        """A PEFT prompt-tuning adapter (its two files) becomes a new version; the prompt is created if new."""
        name = check_name("prompt", strip_collection(request.parent, "prompts"))
        backbone = strip_collection(request.backbone, "backbones")
        imported = import_peft(request.adapter_config, request.adapter_model)
        requested = task_dict(request.task) if request.task.labels else None
        digest = request_digest(request)

        def q(s: Session) -> cat.PromptVersion:
            earlier = store.seen_request(s, request.request_id, "ImportPromptVersion", digest)
            if earlier:
                return cv.version_to_proto(s, store.resolve(s, version_ref(earlier)))
            bb = store.get_backbone(s, backbone)
            if imported.token_dim != bb.hidden_size:
                raise FailedPrecondition(f"adapter token_dim {imported.token_dim} does not match backbone "
                                         f"{backbone!r} hidden size {bb.hidden_size}")
            arch = "encoder" if bb.architecture == "masked_lm" else bb.architecture
            if imported.architecture and imported.architecture != arch:
                raise FailedPrecondition(f"adapter task type {imported.task_type} does not fit backbone {backbone!r} "
                                         f"({bb.architecture})")
            p = store.find_prompt(s, name)
            if p is None:
                task = requested or imported.task
                if not task:
                    raise InvalidArgument(f"prompt {name!r} does not exist: give its task (labels) to create it")
                p = store.create_prompt(s, name, task_dict(cv.task_to_proto(task)))
            elif requested and requested["labels"] != p.task["labels"]:
                raise FailedPrecondition(f"prompt {name!r} has labels {p.task['labels']}, the import asks for "
                                         f"{requested['labels']}")
            lineage = {"imported_from": f"peft:{imported.base_model or 'unknown base'}", "init": "import"}
            v = store.add_version(s, p, bb, encode_prompt(imported.tensor), lineage=lineage)
            store.remember_request(s, request.request_id, "ImportPromptVersion", digest,
                                   cv.version_name(name, v.version))
            return cv.version_to_proto(s, v)

        return await self.db.run(q)

    async def ExportPromptVersion(
        self, request: cat.ExportPromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> cat.ExportPromptVersionResponse:
        ref = version_ref(request.name)

        def q(s: Session) -> cat.ExportPromptVersionResponse:
            v = store.resolve(s, ref)
            bb = v.backbone
            extra = {"version": cv.version_name(v.prompt.name, v.version), "sha256": v.sha256,
                     "backbone": bb.name, "fingerprint": v.backbone_fingerprint, "metrics": v.metrics}
            config, weights = export_peft(
                v.tensor, base_model=bb.model, revision=bb.revision, architecture=bb.architecture,
                num_virtual_tokens=int(v.shape[0]), token_dim=int(v.shape[1]), task=v.prompt.task, extra=extra,
            )
            meta = Struct()
            meta.update({"task": v.prompt.task, **extra})
            return cat.ExportPromptVersionResponse(adapter_config=config, adapter_model=weights, metadata=meta)

        return await self.db.run(q)

    async def SetAlias(self, request: cat.SetAliasRequest, context: grpc.aio.ServicerContext) -> cat.Alias:
        name = strip_collection(request.parent, "prompts")

        def q(s: Session) -> cat.Alias:
            p = store.get_prompt(s, name)
            v = store.get_version(s, p, request.version)
            store.set_alias(s, p, request.alias, v)
            return cat.Alias(name=f"prompts/{name}/aliases/{request.alias}", version=cv.version_name(name, v.version))

        return await self.db.run(q)

    async def DeleteAlias(self, request: cat.DeleteAliasRequest, context: grpc.aio.ServicerContext) -> cat.DeleteAliasResponse:
        parts = strip_collection(request.name, "prompts").split("/aliases/")
        if len(parts) != 2:
            raise InvalidArgument(f"alias name {request.name!r} must look like prompts/{{prompt}}/aliases/{{alias}}")
        await self.db.run(lambda s: store.delete_alias(s, store.get_prompt(s, parts[0]), parts[1]))
        return cat.DeleteAliasResponse()

    async def ListAliasHistory(
        self, request: cat.ListAliasHistoryRequest, context: grpc.aio.ServicerContext
    ) -> cat.ListAliasHistoryResponse:
        name = strip_collection(request.parent, "prompts")
        offset, limit = cv.page(request.page_size, request.page_token, {"parent": name})

        def q(s: Session) -> cat.ListAliasHistoryResponse:
            rows = store.alias_history(s, store.get_prompt(s, name), offset, limit)
            return cat.ListAliasHistoryResponse(
                events=[cat.AliasEvent(alias=e.alias, from_version=e.from_version, to_version=e.to_version, time=cv.ts(e.at))
                        for e in rows],
                next_page_token=cv.next_token(offset, limit, len(rows), {"parent": name}),
            )

        return await self.db.run(q)
