/**
 * Live evaluation, part of Client: outcomes of served rows sent back by result id, and an alias's rollout (shadow,
 * canary, promotion policy), comparison and promotion. The Python SDK's promptbank/live_calls.py in TypeScript.
 *
 * Aliases are `task@alias` or `prompts/{p}/aliases/{a}`; versions `task/versions/N`, `prompts/{p}/versions/{n}`
 * or a number N (a version of the alias's own prompt). A wrong one is a TypeError/RangeError naming it, thrown
 * before anything is sent.
 */
import type { Comparison, Promotion, Rollout } from "./gen/promptbank/v1/live_pb.js";
import { CatalogClient } from "./catalog.js";
import { unary, type CallOptions } from "./calls.js";

/** RecordOutcomes takes 1..10000 outcomes a call. */
export const OUTCOMES_PER_CALL = 10_000;
const NAME = /^[a-z0-9][a-z0-9_.-]{0,127}$/;
const ALIAS = /^(?:prompts\/([^/@]+)\/aliases\/([^/@]+)(?:\/rollout)?|([^/@]+)@([^/@]+))$/;
const VERSION = /^(?:(?:prompts\/)?([^/@]+)\/versions\/)?(\d+)$/;

/** An alias as the API names it. */
export interface AliasRef {
  prompt: string;
  alias: string;
  /** `prompts/{p}/aliases/{a}`. */
  name: string;
}

/** `task@alias` or `prompts/{p}/aliases/{a}` (a trailing `/rollout` allowed). */
export function aliasRef(ref: string, what = "alias"): AliasRef {
  const m = typeof ref === "string" ? ALIAS.exec(ref) : null;
  const prompt = m ? (m[1] ?? m[3] ?? "") : "";
  const alias = m ? (m[2] ?? m[4] ?? "") : "";
  if (!m || !NAME.test(prompt) || !NAME.test(alias) || alias.length > 64) {
    throw new TypeError(`${what} must be 'task@alias' or 'prompts/TASK/aliases/ALIAS', got ${JSON.stringify(ref)}`);
  }
  return { prompt, alias, name: `prompts/${prompt}/aliases/${alias}` };
}

/** A version of the alias's prompt as `prompts/{p}/versions/{n}`; one of another prompt is refused here. */
export function versionRef(ref: string | number | bigint, alias: AliasRef, what = "version"): string {
  const text = typeof ref === "string" ? ref : String(ref);
  const m = VERSION.exec(text);
  if (!m || BigInt(m[2]!) < 1n) {
    throw new TypeError(`${what} must name a version: N, 'task/versions/N' or 'prompts/TASK/versions/N', got ${JSON.stringify(text)}`);
  }
  const prompt = m[1] ?? alias.prompt;
  if (prompt !== alias.prompt) {
    throw new TypeError(`${what} ${JSON.stringify(text)} is a version of '${prompt}', not of '${alias.prompt}' (the prompt of ${alias.prompt}@${alias.alias})`);
  }
  return `prompts/${prompt}/versions/${BigInt(m[2]!)}`;
}

/** A share or a margin: a finite number in [0, 1] ((0, 1] when `lowOpen`). */
export function fraction(value: number, name: string, lowOpen = false): number {
  const ok = typeof value === "number" && Number.isFinite(value) && (lowOpen ? value > 0 : value >= 0) && value <= 1;
  if (!ok) {
    throw new RangeError(`${name} must be a number in ${lowOpen ? "(0, 1]" : "[0, 1]"}, got ${String(value)}`);
  }
  return value;
}

/** Each row's routing key: none, one for every row (a string), or one per row (an array as long as the rows). */
export function routingKeys(value: string | readonly string[] | undefined, rows: number, what: string): string[] {
  if (value === undefined) return Array<string>(rows).fill("");
  if (typeof value === "string") return Array<string>(rows).fill(value);
  if (value.length !== rows) {
    throw new RangeError(`${what}: routingKey has ${value.length} keys for ${rows} rows; give one per row, or one string for all`);
  }
  return [...value];
}

