/** The catalog's calls (backbones, prompts, versions, aliases, PEFT import/export), tokens and the audit log: part of Client. */
import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Role, type AuditEvent, type CreateTokenResponse, type Token } from "./gen/promptbank/v1/auth_pb.js";
import type { Alias, AliasEvent, Backbone, DeregisterBackboneResponse, ExportPromptVersionResponse, Prompt, PromptVersion } from "./gen/promptbank/v1/catalog_pb.js";
import { ClientBase } from "./base.js";
import { paginate, unary, type CallOptions } from "./calls.js";
import { resourceName, taskSpec, type TaskOptions } from "./inputs.js";
import type { AuditFilter, CreateOptions, ListFilter } from "./options.js";
import type { AdapterFiles } from "./peft.js";

const REGISTER_TIMEOUT_MS = 600_000;

export class CatalogClient extends ClientBase {
  // ------------------------------------------------------------ catalog

  listBackbones(options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<Backbone> {
    return paginate((pageToken, o) => this.rpc.catalog.listBackbones({ pageSize: options.pageSize ?? 0, pageToken }, o), (p) => p.backbones, this.at(options));
  }

  async getBackbone(name: string, options?: CallOptions): Promise<Backbone> {
    return unary((o) => this.rpc.catalog.getBackbone({ name: resourceName("backbones", name) }, o), this.at(options));
  }

  /** Loads a model on new replicas (admin; the server must allow the model). Default deadline 10 minutes. */
  async registerBackbone(name: string, model: string, options: CallOptions & { revision?: string; replicas?: number } = {}): Promise<Backbone> {
    const req = { backboneId: name, model, revision: options.revision ?? "", replicas: options.replicas };
    return unary((o) => this.rpc.catalog.registerBackbone(req, o), this.at(options, REGISTER_TIMEOUT_MS));
  }

  /**
   * Stops the answering server's replicas of a backbone and frees their resources (admin). Refused with
   * FAILED_PRECONDITION, naming them, while train jobs on it are queued or running, unless `force`: they then end
   * FAILED. A backbone that stored versions pin stays in the catalog (`removed` false) with no serving replicas.
   */
  async deregisterBackbone(name: string, options: CallOptions & { force?: boolean } = {}): Promise<DeregisterBackboneResponse> {
    const req = { name: resourceName("backbones", name), force: options.force ?? false };
    return unary((o) => this.rpc.catalog.deregisterBackbone(req, o), this.at(options));
  }

  /** Every prompt matching the filter. */
  listPrompts(filter: ListFilter = {}): AsyncGenerator<Prompt> {
    const req = {
      tag: filter.tag ?? "",
      backbone: filter.backbone ? resourceName("backbones", filter.backbone) : "",
      label: filter.label ?? "",
      createAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
      pageSize: filter.pageSize ?? 0,
    };
    return paginate((pageToken, o) => this.rpc.catalog.listPrompts({ ...req, pageToken }, o), (p) => p.prompts, this.at(filter));
  }

  async getPrompt(prompt: string, options?: CallOptions): Promise<Prompt> {
    return unary((o) => this.rpc.catalog.getPrompt({ name: resourceName("prompts", prompt) }, o), this.at(options));
  }

  async createPrompt(prompt: string, options: TaskOptions & CreateOptions & { tags?: readonly string[]; owner?: string } = {}): Promise<Prompt> {
    const req = {
      promptId: prompt,
      prompt: { task: taskSpec(options), tags: [...(options.tags ?? [])], owner: options.owner ?? "" },
      requestId: options.requestId ?? randomUUID(),
    };
    return unary((o) => this.rpc.catalog.createPrompt(req, o), this.at(options));
  }

  /** Changes only the fields given. */
  async updatePrompt(prompt: string, changes: CallOptions & { tags?: readonly string[]; owner?: string; description?: string }): Promise<Prompt> {
    const paths: string[] = [];
    if (changes.tags !== undefined) paths.push("tags");
    if (changes.owner !== undefined) paths.push("owner");
    if (changes.description !== undefined) paths.push("task.description");
    const req = {
      prompt: { name: resourceName("prompts", prompt), tags: [...(changes.tags ?? [])], owner: changes.owner ?? "", task: { description: changes.description ?? "" } },
      updateMask: { paths },
    };
    return unary((o) => this.rpc.catalog.updatePrompt(req, o), this.at(changes));
  }

  async deletePrompt(prompt: string, options: CallOptions & { force?: boolean } = {}): Promise<void> {
    await unary((o) => this.rpc.catalog.deletePrompt({ name: resourceName("prompts", prompt), force: options.force ?? false }, o), this.at(options));
  }

  /** A version by name or any reference (`task`, `task@alias`, `task/versions/N`). */
  async getVersion(ref: string, options: CallOptions & { includeTensor?: boolean } = {}): Promise<PromptVersion> {
    return unary((o) => this.rpc.catalog.getPromptVersion({ name: ref, includeTensor: options.includeTensor ?? false }, o), this.at(options));
  }

  /** Every version of a prompt matching the filter, newest first. */
  listVersions(prompt: string, filter: ListFilter = {}): AsyncGenerator<PromptVersion> {
    const req = {
      parent: resourceName("prompts", prompt),
      backbone: filter.backbone ? resourceName("backbones", filter.backbone) : "",
      tag: filter.tag ?? "",
      createAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
      pageSize: filter.pageSize ?? 0,
    };
    return paginate((pageToken, o) => this.rpc.catalog.listPromptVersions({ ...req, pageToken }, o), (p) => p.versions, this.at(filter));
  }

  /** Replaces a version's tags (the only mutable field of a version). */
  async tagVersion(ref: string, tags: readonly string[], options?: CallOptions): Promise<PromptVersion> {
    const req = { version: { name: ref, tags: [...tags] }, updateMask: { paths: ["tags"] } };
    return unary((o) => this.rpc.catalog.updatePromptVersion(req, o), this.at(options));
  }

  async deleteVersion(ref: string, options: CallOptions & { force?: boolean } = {}): Promise<void> {
    await unary((o) => this.rpc.catalog.deletePromptVersion({ name: ref, force: options.force ?? false }, o), this.at(options));
  }

  async setAlias(prompt: string, alias: string, version: number | bigint, options?: CallOptions): Promise<Alias> {
    const req = { parent: resourceName("prompts", prompt), alias, version: BigInt(version) };
    return unary((o) => this.rpc.catalog.setAlias(req, o), this.at(options));
  }

  async deleteAlias(prompt: string, alias: string, options?: CallOptions): Promise<void> {
    await unary((o) => this.rpc.catalog.deleteAlias({ name: `${resourceName("prompts", prompt)}/aliases/${alias}` }, o), this.at(options));
  }

  /** Every move of the prompt's aliases, newest first. */
  aliasHistory(prompt: string, options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<AliasEvent> {
    const parent = resourceName("prompts", prompt);
    return paginate((pageToken, o) => this.rpc.catalog.listAliasHistory({ parent, pageSize: options.pageSize ?? 0, pageToken }, o), (p) => p.events, this.at(options));
  }

  /** The version as a PEFT prompt-tuning adapter: `adapterConfig` and `adapterModel` bytes (see writeAdapter). */
  async exportVersion(ref: string, options?: CallOptions): Promise<ExportPromptVersionResponse> {
    return unary((o) => this.rpc.catalog.exportPromptVersion({ name: ref }, o), this.at(options));
  }

  /** Stores a PEFT adapter (see readAdapter) as a new version of `prompt`, creating the prompt with the task given. */
  async importVersion(prompt: string, backbone: string, files: AdapterFiles, options: TaskOptions & CreateOptions = {}): Promise<PromptVersion> {
    const req = {
      parent: resourceName("prompts", prompt),
      backbone: resourceName("backbones", backbone),
      adapterConfig: files.adapterConfig,
      adapterModel: files.adapterModel,
      task: taskSpec(options),
      requestId: options.requestId ?? randomUUID(),
    };
    return unary((o) => this.rpc.catalog.importPromptVersion(req, o), this.at(options));
  }

  // ------------------------------------------------------------ tokens (admin)

  /** A new token; its `secret` is in the response only, once. */
  async createToken(name: string, role: "reader" | "trainer" | "admin", options: CallOptions & { ttlSeconds?: number } = {}): Promise<CreateTokenResponse> {
    const roles = { reader: Role.READER, trainer: Role.TRAINER, admin: Role.ADMIN } as const;
    const req = { tokenId: name, role: roles[role], ttlSeconds: options.ttlSeconds === undefined ? undefined : BigInt(options.ttlSeconds) };
    return unary((o) => this.rpc.tokens.createToken(req, o), this.at(options));
  }

  listTokens(options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<Token> {
    return paginate((pageToken, o) => this.rpc.tokens.listTokens({ pageSize: options.pageSize ?? 0, pageToken }, o), (p) => p.tokens, this.at(options));
  }

  async revokeToken(name: string, options?: CallOptions): Promise<Token> {
    return unary((o) => this.rpc.tokens.revokeToken({ name }, o), this.at(options));
  }

  // ------------------------------------------------------------ audit log (admin)

  /** The audit log's events matching the filter, newest first (one per successful write RPC). */
  listAuditEvents(filter: AuditFilter = {}): AsyncGenerator<AuditEvent> {
    const req = {
      principal: filter.principal ?? "",
      method: filter.method ?? "",
      resource: filter.resource ?? "",
      after: filter.after ? timestampFromDate(filter.after) : undefined,
      before: filter.before ? timestampFromDate(filter.before) : undefined,
      pageSize: filter.pageSize ?? 0,
    };
    return paginate((pageToken, o) => this.rpc.tokens.listAuditEvents({ ...req, pageToken }, o), (p) => p.events, this.at(filter));
  }
}
