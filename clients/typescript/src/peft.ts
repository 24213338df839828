/**
 * PEFT prompt-tuning adapter folders on the client's disk: the two files only, never a pickle. The server
 * checks their contents; this moves bytes, refuses pickled weights before they leave the machine, and writes
 * each file atomically so that a reader never sees half an adapter.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

export const PEFT_CONFIG = "adapter_config.json";
export const PEFT_WEIGHTS = "adapter_model.safetensors";
const PICKLE_SUFFIXES = [".bin", ".pt", ".pth", ".pkl", ".ckpt"];

/** The two files of an adapter: what ExportPromptVersion returns and ImportPromptVersion takes. */
export interface AdapterFiles {
  /** adapter_config.json contents. */
  adapterConfig: Uint8Array;
  /** adapter_model.safetensors contents. */
  adapterModel: Uint8Array;
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isFile(), () => false);
}

/** Reads an adapter folder; a folder with pickled weights instead of safetensors is refused. */
export async function readAdapter(dir: string): Promise<AdapterFiles> {
  const entries = await readdir(dir).catch(() => {
    throw new Error(`${dir} is not a directory holding ${PEFT_CONFIG} and ${PEFT_WEIGHTS}`);
  });
  if (!(await isFile(join(dir, PEFT_WEIGHTS)))) {
    const pickled = entries.filter((n) => PICKLE_SUFFIXES.some((s) => n.endsWith(s))).sort();
    if (pickled.length > 0) {
      throw new Error(
        `${join(dir, pickled[0] ?? "")} is a pickle file, which promptbank refuses (loading one can run arbitrary ` +
          `code); save the adapter with safe_serialization=True (safetensors)`,
      );
    }
    throw new Error(`${dir} has no ${PEFT_WEIGHTS}`);
  }
  if (!(await isFile(join(dir, PEFT_CONFIG)))) {
    throw new Error(`${dir} has no ${PEFT_CONFIG}`);
  }
  const [adapterConfig, adapterModel] = await Promise.all([
    readFile(join(dir, PEFT_CONFIG)),
    readFile(join(dir, PEFT_WEIGHTS)),
  ]);
  return { adapterConfig, adapterModel };
}

/** Writes the two files so that `PeftModel.from_pretrained(base, dir)` loads them; returns `dir`. */
export async function writeAdapter(dir: string, files: AdapterFiles): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [name, data] of [
    [PEFT_WEIGHTS, files.adapterModel],
    [PEFT_CONFIG, files.adapterConfig],
  ] as const) {
    const tmp = join(dir, `.${name}.${randomUUID()}`);
    try {
      await writeFile(tmp, data);
      await rename(tmp, join(dir, name));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
  return dir;
}