/** What recordOutcomes did, over all its calls. */
export interface OutcomeSummary {
  /** Outcomes newly recorded. */
  recorded: number;
  /** Sent before with the same label: nothing changed. */
  already: number;
  /** Ids the server does not know (never issued, or past its retention). */
  unknown: string[];
  /** Ids that already had a different label (the first stands). */
  conflicting: string[];
  /** Aliases their automatic policy moved, `prompts/{p}/aliases/{a}`. */
  promoted: string[];
}

/** Outcomes: `[resultId, label]` pairs, `{ resultId, label }` objects, or a map / record id -> label. */
export type OutcomesInput =
  | Iterable<readonly [resultId: string, label: string] | { readonly resultId: string; readonly label: string }>
  | ReadonlyMap<string, string>
  | Readonly<Record<string, string>>;

function outcomePairs(input: OutcomesInput): { resultId: string; label: string }[] {
  const items: Iterable<unknown> = input instanceof Map ? input.entries()
    : Symbol.iterator in Object(input) ? (input as Iterable<unknown>) : Object.entries(input);
  if (typeof input === "string") {
    throw new TypeError("recordOutcomes takes [resultId, label] pairs or a map, not a string");
  }
  return Array.from(items, (item, i) => {
    const [resultId, label] = Array.isArray(item) ? item : [(item as { resultId?: unknown }).resultId, (item as { label?: unknown }).label];
    if (typeof resultId !== "string" || resultId === "") {
      throw new TypeError(`recordOutcomes: item ${i}'s result id must be a non-empty string, got ${JSON.stringify(resultId)}`);
    }
    if (typeof label !== "string" || label === "") {
      throw new TypeError(`recordOutcomes: item ${i} (result id ${JSON.stringify(resultId)}) has no label: got ${JSON.stringify(label)}`);
    }
    return { resultId, label };
  });
}

export class LiveClient extends CatalogClient {
  // ------------------------------------------------------------ outcomes

  /**
   * Sends true labels of classified rows (Prediction.id with its label), in calls of at most `chunk` (<= 10,000).
   * Idempotent per id (retried on UNAVAILABLE): an outcome sent again changes nothing. A label that is not one of
   * the row's task's labels fails its call (INVALID_ARGUMENT, nothing of that call recorded; calls before it stand).
   */
  async recordOutcomes(outcomes: OutcomesInput, options: CallOptions & { chunk?: number } = {}): Promise<OutcomeSummary> {
    const chunk = options.chunk ?? OUTCOMES_PER_CALL;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > OUTCOMES_PER_CALL) {
      throw new RangeError(`chunk must be a whole number in 1..${OUTCOMES_PER_CALL}, got ${chunk}`);
    }
    const todo = outcomePairs(outcomes);
    const out: OutcomeSummary = { recorded: 0, already: 0, unknown: [], conflicting: [], promoted: [] };
    for (let start = 0; start < todo.length; start += chunk) {
      const req = { outcomes: todo.slice(start, start + chunk) };
      const resp = await unary((o) => this.rpc.live.recordOutcomes(req, o), this.at(options));
      out.recorded += resp.recorded;
      out.already += resp.alreadyRecorded;
      out.unknown.push(...resp.unknownIds);
      out.conflicting.push(...resp.conflictingIds);
      out.promoted.push(...resp.promoted.filter((a) => !out.promoted.includes(a)));
    }
    return out;
  }

  // ------------------------------------------------------------ rollouts

  /** An alias's version, shadow, canary and policy, with the evidence gathered so far. */
  async rollout(alias: string, options?: CallOptions): Promise<Rollout> {
    const name = `${aliasRef(alias).name}/rollout`;
    return unary((o) => this.rpc.live.getRollout({ name }, o), this.at(options));
  }

  private async update(ref: AliasRef, paths: string[], fields: Record<string, unknown>, options?: CallOptions): Promise<Rollout> {
    const req = { rollout: { name: `${ref.name}/rollout`, ...fields }, updateMask: { paths } };
    return unary((o) => this.rpc.live.updateRollout(req, o), this.at(options));
  }

  /** Scores `version` on the alias's rows in the same forward, never answering with it; on a share `fraction` in
   * (0, 1] of them (unset: leave the share as it is; 1 for a new shadow). */
  async setShadow(alias: string, version: string | number | bigint, options: CallOptions & { fraction?: number } = {}): Promise<Rollout> {
    const ref = aliasRef(alias);
    const fields: Record<string, unknown> = { shadowVersion: versionRef(version, ref) };
    const paths = ["shadow_version"];
    if (options.fraction !== undefined) {
      fields.shadowFraction = fraction(options.fraction, "fraction", true);
      paths.push("shadow_fraction");
    }
    return this.update(ref, paths, fields, options);
  }

  async clearShadow(alias: string, options?: CallOptions): Promise<Rollout> {
    return this.update(aliasRef(alias), ["shadow_version"], { shadowVersion: "" }, options);
  }

  /** Answers a share `fraction` in [0, 1] of the alias's rows with `version`, sticky per routing key. */
  async setCanary(alias: string, version: string | number | bigint, share: number, options?: CallOptions): Promise<Rollout> {
    const ref = aliasRef(alias);
    const fields = { canaryVersion: versionRef(version, ref), canaryFraction: fraction(share, "fraction") };
    return this.update(ref, ["canary_version", "canary_fraction"], fields, options);
  }

  async clearCanary(alias: string, options?: CallOptions): Promise<Rollout> {
    return this.update(aliasRef(alias), ["canary_version", "canary_fraction"], { canaryVersion: "", canaryFraction: 0 }, options);
  }

  /** Whether the alias promotes its shadow (else its canary) by itself once `minRows` rows with outcomes clear
   * `margin`; an unset `margin` / `minRows` keeps the alias's current value. */
  async setPolicy(alias: string, auto: boolean, options: CallOptions & { margin?: number; minRows?: number | bigint } = {}): Promise<Rollout> {
    const ref = aliasRef(alias);
    if (typeof auto !== "boolean") throw new TypeError(`auto must be true or false, got ${String(auto)}`);
    let margin = options.margin === undefined ? undefined : fraction(options.margin, "margin");
    let minRows = options.minRows === undefined ? undefined : BigInt(options.minRows);
    if (minRows !== undefined && minRows < 0n) throw new RangeError(`minRows must be a whole number >= 0, got ${minRows}`);
    if (margin === undefined || minRows === undefined) {
      const now = (await this.rollout(alias, options)).policy;
      margin ??= now?.margin ?? 0;
      minRows ??= now?.minRows ?? 0n;
    }
    return this.update(ref, ["policy"], { policy: { auto, margin, minRows } }, options);
  }

  // ------------------------------------------------------------ comparison and promotion

  /** `candidate` against the alias's version on the outcomes so far (paired when it has been the alias's shadow);
   * an unset `margin` is the alias's policy margin. `clears` says whether it is not worse beyond it. */
  async compare(alias: string, candidate: string | number | bigint, options: CallOptions & { margin?: number } = {}): Promise<Comparison> {
    const ref = aliasRef(alias);
    const req = { alias: ref.name, candidate: versionRef(candidate, ref, "candidate"),
      margin: options.margin === undefined ? undefined : fraction(options.margin, "margin") };
    return unary((o) => this.rpc.live.compareVersions(req, o), this.at(options));
  }

  /** Moves the alias to `candidate` when the evidence clears the margin, or whatever it says with `force` (the
   * evidence is recorded either way); refused with FAILED_PRECONDITION, naming the numbers, otherwise. Not retried. */
  async promote(alias: string, candidate: string | number | bigint, options: CallOptions & { margin?: number; force?: boolean } = {}): Promise<Promotion> {
    const ref = aliasRef(alias);
    const req = { alias: ref.name, candidate: versionRef(candidate, ref, "candidate"),
      margin: options.margin === undefined ? undefined : fraction(options.margin, "margin"), force: options.force ?? false };
    return unary((o) => this.rpc.live.promoteAlias(req, o), this.at(options));
  }
}
